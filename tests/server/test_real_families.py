"""`genforge serve` over real runs: a tiny GPT, a class-conditional DCGAN, an unconditional RGB MLP GAN and
a bag-of-words classifier, all trained here in a few seconds and loaded from their run directories by
one live server; checked with the official openai client and raw httpx.
"""
import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

import genforge
from genforge.families import classifier, gan
from tests.conftest import make_digit_like, make_reviews

from .conftest import LiveServer

GAN_TRAIN = {"batch_size": 8, "max_iters": 4, "eval_interval": 4, "log_interval": 1, "dtype": "fp32",
             "threads": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory):
    """{name: run directory} of four tiny real runs (GPT from the session fixture)."""
    root = tmp_path_factory.mktemp("real")
    images, labels = make_digit_like()  # 64 28x28 images, 4 classes
    np.savez(root / "bars.npz", images=images, labels=labels)
    cond, _ = gan.train(overrides={
        "model": {"arch": "dcgan", "g_width": 8, "d_width": 4, "z_dim": 16}, "data": {"path": str(root / "bars.npz")},
        "gan": {"conditional": True, "monitor_samples": 0}, "train": GAN_TRAIN}, out=root / "digits", progress=False)
    flat, _ = gan.train(overrides={
        "model": {"arch": "mlp", "image_size": 12, "channels": 3, "mlp_hidden": (16,), "z_dim": 8},
        "data": {"path": str(root / "bars.npz")}, "gan": {"monitor_samples": 0}, "train": GAN_TRAIN},
        out=root / "flat", progress=False)
    (root / "reviews.jsonl").write_text("\n".join(json.dumps(r) for r in make_reviews()) + "\n")
    clf, _ = classifier.train("nbbag", {"data": {"path": str(root / "reviews.jsonl"), "buckets": 4096},
                                        "train": {"threads": 1, "batch_size": 16}, "fit": {"epochs": 3}},
                              out=str(root / "sentiment"), progress=False)
    return {"tiny": tiny_run, "digits": cond.path, "flat": flat.path, "sentiment": clf.path}


@pytest.fixture(scope="module")
def live(runs):
    server = LiveServer([f"{name}={path}" for name, path in runs.items()])  # loaded by genforge.load
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def pipes(runs):
    return {name: genforge.load(path, device="cpu") for name, path in runs.items() if name != "tiny"}


def pngs(response) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in response.data]


def arrays(response) -> np.ndarray:
    """The response's PNGs as uint8 (n, H, W, C), the GAN pipeline's layout."""
    return np.stack([np.asarray(im).reshape(im.height, im.width, -1) for im in pngs(response)])


def test_models_lists_every_family(client, live):
    models = {m.id: m.model_dump() for m in client.models.list()}
    assert {k: m["family"] for k, m in models.items()} == {"tiny": "gpt", "digits": "gan", "flat": "gan",
                                                            "sentiment": "classifier"}
    assert models["digits"]["image_size"] == 28 and models["digits"]["channels"] == 1
    assert models["digits"]["num_classes"] == 4 and models["digits"]["class_names"] == ["0", "1", "2", "3"]
    assert models["flat"]["num_classes"] == 0 and models["flat"]["channels"] == 3
    assert models["sentiment"]["labels"] == ["0", "1"]
    assert httpx.get(live.url + "/health").json()["models"] == ["tiny", "digits", "flat", "sentiment"]


def test_images_are_pngs_of_the_model_size_equal_to_the_python_api(client, pipes):
    r = client.images.generate(model="digits", prompt="", n=3, size="28x28", response_format="b64_json",
                               extra_body={"seed": 4})
    ims = pngs(r)
    assert len(ims) == 3 and all(im.format == "PNG" and im.size == (28, 28) and im.mode == "L" for im in ims)
    assert np.array_equal(arrays(r), pipes["digits"].generate(3, seed=4))  # no label: each class in turn
    rgb = client.images.generate(model="flat", prompt="", n=2, size="auto", extra_body={"seed": 1})
    assert [(im.size, im.mode) for im in pngs(rgb)] == [((12, 12), "RGB")] * 2
    assert np.array_equal(arrays(rgb), pipes["flat"].generate(2, seed=1))


def test_size_must_be_what_the_model_makes(client):
    for model, size, native in (("digits", "1024x1024", "28x28"), ("flat", "28x28", "12x12")):
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(model=model, prompt="", size=size)
        assert e.value.body["param"] == "size" and native in e.value.body["message"]


def test_seeds_are_deterministic(client):
    def gen(seed, n=2):
        return arrays(client.images.generate(model="digits", prompt="", n=n, extra_body={"seed": seed, "label": 1}))
    assert np.array_equal(gen(7), gen(7))
    assert not np.array_equal(gen(7), gen(8))
    assert np.array_equal(gen(7, n=4)[:2], gen(7))  # the first images do not depend on n


def test_a_class_by_label_index_name_or_prompt(client, pipes):
    expected = pipes["digits"].generate(2, seed=3, labels=2)
    assert not np.array_equal(expected, pipes["digits"].generate(2, seed=3, labels=0)), "labels change the images"
    ways = [{"prompt": "", "extra_body": {"label": 2}}, {"prompt": "", "extra_body": {"label": "2"}},
            {"prompt": "2"}, {"prompt": "a picture of a 2"}, {"prompt": "Class 2, please."}]
    for way in ways:
        kw = {"extra_body": {}, **way}
        kw["extra_body"] = {**kw["extra_body"], "seed": 3}
        r = client.images.generate(model="digits", n=2, **kw)
        assert np.array_equal(arrays(r), expected), way


@pytest.mark.parametrize("model,kw,param", [
    ("digits", {"prompt": "", "extra_body": {"label": 4}}, "label"),
    ("digits", {"prompt": "", "extra_body": {"label": -1}}, "label"),
    ("digits", {"prompt": "", "extra_body": {"label": "cat"}}, "label"),
    ("digits", {"prompt": "a cat"}, "prompt"),
    ("digits", {"prompt": "between 1 and 3"}, "prompt"),  # names two classes
    ("flat", {"prompt": "", "extra_body": {"label": 0}}, "label"),
    ("flat", {"prompt": "3"}, "prompt"),
])
def test_bad_or_needless_labels_are_400(client, model, kw, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model=model, **kw)
    assert e.value.body["param"] == param and e.value.body["type"] == "invalid_request_error"
    assert e.value.body["message"].startswith(param)


def test_classify_matches_the_pipeline(live, pipes):
    texts = ["superb wonderful film", "awful boring dull", "the plot"]
    r = httpx.post(live.url + "/v1/classify", json={"model": "sentiment", "input": texts})
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2] and [d["label"] for d in data[:2]] == ["1", "0"]
    for d, ref in zip(data, pipes["sentiment"].classify(texts)):
        assert set(d["probs"]) == {"0", "1"} and abs(sum(d["probs"].values()) - 1) < 1e-6
        assert d["label"] == ref["label"] and d["probs"] == pytest.approx(ref["probs"], abs=1e-6)
    one = httpx.post(live.url + "/v1/classify", json={"model": "sentiment", "input": "loved it, superb"}).json()
    assert len(one["data"]) == 1 and one["data"][0]["label"] == "1"
    bad = httpx.post(live.url + "/v1/classify", json={"model": "sentiment", "input": ["ok", "  "]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


@pytest.mark.parametrize("route,body", [
    ("/v1/images/generations", {"model": "tiny", "prompt": "a cat"}),
    ("/v1/images/generations", {"model": "sentiment", "prompt": "a cat"}),
    ("/v1/completions", {"model": "digits", "prompt": "x"}),
    ("/v1/chat/completions", {"model": "flat", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/classify", {"model": "digits", "input": "x"}),
    ("/v1/classify", {"model": "tiny", "input": "x"}),
])
def test_a_model_on_another_familys_route_is_a_clear_400(live, route, body):
    r = httpx.post(live.url + route, json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == "model" and err["code"] == "model_not_supported" and body["model"] in err["message"]


def test_the_openai_client_raises_on_the_wrong_family(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="tiny", prompt="a cat")
    assert e.value.body["code"] == "model_not_supported" and "gpt" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="digits", prompt="x", max_tokens=3)
    assert e.value.body["code"] == "model_not_supported" and "gan" in e.value.body["message"]
    text = client.completions.create(model="tiny", prompt="First", max_tokens=5, seed=0).choices[0].text
    assert len(text) == 5  # the GPT beside them still answers (a character model: 5 tokens, 5 characters)


@pytest.mark.parametrize("input,message", [([], "input: List should have at least 1 item"),
                                           (["ok", 3], "input.1: Input should be a valid string"),
                                           (5, "input: Input should be a valid string")])
def test_classify_input_errors_say_what_is_wrong(live, input, message):
    r = httpx.post(live.url + "/v1/classify", json={"model": "sentiment", "input": input})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(message)


def test_named_classes_matches_whole_words_and_prefers_longer_names():
    from genforge.server.routes.images import named_classes
    names = ["T-shirt/top", "Sneaker", "Boot", "Ankle boot", "1", "11"]
    assert named_classes("a white t-shirt/top", names) == [0]
    assert named_classes("an ankle boot, please", names) == [3]  # not also "Boot"
    assert named_classes("sneakers", names) == [] and named_classes("digit 11", names) == [5]
    assert named_classes("1 and 11", names) == [4, 5]


# ----------------------------------------------------------------------------- a caption-conditioned GAN


@pytest.fixture(scope="module")
def captions_server(tmp_path_factory):
    """A live server over a tiny real captiongan run (trained here in a second or two) and that run's pipeline."""
    from genforge.families import captiongan
    from tests.conftest import write_captioned_bars
    root = tmp_path_factory.mktemp("captioned")
    run, _ = captiongan.train("captiongan", {
        "model": {"g_width": 8, "d_width": 4, "z_dim": 16}, "text": {"dim": 16, "text_len": 8},
        "data": {"path": str(write_captioned_bars(root / "bars"))}, "gan": {"monitor_samples": 0, "ema": 0.0},
        "train": GAN_TRAIN}, out=root / "bars-run", progress=False)
    server = LiveServer([f"bars={run.path}"])
    yield server, genforge.load(run.path, device="cpu")
    server.stop()


def test_captiongan_is_served_by_prompt(captions_server):
    live, pipe = captions_server
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    entry = next(m.model_dump() for m in client.models.list() if m.id == "bars")
    assert entry["family"] == "captiongan" and entry["text_len"] == 8 and entry["image_size"] == 28
    r = client.images.generate(model="bars", prompt="the bottom bar", n=2, extra_body={"seed": 5})
    assert np.array_equal(arrays(r), pipe.generate("the bottom bar", n=2, seed=5))
    for body, param in [({"prompt": ""}, "prompt"), ({"prompt": "a " * 9}, "prompt"),
                        ({"prompt": "a bar", "guidance": 2.0}, "guidance"), ({"prompt": "a bar", "label": 1}, "label")]:
        bad = httpx.post(live.url + "/v1/images/generations", json={"model": "bars", **body})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, (body, bad.text)
