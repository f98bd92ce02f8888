"""Fixtures for the server tests: a tiny trained GPT run, fake GAN / classifier pipelines that follow
the pipeline contracts exactly, and live uvicorn servers on 127.0.0.1 (one per configuration).
"""
from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from genforge.families import gpt
from genforge.server import Settings, create_app

KEY = "test-key"
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "User: System: Assistant: 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz .,;:!?'-\n") * 40
TINY = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64},
        "train": {"batch_size": 8, "max_iters": 30, "eval_interval": 30, "dtype": "fp32", "warmup_iters": 2,
                  "samples": False, "device": "cpu"}}


class FakeGAN:
    """The GAN pipeline contract: image_size, channels, num_classes, class_names, generate(n, seed, labels)."""

    family = "gan"

    def __init__(self, image_size=8, channels=1, class_names=()):
        self.image_size, self.channels = image_size, channels
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.meta = {"family": "gan"}
        self.calls = []

    def generate(self, n: int, seed: int | None = None, labels=None) -> np.ndarray:
        if labels is not None and self.num_classes == 0:
            raise ValueError("labels: this GAN is unconditional")
        self.calls.append((n, seed, labels))
        rng = np.random.default_rng(seed)
        img = rng.integers(0, 256, (n, self.image_size, self.image_size, self.channels), dtype=np.uint8)
        if labels is not None:  # make the class visible: the first pixel holds the label
            img[:, 0, 0, 0] = np.broadcast_to(np.asarray(labels), (n,))
        return img


class FakeText2Image(FakeGAN):
    """The TextToImagePipeline contract: generate(prompt, n, seed, guidance, temperature, top_k)."""
    family = "text2image"
    text_len = 8

    def generate(self, prompt, n=1, seed=None, guidance=None, temperature=None, top_k=None, return_warnings=False):
        assert prompt, "text-to-image needs a prompt"
        self.calls.append((n, seed, prompt))
        self.last_guidance = guidance
        images = np.full((n, self.image_size, self.image_size, self.channels), len(prompt) % 256, dtype=np.uint8)
        return (images, []) if return_warnings else images


class FakeClassifier:
    """The classifier contract: labels, classify(texts) -> [{"label", "probs"}]."""

    family = "classifier"
    labels = ["neg", "pos"]
    meta = {"family": "classifier"}

    def classify(self, texts):
        out = []
        for t in texts:
            p = min(0.99, max(0.01, t.count("good") / max(1, len(t.split()))))
            out.append({"label": "pos" if p >= 0.5 else "neg", "probs": {"neg": 1 - p, "pos": p}})
        return out


class FakeImageClassifier:
    """The image classifier contract: labels, image_size, channels, read_images (real decoding), classify."""

    family = "imageclf"
    labels = ["dark", "light"]
    image_size, channels = 8, 1
    meta = {"family": "imageclf"}

    def read_images(self, blobs, names):
        from genforge.data.images import decode
        return np.stack([decode(b, self.image_size, self.channels, n) for b, n in zip(blobs, names)])

    def classify(self, images):
        light = images.reshape(len(images), -1).mean(1) / 255
        return [{"label": self.labels[int(p >= 0.5)], "probs": {"dark": 1 - p, "light": p}} for p in light]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A 1-layer character GPT trained for 30 steps (a couple of seconds)."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "corpus.txt").write_text(TEXT)
    ov = {k: dict(v) for k, v in TINY.items()}
    ov["data"] = {"path": str(root / "corpus.txt")}
    run, _ = gpt.train(overrides=ov, out=root / "tiny", progress=False)
    return run.path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """create_app(...) served by uvicorn in a thread on 127.0.0.1."""

    def __init__(self, sources, loader=None, wait_ready=True, **settings):
        settings.setdefault("port", free_port())
        self.settings = Settings(**settings)
        self.app = create_app(sources, self.settings, loader=loader)
        self.url = f"http://127.0.0.1:{self.settings.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.settings.port, log_level="warning",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        while wait_ready and httpx.get(self.url + "/health").status_code != 200:
            assert time.monotonic() < deadline, "models did not load"
            time.sleep(0.05)

    @property
    def state(self):
        return self.app.state.genforge

    def metric(self, name: str, **labels) -> float:
        """The value of one sample from /metrics (0 when absent)."""
        text = httpx.get(self.url + "/metrics", headers=self.auth()).text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(name + ("{" + want + "}" if want else " ")) or (
                    want and line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(tiny_run):
    """The main server: the tiny GPT, a conditional and an unconditional fake GAN, a fake text-to-image
    model and a fake classifier; API key required; CORS for one origin."""
    live = LiveServer({"tiny": str(tiny_run), "digits": FakeGAN(8, 1, [str(i) for i in range(10)]),
                       "faces": FakeGAN(16, 3), "t2i": FakeText2Image(8, 3), "sentiment": FakeClassifier()},
                      api_key=KEY, cors_origins=["http://example.test"], max_tokens_limit=100_000,
                      max_batch=8, stream_interval=0.0)  # a chunk per token, as the tests inspect them (the
    # default 5 ms interval merges tokens after the first: tests/server/test_generation.py)
    yield live
    live.stop()


@pytest.fixture
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
