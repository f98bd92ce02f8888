import pytest
import torch
from safetensors.torch import save_file

from genforge import checkpoint
from genforge.models.gpt import GPT, GPTConfig


def make_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16))


def test_round_trip_gives_identical_logits(tmp_path):
    model = make_model()
    path = checkpoint.save(tmp_path / "c.safetensors", checkpoint.module_tensors("m", model), {"family": "gpt"})
    tensors, meta = checkpoint.load(path, prefix="m")
    assert meta["family"] == "gpt" and "genforge_version" in meta
    assert "lm_head.weight" in meta["aliases"].keys() | set(k.removeprefix("m.") for k in meta["aliases"])
    other = GPT(model.config)
    other.load_state_dict(tensors)
    x = torch.randint(0, 20, (2, 16))
    assert torch.equal(model(x)[0], other(x)[0])


def test_optimizer_state_round_trip(tmp_path):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    tensors, info = checkpoint.optimizer_tensors("o", opt)
    checkpoint.save(tmp_path / "c.safetensors", tensors, {"opt": info})
    loaded, meta = checkpoint.load(tmp_path / "c.safetensors")
    opt2 = torch.optim.AdamW(model.parameters(), lr=5.0)
    checkpoint.restore_optimizer(opt2, "o", loaded, meta["opt"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"]
    for k in a["state"]:
        assert torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"])


def test_missing_truncated_foreign_and_pickle(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nope.safetensors")
    good = checkpoint.save(tmp_path / "c.safetensors", {"x": torch.ones(1000)}, {"family": "gpt"})
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated|truncated"):
        checkpoint.load(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:20])
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(tiny)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    with pytest.raises(checkpoint.CheckpointError, match="not a genforge checkpoint"):
        checkpoint.load(foreign)
    pkl = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1)}, pkl)
    with pytest.raises(checkpoint.CheckpointError, match="never loaded"):
        checkpoint.load(pkl)


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "c.safetensors", {"x": torch.zeros(3)}, {"step": 1})

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(OSError):
        checkpoint.save(path, {"x": torch.ones(3)}, {"step": 2})
    tensors, meta = checkpoint.load(path)
    assert meta["step"] == 1 and torch.equal(tensors["x"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # no temp file left
