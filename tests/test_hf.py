"""Reference test: a randomly initialised transformers GPT-2 gives the same logits in genforge."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from genforge.families import gpt  # noqa: E402
from genforge.hf import load_gpt2  # noqa: E402
from genforge.models.gpt import GPT  # noqa: E402


@pytest.fixture
def hf_dir(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 50], trainer=trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=48, n_layer=2, n_head=4)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    return tmp_path, model


def test_same_logits_and_greedy_continuation(hf_dir):
    path, ref = hf_dir
    cfg, state, tok = load_gpt2(path)
    model = GPT(cfg).eval()
    model.load_state_dict(state)
    x = torch.randint(0, cfg.vocab_size, (2, 40))
    with torch.no_grad():
        expected = ref(x).logits
        got, _ = model(x)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    prompt = torch.tensor([tok.encode("the quick brown")])
    ours = model.generate(prompt, 20, temperature=0.0)
    theirs = ref.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_sample_and_finetune_from_hf(hf_dir, tmp_path):
    path, _ = hf_dir
    import genforge
    pipe = genforge.load(f"hf:{path}")
    assert pipe.generate("the quick", max_new_tokens=5, temperature=0).startswith("the quick")
    data = tmp_path / "ft.txt"
    data.write_text("the lazy dog sleeps over the quick fox\n" * 100)
    run, res = gpt.train(overrides={"data": {"path": str(data)}, "train": {
        "max_iters": 4, "batch_size": 2, "eval_interval": 2, "dtype": "fp32", "samples": False}},
        out=tmp_path / "ft", init_from=f"hf:{path}", progress=False)
    assert res.step == 4
    cfgjson = json.loads((run.path / "config.json").read_text())
    assert cfgjson["config"]["model"]["n_embd"] == 48 and cfgjson["config"]["data"]["tokenizer"] == "bpe"
    assert genforge.load(run.path).generate("the", max_new_tokens=3, seed=0).startswith("the")


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="never loaded"):
        load_gpt2(tmp_path)
