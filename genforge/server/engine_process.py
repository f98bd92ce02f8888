"""The batching engine in a process of its own: `genforge serve`'s default for GPT runs (--engine process).

    engine = ProcessEngine("runs/shakespeare", settings)   # same interface as genforge.engine.Engine
    seq = engine.submit(prompt_ids, SamplingParams(max_tokens=50, seed=0), emit=events.append); seq.cancel()

Why: in one process the engine's thread and the server's event loop share the GIL, and every torch op of
a decode step releases and retakes it; under many streaming clients the event loop's work (parsing
requests, sending chunks) stalls the engine between ops (BENCHMARKS.md). Here a spawned child loads the
same run, runs `Engine.step()` in its main thread (no GIL to share, no worker-thread OpenMP team), and
sends each step's events back as one JSON message over a pipe; a reader thread in the server hands them
to the `emit` callbacks exactly as the engine's thread would. Seeded requests give the same tokens either
way (the child runs the same Engine). The queue limit is checked here, before a request reaches the child,
so a full server answers 429 at once; the child reports its active sequences, queue depth and counters
with every message, for /metrics.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
import time
from collections.abc import Callable

from ..engine import Done, QueueFull, SamplingParams, Token

dumps = json.JSONEncoder(separators=(",", ":")).encode
FLUSH_INTERVAL = 0.02  # seconds between the child's event messages, at most (first tokens and ends go at once)


class Handle:
    """The server's side of one sequence: cancel() stops it in the child."""

    def __init__(self, engine: ProcessEngine, key: int):
        self.engine, self.key = engine, key

    def cancel(self):
        self.engine._send(["cancel", self.key])


class ProcessEngine:
    def __init__(self, source: str, settings, start_timeout: float = 300.0):
        self.max_batch, self.max_queue = settings.max_batch, settings.max_queue
        ctx = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=child_main, args=(child, str(source), settings.model_dump()),
                                 name="genforge-engine", daemon=True)
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(start_timeout):
                raise RuntimeError(f"the engine process did not load the model in {start_timeout:g}s")
            hello = json.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            hello = {"error": "the engine process exited while loading the model"}
        except RuntimeError as e:
            hello = {"error": str(e)}
        if "error" in hello:
            self._proc.kill()
            raise RuntimeError(hello["error"])
        self.vocab_size = hello["ready"]
        self._emits: dict[int, Callable] = {}
        self._handles: dict[int, Handle] = {}
        self._lock = threading.Lock()  # guards the maps, the key counter and sends on the pipe
        self._next, self._closed = 0, False
        self._active: list[int] = []
        self.queue_depth = self.tokens_generated = self.steps = 0
        self._reader = threading.Thread(target=self._read, name="genforge-engine-reader", daemon=True)
        self._reader.start()

    # ---- the Engine interface, any thread

    def submit(self, prompt: list[int], params: SamplingParams, emit: Callable) -> Handle:
        params.validate()
        if not prompt:
            raise ValueError("prompt must hold at least one token")
        if max(prompt) >= self.vocab_size or min(prompt) < 0:
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            waiting = len(self._emits) - self.max_batch  # in flight beyond the slots: waiting (or just ended)
            if waiting >= self.max_queue:
                raise QueueFull(f"{waiting} requests are already waiting")
            key, self._next = self._next, self._next + 1
            self._emits[key], handle = emit, Handle(self, key)
            self._handles[key] = handle
            self._conn.send_bytes(dumps(["submit", key, list(prompt), dataclasses.asdict(params)]).encode())
        return handle

    @property
    def active(self) -> list[Handle]:
        """The sequences being decoded now (as of the child's last message)."""
        handles = self._handles
        return [handles[k] for k in self._active if k in handles]

    def close(self):
        with self._lock:
            closed, self._closed = self._closed, True
        if not closed:
            self._send(["close"])
        self._reader.join(timeout=10)  # the child ends every sequence, then exits: the reader sees EOF
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()

    # ---- internals

    def _send(self, msg: list):
        with self._lock:
            try:
                self._conn.send_bytes(dumps(msg).encode())
            except (OSError, ValueError):  # the child is gone: the reader ends what was in flight
                pass

    def _read(self):
        try:
            while True:
                msg = json.loads(self._conn.recv_bytes())
                self._active, self.queue_depth = msg["a"], msg["w"]
                self.tokens_generated, self.steps = msg["n"], msg["s"]
                for ev in msg["e"]:
                    key = ev[1]
                    emit = self._emits.get(key)
                    if ev[0] == "d":
                        with self._lock:
                            self._emits.pop(key, None)
                            self._handles.pop(key, None)
                    if emit is not None:
                        deliver(emit, Token(ev[2], ev[3], ev[4], ev[5] and [tuple(t) for t in ev[5]])
                                if ev[0] == "t" else Done(ev[2], ev[3]))
        except (EOFError, OSError):
            pass
        with self._lock:  # the child exited: end whatever it left unanswered
            self._closed = True
            left, self._emits, self._handles, self._active = list(self._emits.values()), {}, {}, []
        for emit in left:
            deliver(emit, Done("error", f"the engine process stopped (exit code {self._proc.exitcode})"))


def deliver(emit: Callable, event) -> None:
    try:
        emit(event)
    except Exception:  # a broken receiver must not stop the others
        pass

# ----------------------------------------------------------------------------- the child


def child_main(conn, source: str, settings: dict) -> None:
    """Load the run as the server does, report ready (or the error), then serve the pipe until told to close."""
    try:
        import torch

        from .. import onnx_pipelines
        from ..engine import Engine, GPTSlots
        from .settings import Settings
        from .state import OnnxSlots, ServerState
        s = Settings(**settings)
        torch.set_num_threads(s.threads or 1)
        pipe = ServerState({}, s).load_source(source, device=s.device)
        slots = OnnxSlots(pipe) if isinstance(pipe, onnx_pipelines.OnnxGPTPipeline) else GPTSlots(pipe.model)
        # the server checks the queue limit before a request gets here; the child's own queue never refuses
        engine = Engine(slots, tokenizer=pipe.tokenizer, max_batch=s.max_batch, max_queue=s.max_queue + s.max_batch,
                        queue_timeout=s.queue_timeout, thread=False)
    except Exception as e:  # noqa: BLE001 - whatever stops loading is the server's load error
        conn.send_bytes(dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        return
    conn.send_bytes(dumps({"ready": engine.vocab_size}).encode())
    with torch.inference_mode():  # events go out at least as often as the server sends stream chunks
        serve_pipe(conn, engine, min(s.stream_interval, FLUSH_INTERVAL))


def serve_pipe(conn, engine, interval: float = 0.0) -> None:
    """Commands in (submit, cancel, close); events out as one message per engine step that made a sequence's
    first token or its end, else at most every `interval` seconds (each message wakes the server's reader
    thread, which takes the GIL from its event loop: at one token per message a single stream pays ~20%)."""
    out: list[list] = []
    seqs: dict = {}
    started: set[int] = set()  # sequences that have sent their first token
    urgent, sent = False, time.monotonic()

    def emitter(key: int):
        def emit(ev):
            nonlocal urgent
            if isinstance(ev, Token):
                out.append(["t", key, ev.id, ev.text, ev.logprob, ev.top])
                if key not in started:
                    started.add(key)
                    urgent = True
            else:
                out.append(["d", key, ev.reason, ev.message])
                seqs.pop(key, None)
                started.discard(key)
                urgent = True
        return emit

    def flush():
        nonlocal urgent, sent
        conn.send_bytes(dumps({"e": out, "a": [s.key for s in engine.active], "w": len(engine.waiting),
                               "n": engine.tokens_generated, "s": engine.steps}).encode())
        out.clear()
        urgent, sent = False, time.monotonic()

    try:
        while True:
            busy = bool(engine.active or engine.waiting)
            while conn.poll(0 if busy else None):
                cmd = json.loads(conn.recv_bytes())
                if cmd[0] == "submit":
                    key, prompt, params = cmd[1], cmd[2], SamplingParams(**cmd[3])
                    try:
                        seq = engine.submit(prompt, params, emitter(key))
                        seq.key, seqs[key] = key, seq
                    except (ValueError, QueueFull, RuntimeError) as e:
                        out.append(["d", key, "error", str(e)])
                elif cmd[0] == "cancel" and cmd[1] in seqs:
                    seqs[cmd[1]].cancel()
                elif cmd[0] == "close":
                    engine.close()  # every sequence in flight ends with Done("cancelled")
                    flush()
                    return
                busy = True
            engine.step()
            if out and (urgent or time.monotonic() - sent >= interval):
                flush()
    except (EOFError, OSError):  # the server is gone
        return
