"""What families share (genforge/families/base.py): the epoch order, resolve-or-resume, and load_run."""
import re

import pytest
import torch

from genforge import checkpoint
from genforge.families import base, gpt
from genforge.run import RunDir


@pytest.mark.parametrize("drop_last,sizes", [(True, [4, 4, 4, 4]), (False, [4, 4, 2, 4])])
def test_epoch_order_covers_each_epoch_once(drop_last, sizes):
    order = base.EpochOrder(10, torch.Generator().manual_seed(0), drop_last)
    batches = [order.next(4) for _ in range(4)]
    assert [len(b) for b in batches] == sizes
    first_epoch = torch.cat(batches[:2] if drop_last else batches[:3])
    assert len(set(first_epoch.tolist())) == len(first_epoch)  # no example twice within an epoch
    if not drop_last:
        assert sorted(first_epoch.tolist()) == list(range(10))


def test_epoch_order_state_round_trip():
    gen = torch.Generator().manual_seed(1)
    a = base.EpochOrder(7, gen, drop_last=False)
    a.next(3)
    state, gen_state = a.state(), gen.get_state()
    expected = [a.next(3).tolist() for _ in range(4)]
    gen.set_state(gen_state)
    b = base.EpochOrder(7, gen, drop_last=False)  # a fresh permutation, replaced by the saved one
    gen.set_state(gen_state)
    b.set_state(state)
    assert [b.next(3).tolist() for _ in range(4)] == expected


def test_resolve_new_and_resumed(tmp_path):
    run = RunDir(tmp_path / "r")
    cfg = base.resolve(gpt.sections(), gpt.PRESETS, "baby", {"train": {"lr": 0.5}}, run, resume=False)
    assert cfg["model"].pos == "learned" and cfg["train"].lr == 0.5
    with pytest.raises(FileNotFoundError, match=r"--resume: .*config\.json does not exist"):
        base.resolve(gpt.sections(), gpt.PRESETS, None, {}, run, resume=True)
    run.path.mkdir()
    from genforge import config
    run.write_json("config.json", {"family": "gpt", "config": config.to_dict(cfg)})
    again = base.resolve(gpt.sections(), gpt.PRESETS, "small", {"train": {"max_iters": 9}}, run, resume=True)
    assert again["model"] == cfg["model"] and again["train"].lr == 0.5 and again["train"].max_iters == 9


def test_load_run_checks_the_family_and_names_the_file(tmp_path):
    ckpt = tmp_path / "r" / "checkpoints" / "best.safetensors"
    checkpoint.save(ckpt, {"module.model.w": torch.ones(2), "module.other.w": torch.zeros(1)}, {"family": "gan"})
    tensors, meta, path = base.load_run(tmp_path / "r", "gan", prefix="module.model")
    assert path == ckpt and meta["family"] == "gan" and list(tensors) == ["w"] and torch.equal(tensors["w"], torch.ones(2))
    with pytest.raises(ValueError, match=re.escape(f"--init-from X: {ckpt} holds a 'gan' run, not a 'gpt' run")):
        base.load_run(tmp_path / "r", "gpt", what="--init-from X")
    with pytest.raises(FileNotFoundError, match="run not found"):
        base.load_run(tmp_path / "missing", "gpt")
