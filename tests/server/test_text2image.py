"""`genforge serve` over a tiny REAL text2image run: /v1/models, /v1/images/generations with a prompt
(the same images as the Python API for the same seed), each bad prompt (empty: 400; no known word:
images and a warning; more known words than the caption context: 400 naming the limit), the
playground's warning line, and two models generating at once each answering with its own warnings.
"""
import base64
import io
import threading
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image

import genforge
from tests.families.test_text2image import train_tiny

from .conftest import LiveServer
from .test_playground import page  # noqa: F401  (the headless Chromium fixture)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run, _ = train_tiny(tmp_path_factory.mktemp("t2i-serve"))
    return run.path


@pytest.fixture(scope="module")
def live(run):
    server = LiveServer([f"bars={run}"])
    yield server
    server.stop()


def post(live, **body):
    return httpx.post(live.url + "/v1/images/generations", json={"model": "bars", **body}, timeout=60)


def arrays(reply) -> np.ndarray:
    ims = [Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))) for d in reply.json()["data"]]
    return np.stack([np.asarray(im).reshape(im.height, im.width, -1) for im in ims])


def test_models_lists_the_text_to_image_run(live):
    (m,) = httpx.get(live.url + "/v1/models").json()["data"]
    assert m["id"] == "bars" and m["family"] == "text2image"
    assert (m["image_size"], m["channels"], m["text_len"]) == (12, 1, 5)


def test_a_prompt_gives_the_python_api_images(live, run):
    pipe = genforge.load(run, device="cpu")
    reply = post(live, prompt="a bar at the top", n=3, seed=11)
    assert reply.status_code == 200 and "warnings" not in reply.json()
    assert reply.json()["size"] == "12x12"
    assert np.array_equal(arrays(reply), pipe.generate("a bar at the top", n=3, seed=11))
    guided = post(live, prompt="a bar at the top", n=3, seed=11, guidance=1.0)
    assert np.array_equal(arrays(guided), pipe.generate("a bar at the top", n=3, seed=11, guidance=1.0))


def test_bad_prompts(live):
    for empty in ("", "   "):
        r = post(live, prompt=empty, n=1)
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = post(live, prompt="!?", n=1)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("prompt: '!?' has no words")
    r = post(live, prompt="a bar at the top or the bottom", n=1)
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    assert "more than this model's caption context of 5 words" in r.json()["error"]["message"]
    r = post(live, prompt="purple elephants", n=2, seed=1)
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    assert r.json()["warnings"] == ["prompt 'purple elephants': no word this model knows; the images are unconditional"]
    r = post(live, prompt="a bar", label=1)
    assert r.status_code == 400 and r.json()["error"]["param"] == "label"


def test_playground_shows_the_warning(live, page):  # noqa: F811
    page.goto(live.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#image-prompt", "purple elephants")
    page.fill("#image-n", "2")
    page.click("#image-generate")
    page.wait_for_function("document.querySelectorAll('#image-grid img').length === 2")
    page.wait_for_selector("#status:has-text('no word this model knows')")


class Rendezvous:
    """A text-to-image fake whose `generate` waits for the other model's, so the two run at once; it warns as
    the real pipelines do: issued with warnings.warn, or returned beside the images with return_warnings."""
    family, text_len, image_size, channels, meta = "text2image", 8, 4, 1, {"family": "text2image"}

    def __init__(self, barrier: threading.Barrier, said: list[str]):
        self.barrier, self.said = barrier, said

    def generate(self, prompt, n=1, seed=None, guidance=None, temperature=None, top_k=None, return_warnings=False):
        self.barrier.wait()
        for note in [] if return_warnings else self.said:
            warnings.warn(note)
        self.barrier.wait()  # both have warned (or not) before either returns
        images = np.zeros((n, 4, 4, 1), np.uint8)
        return (images, list(self.said)) if return_warnings else images


def test_two_models_generating_at_once_keep_their_own_warnings():
    barrier = threading.Barrier(2, timeout=20)
    server = LiveServer({"warns": Rendezvous(barrier, ["prompt 'x': unknown words left out: x"]),
                         "quiet": Rendezvous(barrier, [])})
    replies = {}

    def ask(model):
        replies[model] = httpx.post(server.url + "/v1/images/generations", json={"model": model, "prompt": "a bar"},
                                    timeout=60)
    try:
        threads = [threading.Thread(target=ask, args=(m,)) for m in ("warns", "quiet")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert replies["warns"].status_code == replies["quiet"].status_code == 200
    assert replies["warns"].json()["warnings"] == ["prompt 'x': unknown words left out: x"]
    assert "warnings" not in replies["quiet"].json()
