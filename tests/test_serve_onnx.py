"""`genforge serve --backend onnx`: a tiny GPT, a class-conditional GAN and the default classifier (nbbag),
trained here in seconds, exported, and served from their ONNX files by one live server; checked with the
official openai client and raw httpx against the torch runs and the ONNX pipelines."""
import base64
import io
import threading

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from genforge import inference
from genforge.cli import main
from genforge.engine import Done, Engine, GPTSlots, SamplingParams
from genforge.export import export
from genforge.families import gan, gpt
from genforge.onnx_pipelines import OnnxGPTPipeline, load as load_onnx
from genforge.server import Settings
from genforge.server.state import OnnxSlots, ServerState

from .conftest import make_digit_like
from .server.conftest import TEXT, LiveServer
from .test_export_bag import bag_runs

pytestmark = pytest.mark.usefixtures("one_thread")
BLOCK = 32  # the GPT's context: requests here run past it


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (run, export)}: a character GPT, a conditional DCGAN on 4 classes, the default classifier
    (nbbag, shared with tests/test_export_bag.py)."""
    root = tmp_path_factory.mktemp("serve-onnx")
    (root / "corpus.txt").write_text(TEXT)
    g, _ = gpt.train(overrides={"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": BLOCK},
                                "data": {"path": str(root / "corpus.txt")},
                                "train": {"batch_size": 8, "max_iters": 20, "eval_interval": 20, "dtype": "fp32",
                                          "samples": False, "device": "cpu", "threads": 1}},
                     out=root / "tiny", progress=False)
    images, labels = make_digit_like()
    np.savez(root / "bars.npz", images=images, labels=labels)
    d, _ = gan.train(overrides={"model": {"arch": "dcgan", "g_width": 8, "d_width": 4, "z_dim": 16},
                                "data": {"path": str(root / "bars.npz")},
                                "gan": {"conditional": True, "monitor_samples": 0},
                                "train": {"batch_size": 8, "max_iters": 2, "eval_interval": 2, "dtype": "fp32",
                                          "threads": 1, "device": "cpu"}}, out=root / "digits", progress=False)
    return {"tiny": (g.path, export(str(g.path))), "digits": (d.path, export(str(d.path))),
            "sentiment": bag_runs(tmp_path_factory)["nbbag"]}  # exported with int8 (the file it serves)


@pytest.fixture(scope="module")
def live(runs):
    sources = [str(runs["tiny"][1]), f"digits={runs['digits'][1]}", f"sentiment={runs['sentiment'][1]}"]
    server = LiveServer(sources, backend="onnx", stream_interval=0.0,
                        max_tokens_limit=1000)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def onnx_pipes(runs):
    return {name: load_onnx(out) for name, (_, out) in runs.items()}


def test_models_health_and_metrics(client, live, runs):
    models = {m.id: m.model_dump() for m in client.models.list()}  # RUN/onnx is named after its run
    assert {k: m["family"] for k, m in models.items()} == {"tiny": "gpt", "digits": "gan", "sentiment": "classifier"}
    assert models["tiny"]["context_length"] == BLOCK and models["digits"]["num_classes"] == 4
    assert models["sentiment"]["labels"] == ["0", "1"]
    assert all(type(s.pipeline).__module__ == "genforge.onnx_pipelines" for s in live.state.models.values())
    assert httpx.get(live.url + "/health").json()["models"] == ["tiny", "digits", "sentiment"]
    client.completions.create(model="tiny", prompt="All", max_tokens=3, temperature=0)
    assert live.metric("genforge_tokens_generated_total", model="tiny") >= 3


def test_greedy_completions_match_the_onnx_pipeline_batched_and_past_the_context(client, onnx_pipes, runs):
    prompts = ["First Citizen:", "All", "Speak, sp"]  # three lengths: one batch, masked pasts
    want = [onnx_pipes["tiny"].generate(p, max_new_tokens=2 * BLOCK, temperature=0)[len(p):] for p in prompts]
    r = client.completions.create(model="tiny", prompt=prompts, max_tokens=2 * BLOCK, temperature=0)
    assert [c.text for c in sorted(r.choices, key=lambda c: c.index)] == want
    assert all(c.finish_reason == "length" for c in r.choices) and r.usage.completion_tokens == 3 * 2 * BLOCK
    torch_pipe = inference.load(runs["tiny"][0], device="cpu")
    assert want[0] == torch_pipe.generate(prompts[0], max_new_tokens=2 * BLOCK, temperature=0)[len(prompts[0]):]


def test_the_decoder_slots_give_the_torch_engines_tokens(runs, onnx_pipes):
    """Seeded sampling through the engine: ONNX slots and torch slots give the same tokens, prompts of
    three lengths decoded together."""
    pipe = inference.load(runs["tiny"][0], device="cpu")
    prompts = [pipe.encode_prompt(p) for p in ("All:", "First Citizen:\nBefore", "S")]

    def tokens(slots):
        engine, events, ended = Engine(slots, tokenizer=pipe.tokenizer), [[] for _ in prompts], threading.Semaphore(0)

        def emit(i):
            return lambda ev: (events[i].append(ev), isinstance(ev, Done) and ended.release())
        try:
            for i, p in enumerate(prompts):
                engine.submit(p, SamplingParams(max_tokens=24, temperature=0.9, top_k=20, seed=i), emit(i))
            assert all(ended.acquire(timeout=60) for _ in prompts)
        finally:
            engine.close()
        assert all(ev[-1] == Done("length") for ev in events)
        return [[e.id for e in ev[:-1]] for ev in events]
    ours = tokens(OnnxSlots(onnx_pipes["tiny"]))
    assert ours == tokens(GPTSlots(pipe.model)) and all(len(t) == 24 for t in ours)


def test_streamed_completions_and_chat_equal_the_unstreamed(client):
    kw = dict(model="tiny", prompt="First", max_tokens=20, temperature=0.8, seed=5)
    whole = client.completions.create(**kw).choices[0].text
    chunks = [c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices]
    assert "".join(chunks) == whole and len(chunks) > 1
    messages = [{"role": "user", "content": "Hi"}]
    chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0)
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0,
                                              stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == chat.choices[0].message.content and chat.choices[0].finish_reason in ("length", "stop")


def test_logprobs_and_stop(client):
    r = client.completions.create(model="tiny", prompt="All", max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 6 and all(v <= 0 for v in lp.token_logprobs)
    assert all(len(t) == 2 and max(t.values()) == pytest.approx(v, abs=1e-5)
               for t, v in zip(lp.top_logprobs, lp.token_logprobs))  # greedy: the chosen token is the top one
    text = r.choices[0].text
    cut = client.completions.create(model="tiny", prompt="All", max_tokens=6, temperature=0, stop=[text[2:4]])
    assert cut.choices[0].text == text[:text.index(text[2:4])] and cut.choices[0].finish_reason == "stop"


def test_text_requests_get_the_same_4xx(client):
    cases = [
        (dict(model="tiny", prompt="All " * 9, max_tokens=1), "prompt", "context_length_exceeded"),
        (dict(model="tiny", prompt=[[0, 10_000]], max_tokens=1), "prompt", None),
        (dict(model="tiny", prompt="All", max_tokens=1001), "max_tokens", None),
        (dict(model="tiny", prompt="All", max_tokens=2, temperature=-1), "temperature", None),
        (dict(model="digits", prompt="All", max_tokens=1), "model", "model_not_supported"),
    ]
    for kw, param, code in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(**kw)
        assert e.value.body["param"] == param and (code is None or e.value.body["code"] == code), kw
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="All", max_tokens=1)


def arrays(response) -> np.ndarray:
    ims = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in response.data]
    return np.stack([np.asarray(im).reshape(im.height, im.width, -1) for im in ims])


def test_images_from_the_exported_generator(client, onnx_pipes):
    g = onnx_pipes["digits"]
    r = client.images.generate(model="digits", prompt="", n=3, size="28x28", extra_body={"seed": 4})
    assert np.array_equal(arrays(r), g.generate(3, seed=4))  # no class: the classes in turn
    by_name = client.images.generate(model="digits", prompt="a picture of a 2", n=2, extra_body={"seed": 3})
    assert np.array_equal(arrays(by_name), g.generate(2, seed=3, labels=2))
    bad = (({"prompt": "", "size": "64x64"}, "size"), ({"prompt": "", "extra_body": {"label": 4}}, "label"),
           ({"prompt": "a cat"}, "prompt"))
    for kw, param in bad:
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(model="digits", **kw)
        assert e.value.body["param"] == param


def test_classify_matches_the_pipelines(live, runs, onnx_pipes):
    texts = ["superb wonderful film", "awful boring dull", "the plot !!"]
    r = httpx.post(live.url + "/v1/classify", json={"model": "sentiment", "input": texts})
    assert r.status_code == 200
    probs = np.array([[d["probs"][k] for k in ("0", "1")] for d in r.json()["data"]])
    assert np.abs(probs - onnx_pipes["sentiment"].predict_proba(texts)).max() <= 1e-7  # the int8 file
    torch_pipe = inference.load(runs["sentiment"][0], device="cpu")
    assert np.abs(probs - torch_pipe.predict_proba(texts)).max() <= 0.05
    assert [d["label"] for d in r.json()["data"]] == [d["label"] for d in torch_pipe.classify(texts)]
    bad = httpx.post(live.url + "/v1/classify", json={"model": "sentiment", "input": ["fine", "  "]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert "texts[1] is empty" in bad.json()["error"]["message"]


def test_exports_load_from_onnx_with_either_backend(runs, tmp_path, capsys):
    run, out = runs["tiny"]
    state = ServerState({}, Settings())  # torch backend: a folder holding an export still loads from ONNX
    assert isinstance(state.load_source(out, "cpu"), OnnxGPTPipeline)
    assert not isinstance(state.load_source(run, "cpu"), OnnxGPTPipeline)
    assert isinstance(ServerState({}, Settings(backend="onnx")).load_source(run, "cpu"), OnnxGPTPipeline)  # RUN/onnx
    assert main(["serve", str(tmp_path), "--backend", "onnx"]) == 2  # fails before listening, in one line
    err = capsys.readouterr().err
    assert "no genforge_export.json" in err and err.count("\n") == 1
