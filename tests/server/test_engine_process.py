"""The engine in its own process (genforge/server/engine_process.py): the same tokens, logprobs and ends as
the engine in a thread, the queue limit checked at submit, a failed load named, a dead child answered."""
from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

import genforge
from genforge.engine import Done, QueueFull, SamplingParams, Token, engine_for
from genforge.server import Settings
from genforge.server.engine_process import ProcessEngine

from ..test_engine import Collector
from .conftest import LiveServer


def generate(engine, requests):
    cols = [Collector() for _ in requests]
    for (prompt, params), col in zip(requests, cols):
        engine.submit(prompt, params, col)
    for col in cols:
        col.wait()
    return [col.events for col in cols]


@pytest.fixture(scope="module")
def process_engine(tiny_run):
    engine = ProcessEngine(tiny_run, Settings(max_batch=4, max_queue=2, stream_interval=0.05))
    yield engine
    engine.close()


def test_same_events_as_the_thread_engine(tiny_run, process_engine):
    """Seeded requests of different lengths, batched (more than max_batch: some wait), with logprobs and
    greedy rows: every Token (id, text, logprob, alternatives) and Done is the thread engine's."""
    reqs = [([1 + i, 2, 3][: 1 + i % 3], SamplingParams(max_tokens=5 + 3 * i, temperature=0.0 if i == 2 else 0.9,
                                                       top_k=5 if i % 2 else None, seed=i, logprobs=2 if i < 2 else None))
            for i in range(6)]
    thread = engine_for(genforge.load(tiny_run, device="cpu"), max_batch=4)
    try:
        want = generate(thread, reqs)
    finally:
        thread.close()
    got = generate(process_engine, reqs)
    assert got == want
    assert all(isinstance(evs[-1], Done) and evs[-1].reason == "length" for evs in got)
    assert [sum(isinstance(e, Token) for e in evs) for evs in got] == [r[1].max_tokens for r in reqs]
    assert process_engine.tokens_generated >= sum(r[1].max_tokens for r in reqs)


def test_queue_limit_is_checked_at_submit_and_cancel_ends_a_sequence(process_engine):
    long = SamplingParams(max_tokens=10**6, seed=0)
    cols = [Collector() for _ in range(6)]
    handles = [process_engine.submit([1], long, col) for col in cols]  # 4 slots + 2 waiting
    with pytest.raises(QueueFull, match="2 requests are already waiting"):
        process_engine.submit([1], long, Collector())
    deadline = time.monotonic() + 30
    while len(process_engine.active) != 4 or process_engine.queue_depth != 2:
        assert time.monotonic() < deadline, "the child did not report 4 active and 2 waiting"
        time.sleep(0.01)
    for h in handles:
        h.cancel()
    assert all(col.wait()[1].reason == "cancelled" for col in cols)
    deadline = time.monotonic() + 30
    while process_engine.active:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_bad_prompts_are_refused_before_the_child(process_engine):
    with pytest.raises(ValueError, match="at least one token"):
        process_engine.submit([], SamplingParams(), Collector())
    with pytest.raises(ValueError, match=r"token ids must be in \[0, "):
        process_engine.submit([process_engine.vocab_size], SamplingParams(), Collector())
    with pytest.raises(ValueError, match="must be positive, got 0"):
        process_engine.submit([1], SamplingParams(max_tokens=0), Collector())  # the sampler names it so


def test_a_load_the_child_cannot_do_is_named(tmp_path):
    with pytest.raises(RuntimeError, match="FileNotFoundError"):
        ProcessEngine(tmp_path / "nothing", Settings())


def test_a_dead_child_ends_what_was_in_flight_and_the_server_answers_503(tiny_run):
    live = LiveServer({"tiny": str(tiny_run)}, max_tokens_limit=10**6)
    try:
        engine = live.state.engines["tiny"]
        assert isinstance(engine, ProcessEngine)
        col = Collector()
        engine.submit([1], SamplingParams(max_tokens=10**6, seed=0), col)
        deadline = time.monotonic() + 30
        while not col.events:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(engine._proc.pid, signal.SIGKILL)
        done = col.wait()[1]
        assert done.reason == "error" and "engine process stopped" in done.message
        r = httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 4})
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_stopped"
    finally:
        live.stop()


def test_the_thread_engine_is_still_there(tiny_run):
    live = LiveServer({"tiny": str(tiny_run)}, engine="thread")
    try:
        assert not isinstance(live.state.engines["tiny"], ProcessEngine)
        r = httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 4, "seed": 1})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    finally:
        live.stop()
