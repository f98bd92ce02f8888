"""What the server holds: the served models (pipeline, family, batching engine) and their loading state.

Models are loaded in the background once the app starts (so /health can answer 503 while they
load) through `genforge.inference.load`, and looked up by the routes with `ServerState.get`.
Exports (`genforge export RUN --format onnx`: every source with `--backend onnx`, and any folder holding
an export's manifest) load through genforge.onnx_pipelines and run on onnxruntime; an exported GPT is
decoded by the same batching engine, over its ONNX decoder (OnnxSlots), so streaming, stop strings,
logprobs, queueing and timeouts behave as with torch (the engine's scheduler and sampler are torch's:
the server imports torch either way).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import torch

from .. import inference, onnx_pipelines
from ..engine import Engine, engine_for
from .engine_process import ProcessEngine
from .errors import APIError
from .settings import Settings

TEXT, IMAGE, CLASSIFY = ("gpt",), ("gan", "text2image", "captiongan"), ("classifier",)
IMAGE_CLASSIFY = ("imageclf",)


@dataclass
class Served:
    name: str
    pipeline: Any
    family: str
    created: int
    engine: Engine | ProcessEngine | None = None  # GPT models only
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one torch call at a time for other families


def model_name(source) -> str:
    """A run's name: its directory name (runs/NAME, runs/NAME/checkpoints/best.safetensors, hf:DIR)."""
    p = Path(str(source).removeprefix("hf:"))
    if p.name == "onnx":  # RUN/onnx, the default export folder, is named after its run
        p = p.parent
    if p.suffix == ".safetensors":
        p = p.parent.parent if p.parent.name == "checkpoints" else p.with_suffix("")
    return p.resolve().name if str(p) in ("", ".") else p.name


def name_sources(sources) -> dict[str, Any]:
    """[RUN or NAME=RUN or pipeline, ...] or {name: RUN or pipeline} -> {name: source}; names are unique."""
    if isinstance(sources, dict):
        return dict(sources)
    named: dict[str, Any] = {}
    for src in sources:
        if isinstance(src, str) and "=" in src and not src.startswith("hf:"):
            name, src = src.split("=", 1)
            if not name.strip() or not src:
                raise ValueError(f"{name}={src}: NAME=RUN needs a model name and a run (e.g. tiny=runs/tiny)")
        elif isinstance(src, (str, Path)):
            name = model_name(src)
        else:
            name = getattr(src, "name", None) or f"{src.family}-{len(named)}"
        if name in named:
            raise ValueError(f"two models are named {name!r}; name them with NAME=RUN")
        named[name] = src
    return named


class OnnxSlots(onnx_pipelines.DecoderSlots):
    """An exported GPT's decoder as the engine's model side: the engine's torch tensors in and out."""

    def forward(self, idx: torch.Tensor, start: list[int], rows: slice) -> torch.Tensor:
        return torch.from_numpy(super().forward(idx.numpy(), start, rows))


class ServerState:
    def __init__(self, sources: dict[str, Any], settings: Settings, loader=None):
        self.sources, self.settings, self.loader = sources, settings, loader or self.load_source
        self.models: dict[str, Served] = {}
        self.engines: dict[str, Engine | ProcessEngine] = {}
        self.loading = True
        self.load_error: str | None = None  # what clients see: the model and the kind of error, no paths
        self.load_detail: str | None = None  # the full reason, for the server's log and exit message
        self.on_failure = None  # called when loading fails (serve() stops the server)

    async def load(self):
        name = None
        try:
            for name, src in self.sources.items():
                if isinstance(src, (str, Path)):
                    pipe = await anyio.to_thread.run_sync(lambda: self.loader(src, device=self.settings.device))
                else:
                    pipe = src
                family = getattr(pipe, "family", None)
                if family not in TEXT + IMAGE + CLASSIFY + IMAGE_CLASSIFY:
                    raise ValueError(f"{name}: genforge serve cannot serve a {family!r} model")
                served = Served(name, pipe, family, created=int(time.time()))
                if family in TEXT:
                    served.engine = await anyio.to_thread.run_sync(lambda: self.make_engine(src, pipe))
                    self.engines[name] = served.engine
                self.models[name] = served
        except Exception as e:  # reported by /health and every model route (without file paths)
            self.load_detail = f"loading model '{name}' failed: {type(e).__name__}: {e}"
            self.load_error = (f"model '{name}' could not be loaded ({type(e).__name__}; the reason is in the "
                               "server log)")
            print(f"genforge serve: error: {self.load_detail}", flush=True)
            if self.on_failure is not None:
                self.on_failure()
        finally:
            self.loading = False

    def make_engine(self, src, pipe):
        """The batching engine of a GPT: in a process of its own when it can load the run itself (a path, the
        default loader, --engine process), else a thread beside the event loop."""
        s = self.settings
        if s.engine == "process" and isinstance(src, (str, Path)) and self.loader == self.load_source:
            return ProcessEngine(src, s)
        kw = dict(max_batch=s.max_batch, max_queue=s.max_queue, queue_timeout=s.queue_timeout)
        if isinstance(pipe, onnx_pipelines.OnnxGPTPipeline):
            return Engine(OnnxSlots(pipe), tokenizer=pipe.tokenizer, **kw)
        return engine_for(pipe, **kw)

    def load_source(self, src, device: str):
        """A run on torch, or an export on onnxruntime (with backend onnx, or a folder holding an export)."""
        if self.settings.backend == "onnx" or (Path(str(src)) / onnx_pipelines.MANIFEST).is_file():
            return onnx_pipelines.load(src, threads=self.settings.threads or 1)
        return inference.load(src, device=device)

    def close(self):
        for engine in self.engines.values():
            engine.close()

    def check_ready(self):
        if self.loading:
            raise APIError(503, "models are still loading; retry shortly", code="loading", headers={"Retry-After": "1"})
        if self.load_error:
            raise APIError(503, f"the server could not load its models: {self.load_error}", code="load_failed")

    def get(self, name: str, families: tuple[str, ...], route: str) -> Served:
        self.check_ready()
        served = self.models.get(name)
        if served is None:
            raise APIError(404, f"The model '{name}' does not exist (serving: {', '.join(self.models)})",
                           param="model", code="model_not_found")
        if served.family not in families:
            raise APIError(400, f"model '{name}' is a {served.family} model; {route} serves "
                           f"{' and '.join(families)} models", param="model", code="model_not_supported")
        return served
