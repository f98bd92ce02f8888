"""Server settings, validated once at the edge (CLI flags or the Python API) before anything starts.

    genforge serve RUN --host 127.0.0.1 --port 8000 --api-key KEY --cors-origins http://localhost:3000
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0 = any free port
    api_key: str | None = None  # when set, every route but /health, / and OPTIONS needs "Authorization: Bearer KEY"
    cors_origins: list[str] = []  # origins allowed to call the API from a browser ("*" = any); empty = CORS off
    device: str = "auto"  # where models run: auto, cpu, cuda, ...
    backend: Literal["torch", "onnx"] = "torch"  # onnx: every source is a `genforge export` folder (or a run
    #                                          exported to RUN/onnx), run by onnxruntime; torch serves such folders too
    max_batch: int = Field(32, ge=1, le=1024)  # sequences decoded together per GPT model
    max_queue: int = Field(256, ge=0, le=100_000)  # sequences waiting for a slot before new requests get 429
    queue_timeout: float = Field(30.0, gt=0)  # seconds a request may wait for a slot before it gets 429
    request_timeout: float = Field(300.0, gt=0)  # wall-clock limit of one request, seconds
    max_tokens_limit: int = Field(4096, ge=1)  # largest max_tokens a request may ask for
    max_n: int = Field(16, ge=1, le=256)  # largest n (completions per prompt, images per request)
    max_body_bytes: int = Field(1_000_000, ge=1024)  # larger request bodies get 413
    read_timeout: float = Field(30.0, gt=0)  # seconds a client has to send its request headers, and its body
    max_connections: int = Field(1024, ge=1)  # open connections; more are answered 503
    engine: Literal["process", "thread"] = "process"  # where a GPT's batching engine runs: a process of its own
    #                                          (no GIL shared with the event loop), or a thread of the server's
    threads: int | None = Field(None, ge=1)  # torch CPU threads for the whole process (None = 1 on the CPU, where
    #                                          one-token decoding steps are too small to split: measured faster)
    stream_interval: float = Field(0.05, ge=0, le=1)  # seconds between stream chunks after the first token:
    #                                          tokens made meanwhile go out together (fewer wake-ups and chunks);
    #                                          times the number of streams being sent, up to 0.1 s (generation.py)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    @field_validator("api_key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        """A key a client can send: HTTP headers carry ASCII, and the server strips spaces around it."""
        if key is None:
            return None
        if not key:
            raise ValueError("the API key is empty (--api-key '' or GENFORGE_API_KEY=''); give a key, or none "
                             "to serve without one")
        if not (key.isascii() and key.isprintable()) or key != key.strip():
            raise ValueError("the API key must be printable ASCII without spaces at its ends "
                             "(clients send it in an HTTP header)")
        return key
