"""`genforge synth`: written sets read back with their labels and counts, the manifest, the filters, bad input."""
import json
import warnings

import numpy as np
import pytest

from genforge import cli, inference, synth
from genforge.data import images as image_data
from genforge.data import manifest
from genforge.data.download import sha256_of
from genforge.data.labelled import read_labelled
from genforge.families import gan

TINY = {"model": {"arch": "dcgan", "g_width": 8, "d_width": 4, "z_dim": 16},
        "train": {"batch_size": 8, "max_iters": 2, "eval_interval": 2, "log_interval": 1, "dtype": "fp32",
                  "threads": 1},
        "gan": {"monitor_samples": 0, "conditional": True}}


@pytest.fixture(scope="module")
def cgan(tmp_path_factory):
    """A tiny conditional GAN run on 4 classes of bars (trained 2 steps: only the plumbing matters)."""
    from tests.conftest import make_digit_like
    root = tmp_path_factory.mktemp("cgan")
    images, labels = make_digit_like()
    np.savez(root / "bars.npz", images=images, labels=labels)
    run, _ = gan.train(overrides={**TINY, "data": {"path": str(root / "bars.npz")}}, out=root / "run", progress=False)
    return run.path


def fake_run(path, meta=None):
    """A run folder whose checkpoint file is only hashed (the pipeline is a fake)."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "best.safetensors").write_bytes(b"fake " + str(path).encode())
    return str(path)


class FakeGAN:
    """A conditional image generator: class k's images are all k * 60 (+ 1 on odd indices), 8x8 grey."""
    family, image_size, channels = "gan", 8, 1

    def __init__(self, num_classes=3, data=""):
        self.num_classes = num_classes
        self.class_names = [str(k) for k in range(num_classes)]
        self.meta = {"config": {"data": {"path": data, "test_fraction": 0.0}}}

    def generate(self, n, seed=None, labels=None):
        labels = np.zeros(n, int) if labels is None else np.asarray(labels)
        out = np.repeat((labels * 60)[:, None, None, None], 64, 1).reshape(n, 8, 8, 1)
        return (out + (np.arange(n) % 2)[:, None, None, None]).astype(np.uint8)


class FakeImageJudge:
    """Assigns class round(mean / 60) with probability 0.95, unless the image is odd-valued (then 0.6)."""
    family, labels, meta, image_size, channels = "imageclf", ["0", "1", "2"], {}, 8, 1

    def predict_proba(self, images):
        m = images.reshape(len(images), -1).mean(1)
        k, odd = np.rint(m / 60).astype(int), np.rint(m).astype(int) % 2 == 1
        p = np.full((len(images), 3), 0.0)
        p[np.arange(len(k)), k] = np.where(odd, 0.6, 0.95)
        return p + (1 - p.sum(1, keepdims=True)) / 3


class FakeGPT:
    """A label-conditioned text generator: 'good' / 'bad' sentences, the i-th one numbered."""
    family, labels = "gpt", ["bad", "good"]

    def __init__(self, data):
        self.meta = {"config": {"data": {"path": data, "text_field": "text"}}}

    def generate_labelled(self, label, n, max_new_tokens, temperature=0.8, top_k=None, top_p=None, seed=None):
        return [f"a {label} film number {i} with {'many words here' if i % 2 else 'the same old plot again'}"
                for i in range(n)]


class FakeTextJudge:
    family, labels, meta = "classifier", ["bad", "good"], {}

    def predict_proba(self, texts):
        return np.array([[0.1, 0.9] if "good" in t else [0.9, 0.1] for t in texts])


class FakeT2I:
    family, image_size, channels, text_len = "text2image", 8, 3, 8

    def __init__(self, data):
        self.meta, self.calls = {"config": {"data": {"path": data, "test_fraction": 0.0}}}, []

    def generate(self, prompt, n=1, seed=None, guidance=None, temperature=None, top_k=None):
        self.calls.append((list(prompt), guidance))
        return np.full((n, 8, 8, 3), 200 if "red" in prompt[0] else 50, np.uint8)


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Run paths -> fake pipelines, behind inference.load."""
    texts = tmp_path / "train.jsonl"
    texts.write_text("".join(json.dumps({"text": t, "label": "good"}) + "\n"
                             for t in ["a good film number 0 with the same old plot again"]))
    colours = tmp_path / "colours.npz"  # the text-to-image run's training set: its class names
    np.savez(colours, images=np.zeros((2, 8, 8, 3), np.uint8), labels=[0, 1], class_names=["red", "blue"])
    pipes = {"gan": FakeGAN(), "uncond": FakeGAN(0), "judge": FakeImageJudge(), "gpt": FakeGPT(str(texts)),
             "tjudge": FakeTextJudge(), "t2i": FakeT2I(str(colours))}
    runs = {name: fake_run(tmp_path / name) for name in pipes}
    real = inference.load
    monkeypatch.setattr(inference, "load", lambda p, **kw: next((pipes[k] for k, v in runs.items() if v == str(p)),
                                                                None) or real(p, **kw))
    return runs, pipes


def test_gan_folder_set_reads_back_with_labels_counts_and_a_synthetic_warning(cgan, tmp_path):
    out = tmp_path / "set"
    doc = synth.make(str(cgan), str(out), n=5, seed=3, command=["genforge", "synth"])
    with pytest.warns(UserWarning, match="synthetic data"):
        data = image_data.load(str(out), 28, 1, "train", test_fraction=0.0)
    assert data.class_names == ["0", "1", "2", "3"]
    assert np.bincount(data.labels).tolist() == [5, 5, 5, 5]
    assert doc["counts"]["kept"] == {"0": 5, "1": 5, "2": 5, "3": 5} and doc["format"] == "folder"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per path
        image_data.load(str(out), 28, 1, "train", test_fraction=0.0)
    again = synth.make(str(cgan), str(tmp_path / "again"), n=5, seed=3)
    with pytest.warns(UserWarning, match="synthetic"):
        same = image_data.load(str(tmp_path / "again"), 28, 1, "train", test_fraction=0.0)
    assert np.array_equal(same.images, data.images) and again["counts"] == doc["counts"]  # seeded


def test_npz_per_class_and_the_manifest_round_trip(cgan, tmp_path):
    out = tmp_path / "npz"
    doc = synth.make(str(cgan), str(out), per_class={"1": 3, "3": 6}, fmt="npz", seed=1, command=["x"])
    data = image_data.load_npz(out / "data.npz")
    assert data.class_names == ["0", "1", "2", "3"] and np.bincount(data.labels, minlength=4).tolist() == [0, 3, 0, 6]
    with pytest.warns(UserWarning, match="synthetic data"):  # the folder synth wrote reads as its data.npz
        folder, npz = image_data.load(str(out), 8, 1), image_data.load(str(out / "data.npz"), 8, 1)
    assert np.array_equal(folder.images, npz.images) and np.array_equal(folder.labels, npz.labels)
    assert manifest.read(out / "data.npz") == json.loads((out / "manifest.json").read_text()) == doc
    assert doc["synthetic"] is True and doc["seed"] == 1 and doc["command"] == ["x"]
    ckpt = cgan / "checkpoints" / "best.safetensors"
    assert doc["generator"]["sha256"] == sha256_of(ckpt if ckpt.exists() else cgan / "checkpoints" / "last.safetensors")
    assert doc["genforge_version"] and doc["filters"] == {"judge": None, "dedup": None, "label_from": None}
    assert manifest.read(tmp_path) is None  # a folder without one


def test_judge_and_dedup_drop_the_right_items_per_reason_and_class(fakes, tmp_path):
    runs, _ = fakes
    train = np.full((1, 8, 8, 1), 120, np.uint8)  # a copy of class 2's even-numbered images
    np.savez(tmp_path / "real.npz", images=train)
    fakes[1]["gan"].meta["config"]["data"]["path"] = str(tmp_path / "real.npz")
    doc = synth.make(runs["gan"], str(tmp_path / "f"), n=4, judge=runs["judge"], min_confidence=0.9, dedup=0.001)
    # odd-numbered samples (1, 3 of each class) fail the judge; class 2's even ones are training copies
    assert doc["counts"]["dropped"] == {"judge": {"0": 2, "1": 2, "2": 2}, "dedup": {"0": 0, "1": 0, "2": 2}}
    assert doc["counts"]["kept"] == {"0": 2, "1": 2, "2": 0} and doc["counts"]["total"] == 4
    data = image_data.load_folder(tmp_path / "f", 8, 1)
    assert data.class_names == ["0", "1"] and (data.images % 2 == 0).all()
    assert doc["filters"]["judge"]["min_confidence"] == 0.9 and doc["filters"]["dedup"]["threshold"] == 0.001


def test_filter_helpers_on_hand_made_cases():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    assert synth.judge_keep(probs, np.array([0, 0, 1]), np.array([0, 1]), 0.8).tolist() == [True, False, True]
    assert synth.judge_keep(probs, np.array([0, 0, 1]), np.array([1, 0]), 0.5).tolist() == [False, True, False]
    a = np.zeros((2, 2, 2, 1), np.uint8)
    a[1] = 255
    assert np.allclose(synth.nearest_distance(a, np.zeros((3, 2, 2, 1), np.uint8)), [0.0, 1.0])
    overlap = synth.ngram_overlap(["one two three four five", "six seven", "x y z w"],
                                  ["one two three four zzz", "two three four five"])
    assert np.allclose(overlap, [0.5, 0.0, 0.0])


def test_text_set_from_a_label_conditioned_gpt(fakes, tmp_path):
    runs, _ = fakes
    out = tmp_path / "t"
    doc = synth.make(runs["gpt"], str(out), n=4, judge=runs["tjudge"], min_confidence=0.5, dedup=0.8)
    with pytest.warns(UserWarning, match="synthetic"):
        data = read_labelled(out / "data.jsonl")
    assert sorted(set(data.labels)) == ["bad", "good"] and len(data) == 7  # 'good ... number 0' is a training copy
    assert doc["counts"]["dropped"] == {"empty": {"bad": 0, "good": 0}, "judge": {"bad": 0, "good": 0},
                                        "dedup": {"bad": 0, "good": 1}}
    assert "a good film number 0 with the same old plot again" not in data.texts
    assert doc["format"] == "jsonl" and doc["generator"]["kind"] == "text"


def test_text_to_image_set_uses_one_prompt_per_image(fakes, tmp_path):
    runs, pipes = fakes
    prompts = [["a red square", "red thing"], ["a blue square"]]
    doc = synth.make(runs["t2i"], str(tmp_path / "i"), n=3, guidance=2.0, prompts=prompts, fmt="npz")
    assert pipes["t2i"].calls == [(["a red square", "red thing", "a red square"], 2.0), (["a blue square"] * 3, 2.0)]
    data = image_data.load_npz(tmp_path / "i" / "data.npz")
    assert data.class_names == ["red", "blue"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert (data.images[:3] == 200).all() and doc["options"]["guidance"] == 2.0


def test_unconditional_generator_needs_labels_from_a_judge(fakes, tmp_path):
    runs, _ = fakes
    with pytest.raises(ValueError, match="not conditional.*--label-from"):
        synth.make(runs["uncond"], str(tmp_path / "u"), n=2)
    with pytest.warns(UserWarning, match="labels are .*predictions"):
        doc = synth.make(runs["uncond"], str(tmp_path / "u"), n=2, label_from=runs["judge"])
    assert doc["counts"]["total"] == 6 and doc["counts"]["kept"]["0"] == 6  # every image is all zeros


def test_bad_input(fakes, tmp_path):
    runs, _ = fakes
    with pytest.raises(ValueError, match="--n must be a positive"):
        synth.make(runs["gan"], str(tmp_path / "a"), n=0)
    with pytest.raises(ValueError, match="counts must be positive"):
        synth.make(runs["gan"], str(tmp_path / "a"), per_class={"1": -2})
    with pytest.raises(ValueError, match="unknown class"):
        synth.make(runs["gan"], str(tmp_path / "a"), per_class={"7": 2})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty.*--overwrite"):
        synth.make(runs["gan"], str(tmp_path / "full"), n=1)
    with pytest.raises(ValueError, match="replaces only a synthetic set"):
        synth.make(runs["gan"], str(tmp_path / "full"), n=1, overwrite=True)
    synth.make(runs["gan"], str(tmp_path / "ok"), n=1)
    assert synth.make(runs["gan"], str(tmp_path / "ok"), n=2, overwrite=True)["counts"]["total"] == 6
    with pytest.raises(ValueError, match=r"kept nothing: generated \{'0': 2, '1': 2, '2': 2\}"):
        synth.make(runs["gan"], str(tmp_path / "b"), n=2, judge=runs["judge"], min_confidence=0.99)
    with pytest.raises(ValueError, match="classifier run; synth needs a generator"):
        synth.make(runs["tjudge"], str(tmp_path / "b"), n=2)
    with pytest.raises(ValueError, match="--format npz needs an image generator"):
        synth.make(runs["gpt"], str(tmp_path / "b"), n=2, fmt="npz")
    with pytest.raises(ValueError, match="need an image classifier run|needs an image classifier run"):
        synth.make(runs["gan"], str(tmp_path / "b"), n=2, judge=runs["tjudge"])
    with pytest.raises(ValueError, match="reads 8x8x1 images, the generator makes 8x8x3"):
        synth.make(runs["t2i"], str(tmp_path / "b"), n=2, judge=runs["judge"], prompts=[["r"], ["b"]])
    with pytest.raises(ValueError, match="a judge must be a classifier"):
        synth.make(runs["gan"], str(tmp_path / "b"), n=2, judge=runs["gan"])
    with pytest.raises(ValueError, match="CLASS=COUNT"):
        synth.parse_per_class("a=1,b")
    assert synth.parse_per_class("a=1, b=20") == {"a": 1, "b": 20}


def test_a_generator_whose_training_data_is_gone_names_its_data_path_not_a_flag(fakes, tmp_path):
    runs, pipes = fakes
    pipes["gan"].meta["config"]["data"]["path"] = str(tmp_path / "moved.npz")
    with pytest.raises(FileNotFoundError, match=r"^--dedup: .*gan: its config's data.path .*moved.npz: no such file"):
        synth.make(runs["gan"], str(tmp_path / "a"), n=1, dedup=0.05)
    pipes["t2i"].meta["config"]["data"] = {}  # no class names in the run, and no data set to read them from
    with pytest.raises(ValueError, match=r"t2i: its config names no data.path \(synth reads the generator's"):
        synth.make(runs["t2i"], str(tmp_path / "b"), n=1)


def test_cli_synth(cgan, tmp_path, capsys):
    assert cli.main(["synth", str(cgan), "--n", "2", "--out", str(tmp_path / "c"), "--format", "npz"]) == 0
    got = capsys.readouterr()
    assert "8 synthetic samples" in got.out and "synth:" in got.err  # the progress bar, on stderr
    assert cli.main(["synth", str(cgan), "--n", "2", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    got = capsys.readouterr()
    assert "8 synthetic samples" in got.out and "synth:" not in got.err
    assert cli.main(["synth", str(cgan), "--n", "-1", "--out", str(tmp_path / "d")]) == 2
    assert "--n must be a positive" in capsys.readouterr().err


def test_text_set_from_a_real_label_conditioned_gpt(tmp_path):
    from genforge.families import gpt
    from tests.conftest import make_reviews
    rows = [{**r, "label": ["neg", "pos"][r["label"]]} for r in make_reviews(40)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ov = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
          "data": {"path": str(tmp_path / "r.jsonl"), "label_field": "label"},
          "train": {"batch_size": 4, "max_iters": 2, "eval_interval": 2, "dtype": "fp32", "samples": False,
                    "threads": 1, "device": "cpu"}}
    run, _ = gpt.train(overrides=ov, out=tmp_path / "gpt", progress=False)
    doc = synth.make(str(run.path), str(tmp_path / "t"), per_class={"pos": 3, "neg": 2}, max_new_tokens=8,
                     temperature=1.0, dedup=0.99)
    with pytest.warns(UserWarning, match="synthetic"):
        data = read_labelled(tmp_path / "t" / "data.jsonl")
    assert sorted(data.labels) == ["neg"] * doc["counts"]["kept"]["neg"] + ["pos"] * doc["counts"]["kept"]["pos"]
    assert doc["counts"]["generated"] == {"neg": 2, "pos": 3} and doc["options"]["max_new_tokens"] == 8
    with pytest.raises(ValueError, match="--format folder needs an image generator"):
        synth.make(str(run.path), str(tmp_path / "f"), n=1, fmt="folder")
