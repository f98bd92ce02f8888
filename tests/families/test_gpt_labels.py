"""The label-conditioned GPT: `genforge train gpt --data FILE.jsonl --data.label_field=label`.

    pytest tests/families/test_gpt_labels.py -q
"""
import argparse
import json
import random

import httpx
import pytest
import torch

import genforge
from genforge.cli import main
from genforge.data.text import corpus_labels, encode_corpus
from genforge.data.tokenizers import CharTokenizer, LabelledTokenizer, tokenizer_from_dict
from genforge.families import gan, gpt
from genforge.models.gpt import GPT, GPTConfig

PHRASES = {"pos": ["good fun", "great film"], "neg": ["bad plot", "dull film"], "meh": ["so so"]}
TINY = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"batch_size": 16, "max_iters": 120, "eval_interval": 120, "lr": 1e-2, "warmup_iters": 2,
                  "dtype": "fp32", "samples": False, "threads": 1, "device": "cpu"}}


def write_rows(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def reviews(n=240, seed=0):
    rng = random.Random(seed)
    labels = [rng.choice(list(PHRASES)) for _ in range(n)]
    return [{"text": rng.choice(PHRASES[lab]), "label": lab} for lab in labels]


def overrides(path, **data):
    ov = {k: dict(v) for k, v in TINY.items()}
    ov["data"] = {"path": str(path), "label_field": "label", **data}
    return ov


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    run, _ = gpt.train(overrides=overrides(write_rows(root / "r.jsonl", reviews())), out=root / "run", progress=False)
    return run.path


@pytest.fixture(scope="module")
def pipe(labelled_run):
    return genforge.load(labelled_run, device="cpu")


def test_data_layout_label_first_end_between_documents(tmp_path):
    path = write_rows(tmp_path / "r.jsonl", [{"text": "ab", "label": 10}, {"text": "ba", "label": 2},
                                             {"text": "a", "label": 10}])
    labels = corpus_labels(path, "text", "label")
    assert labels == ["2", "10"]  # integers sort numerically
    tok = LabelledTokenizer(CharTokenizer("ab"), labels)
    assert (tok.eot_id, tok.label_ids, tok.vocab_size) == (2, {"2": 3, "10": 4}, 5)
    ids = encode_corpus(path, tok, label_field="label", progress=False).tolist()
    a, b, end, two, ten = 0, 1, 2, 3, 4
    assert ids == [ten, a, b, end, two, b, a, end, ten, a, end]
    # markers round-trip through text, and the tokenizer through its dict
    text = "<|label:10|>ab<|end|>"
    assert tok.encode(text) == [ten, a, b, end] and tok.decode([ten, a, b, end]) == text
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))).encode(text) == [ten, a, b, end]


def test_sampler_starts_with_the_label_and_never_emits_a_label_mid_text(pipe):
    tok = pipe.tokenizer
    label_ids = set(tok.label_ids.values())
    assert pipe.labels == ["meh", "neg", "pos"] and pipe.meta["labels"] == pipe.labels
    right = total = 0
    for label in pipe.labels:
        # temperature 2 flattens the distribution, so an unmasked label token would come up within these samples
        for doc in pipe.labelled_ids(label, 40, 24, temperature=2.0, seed=1):
            assert doc[0] == tok.label_ids[label]
            assert not label_ids & set(doc[1:]), doc
            assert tok.eot_id not in doc[1:-1]
        for text in pipe.generate_labelled(label, 20, 24, temperature=0.5, seed=2):
            assert "<|" not in text
            right += text in PHRASES[label]
            total += 1
    assert right / total >= 0.9, f"{right}/{total} texts match their label"
    # the same sampling without the mask does emit label tokens after the first position: the mask matters
    end, first = tok.eot_id, tok.label_ids["pos"]
    idx = torch.tensor([[end, first]] * 40)
    unmasked = torch.stack(list(pipe.model.stream(idx, 24, temperature=2.0, generator=torch.Generator().manual_seed(1))))
    assert any(int(t) in label_ids for t in unmasked.flatten())


def test_stops_at_the_end_token_and_is_deterministic(pipe):
    docs = pipe.labelled_ids("neg", 10, 40, temperature=0.5, seed=3)
    assert all(d[-1] == pipe.tokenizer.eot_id and len(d) < 20 for d in docs)  # ended long before 40 tokens
    texts = pipe.generate_labelled("neg", 10, 40, temperature=0.5, seed=3)
    assert texts == [pipe.tokenizer.decode(d[1:-1]) for d in docs]
    assert pipe.generate_labelled("neg", 10, 40, temperature=1.5, seed=4) == \
        pipe.generate_labelled("neg", 10, 40, temperature=1.5, seed=4)
    assert pipe.generate_labelled("neg", 10, 40, temperature=1.5, seed=4) != \
        pipe.generate_labelled("neg", 10, 40, temperature=1.5, seed=5)
    cut = pipe.labelled_ids("pos", 3, 2, seed=0)  # max_new_tokens ran out: no end token
    assert all(len(d) == 3 and d[-1] != pipe.tokenizer.eot_id for d in cut)


def test_checkpoint_round_trip(labelled_run, pipe):
    again = gpt.GPTPipeline.from_checkpoint(labelled_run, device="cpu")
    assert again.labels == pipe.labels
    x = torch.tensor([[pipe.tokenizer.eot_id, pipe.tokenizer.label_ids["pos"], 0, 1]])
    assert torch.equal(again.model(x)[0], pipe.model(x)[0])
    assert again.generate_labelled("meh", 4, 10, seed=0) == pipe.generate_labelled("meh", 4, 10, seed=0)
    saved = json.loads((labelled_run / "tokenizer.json").read_text())
    assert saved["kind"] == "labelled" and saved["labels"] == pipe.labels
    assert gpt.model_info(pipe)["labels"] == pipe.labels


def test_eval_lays_out_documents_as_in_training(labelled_run, pipe, tmp_path):
    res = pipe.evaluate(str(labelled_run.parent / "r.jsonl"))
    assert res["loss"] < 0.8 and res["tokens"] > 1000, res  # the training data, learned
    unknown = write_rows(tmp_path / "u.jsonl", [{"text": "good fun", "label": "wow"}])
    with pytest.raises(ValueError, match=r"u\.jsonl: label 'wow' is not one of this model's labels"):
        pipe.evaluate(str(unknown))


def test_init_from_a_plain_run_grows_embedding_and_head(tmp_path):
    rows = reviews(120)
    plain_data = write_rows(tmp_path / "plain.jsonl", [{"text": r["text"]} for r in rows])
    plain, _ = gpt.train(overrides={**overrides(plain_data, label_field=""), "train": {**TINY["train"], "max_iters": 5}},
                         out=tmp_path / "plain", progress=False)
    base = genforge.load(plain.path, device="cpu")
    V = base.tokenizer.vocab_size
    labelled, _ = gpt.train(overrides={"data": overrides(write_rows(tmp_path / "l.jsonl", rows))["data"],
                                       "train": {**TINY["train"], "max_iters": 5}},
                            out=tmp_path / "labelled", init_from=str(plain.path), progress=False)
    pipe = genforge.load(labelled.path, device="cpu")
    assert pipe.tokenizer.base.to_dict() == base.tokenizer.to_dict()
    assert pipe.model.wte.weight.shape[0] == V + 1 + 3 and pipe.labels == ["meh", "neg", "pos"]
    assert len(pipe.generate_labelled("pos", 2, 5, seed=0)) == 2
    # the grown rows: the old ones kept, the new ones the fresh model's own initialisation
    model = GPT(GPTConfig(**{**TINY["model"], "vocab_size": V + 4, "tie_weights": False}))
    old = {"wte.weight": torch.ones(V, 32), "lm_head.weight": torch.zeros(V, 32)}
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    grown = gpt.grow_vocab(dict(old), model)
    for k in old:
        assert grown[k].shape == (V + 4, 32)
        assert torch.equal(grown[k][:V], old[k]) and torch.equal(grown[k][V:], fresh[k][V:])
    assert 0.005 < float(grown["wte.weight"][V:].std()) < 0.05  # init_std 0.02, as every embedding row


def test_bad_inputs(tmp_path, pipe):
    bad = write_rows(tmp_path / "bad.jsonl", [{"text": "good fun", "label": "pos"}, {"text": "so so"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: no field 'label'"):
        gpt.train(overrides=overrides(bad), out=tmp_path / "a", progress=False)
    null = write_rows(tmp_path / "null.jsonl", [{"text": "good fun", "label": None}])
    with pytest.raises(ValueError, match=r"null\.jsonl:1: field 'label' holds None"):
        gpt.train(overrides=overrides(null), out=tmp_path / "b", progress=False)
    txt = tmp_path / "plain.txt"
    txt.write_text("good fun\n" * 50)
    with pytest.raises(ValueError, match=r"plain\.txt: --data\.label_field=label needs JSONL rows"):
        gpt.train(overrides=overrides(txt), out=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match=r"label 'great': this run's labels are 'meh', 'neg', 'pos'"):
        pipe.generate_labelled("great", 1, 5)
    with pytest.raises(ValueError, match="n must be positive"):
        pipe.generate_labelled("pos", 0, 5)
    plain = gpt.GPTPipeline(pipe.model, pipe.tokenizer.base, {}, pipe.rt)
    assert plain.labels == []
    with pytest.raises(ValueError, match="no labels .*--data.label_field"):
        plain.generate_labelled("pos", 1, 5)


def test_cli_sample_label(labelled_run, capsys):
    assert main(["sample", str(labelled_run), "--label", "pos", "--num-samples", "3", "--seed", "0",
                 "--temperature", "0.5", "--max-new-tokens", "30"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0::2] == [f"--- sample {i}/3 (label pos)" for i in (1, 2, 3)]
    assert all(text in PHRASES["pos"] for text in out[1::2]), out
    assert main(["sample", str(labelled_run), "--label", "nope"]) != 0
    assert "label 'nope': this run's labels are 'meh', 'neg', 'pos'" in capsys.readouterr().err
    assert main(["sample", str(labelled_run), "--label", "pos", "--prompt", "go"]) != 0
    assert "--label with --prompt" in capsys.readouterr().err


def test_gan_label_stays_a_class_index():
    args = argparse.Namespace(label="pos", out=None, interpolate=False, n=None, seed=0)
    with pytest.raises(ValueError, match=r"--label 'pos': a GAN's label is a class index"):
        gan.sample_command(None, args)


def test_served_labelled_run_is_a_plain_gpt_whose_prompt_may_name_a_label(labelled_run):
    from tests.server.conftest import LiveServer
    live = LiveServer({"rev": str(labelled_run)})
    try:
        models = httpx.get(live.url + "/v1/models").json()["data"]
        assert models[0]["labels"] == ["meh", "neg", "pos"]
        body = {"model": "rev", "prompt": "<|label:pos|>", "max_tokens": 30, "temperature": 0, "stop": ["<|end|>"]}
        r = httpx.post(live.url + "/v1/completions", json=body).json()
        assert r["choices"][0]["text"] in PHRASES["pos"] and r["choices"][0]["finish_reason"] == "stop"
        body = {"model": "rev", "prompt": "good fun", "max_tokens": 20, "temperature": 0}
        text = httpx.post(live.url + "/v1/completions", json=body).json()["choices"][0]["text"]
        assert text.startswith("<|end|><|label:")  # the next document's markers, as a plain GPT continues
    finally:
        live.stop()


def test_labelled_fine_tune_of_a_plain_bpe_run_ends_with_its_end_token_never_the_plain_one(tmp_path):
    """A plain BPE run separates texts with its own end-of-text token; fine-tuned with labels, the new
    end-of-document token starts as a copy of it, and labelled sampling never writes the old one."""
    rows = reviews(160)
    plain_data = write_rows(tmp_path / "plain.jsonl", [{"text": r["text"]} for r in rows])
    tiny = {**TINY["train"], "max_iters": 60}
    plain, _ = gpt.train(overrides={**overrides(plain_data, label_field="", tokenizer="bpe", vocab_size=300),
                                    "train": tiny}, out=tmp_path / "plain", progress=False)
    base = genforge.load(plain.path, device="cpu")
    old_end = base.tokenizer.eot_id
    frozen = {**tiny, "max_iters": 1, "lr": 0.0, "min_lr": 0.0}  # lr 0: the labelled run holds the grown weights
    labelled, _ = gpt.train(overrides={"data": overrides(write_rows(tmp_path / "l.jsonl", rows))["data"],
                                       "train": frozen}, out=tmp_path / "labelled", init_from=str(plain.path),
                            progress=False)
    pipe = genforge.load(labelled.path, device="cpu")
    end = pipe.tokenizer.eot_id
    assert end == base.tokenizer.vocab_size and pipe.tokenizer.base.eot_id == old_end
    for name in ("wte", "lm_head"):
        assert torch.equal(getattr(pipe.model, name).weight[end], getattr(base.model, name).weight[old_end])
    docs = pipe.labelled_ids("pos", 40, 12, temperature=1.0, seed=0)
    assert not any(old_end in d for d in docs)
    assert sum(d[-1] == end for d in docs) >= 30  # the plain run's sense of where a short text ends carried over
    # unmasked, the same model does emit the plain end-of-text token: the mask matters
    idx = torch.tensor([[end, pipe.tokenizer.label_ids["pos"]]] * 40)
    raw = torch.stack(list(pipe.model.stream(idx, 12, temperature=1.0, generator=torch.Generator().manual_seed(0))))
    assert (raw == old_end).any()
