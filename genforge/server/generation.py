"""Text generation as the completions and chat routes see it: prompts in, choices out.

`Generation` submits every (prompt, sample) pair of a request to the model's batching engine as
one sequence, turns the engine's events (delivered from its thread into this event loop) into
per-choice text, applies stop strings (never included in the text; finish_reason "stop"), and
stops the sequences when the client leaves or an error ends the request.
Choice j of a seeded request samples with seed + j (as `genforge sample --num-samples` does).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import random
import time

from ..engine import Done, QueueFull, SamplingParams, Token
from .errors import APIError, error_body
from .settings import Settings
from .state import Served

DONE = "data: [DONE]\n\n"
to_json = json.JSONEncoder(separators=(",", ":")).encode  # built once: json.dumps with separators builds one per call


def sse(obj: dict) -> str:
    return f"data: {to_json(obj)}\n\n"


ids = random.Random()  # seeded once from the system's randomness, and apart from any seeding of `random`


def new_id(prefix: str) -> str:
    """A response id; unique, not secret, so drawn without a system call (os.urandom) per request."""
    return f"{prefix}-{ids.getrandbits(96):024x}"


class ClientGone(Exception):
    """The client disconnected before the response was ready."""


class StopText:
    """Holds back text that might start a stop string; cuts the text at the first stop string."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.buf = ""

    def push(self, piece: str) -> tuple[str, bool]:
        """Add a piece; return (text safe to emit, whether a stop string was reached)."""
        self.buf += piece
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[:min(hits)], ""
            return out, True
        keep = 0  # longest tail of buf that is the beginning of some stop string
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), keep, -1):
                if self.buf.endswith(s[:k]):
                    keep = k
                    break
        out, self.buf = self.buf[:len(self.buf) - keep], self.buf[len(self.buf) - keep:]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


@dataclasses.dataclass
class Choice:
    index: int
    prompt_index: int
    stop: StopText
    text: str = ""
    tokens: list[Token] = dataclasses.field(default_factory=list)
    offsets: list[int] = dataclasses.field(default_factory=list)  # text offset of each token
    finish_reason: str | None = None
    seq: object = None


# ----------------------------------------------------------------------------- request checks


def check_unsupported(body, settings: Settings) -> None:
    """400 naming the parameter for what genforge accepts in the schema but does not implement."""
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise APIError(400, f"{name}: only 0 is supported", param=name, code="unsupported_parameter")
    if body.logit_bias:
        raise APIError(400, "logit_bias is not supported", param="logit_bias", code="unsupported_parameter")
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options is only allowed when stream is true", param="stream_options")
    if body.n > settings.max_n:
        raise APIError(400, f"n: at most {settings.max_n} per request", param="n")


def encode(served: Served, text: str, param: str) -> list[int]:
    try:
        return served.pipeline.encode_prompt(text)
    except ValueError as e:  # the tokenizer names its input "prompt": name the request's parameter instead
        reason = str(e).removeprefix("prompt: ")
        raise APIError(400, f"{param}: {reason}", param=param, code="invalid_prompt") from None


def check_context(served: Served, ids: list[int], param: str) -> None:
    block = served.pipeline.context_length
    if len(ids) > block:
        raise APIError(400, f"This model's maximum context length is {block} tokens, but the {param} has "
                       f"{len(ids)} tokens.", param=param, code="context_length_exceeded")


def sampling_params(body, max_tokens: int, logprobs: int | None, settings: Settings) -> SamplingParams:
    if max_tokens > settings.max_tokens_limit:
        raise APIError(400, f"max_tokens: at most {settings.max_tokens_limit} (got {max_tokens})", param="max_tokens")
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_k=body.top_k,
                          top_p=body.top_p if body.top_p < 1 else None, seed=body.seed, logprobs=logprobs,
                          timeout=settings.request_timeout)


def stop_list(stop) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}

# ----------------------------------------------------------------------------- running


class Generation:
    streaming = 0  # streams being sent by this process: each chunk costs its event loop, which shares the GIL
    #                with the engine's thread, so the chunks of all of them together leave at a bounded rate

    def __init__(self, served: Served, prompts: list[list[int]], n: int, params: SamplingParams,
                 stops: list[str], metrics, route: str, interval: float = 0.0):
        self.served, self.prompts, self.n, self.params = served, prompts, n, params
        self.metrics, self.route = metrics, route
        self.choices = [Choice(p * n + j, p, StopText(stops)) for p in range(len(prompts)) for j in range(n)]
        self.prompt_tokens = sum(len(p) for p in prompts)
        self.t0 = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished = False
        self.interval = interval  # seconds between stream chunks after the first token
        # the engine's thread appends (choice, event) and wakes this loop only while it waits for them
        # (signalled False): not while it sends a chunk or waits out the stream interval
        self.pending: collections.deque = collections.deque()
        self.wake, self.signalled = asyncio.Event(), True
        self.ended = asyncio.Event()  # some sequence ended: cut the stream interval short

    def start(self):
        loop = asyncio.get_running_loop()
        self.metrics.prompt_tokens.labels(self.served.name).inc(self.prompt_tokens)
        for c in self.choices:
            j = c.index % self.n
            seed = None if self.params.seed is None else self.params.seed + j
            params = dataclasses.replace(self.params, seed=seed)

            def emit(event, i=c.index):
                self.pending.append((i, event))
                if isinstance(event, Done):
                    loop.call_soon_threadsafe(self.ended.set)
                if not self.signalled:
                    self.signalled = True
                    loop.call_soon_threadsafe(self.wake.set)
            try:
                c.seq = self.served.engine.submit(self.prompts[c.prompt_index], params, emit)
            except QueueFull as e:
                self.cancel()
                raise APIError(429, f"the server is busy ({e}); retry shortly", code="queue_full",
                               headers={"Retry-After": "1"}) from None
            except RuntimeError as e:  # the engine is closed: the server is stopping, or its engine process ended
                self.cancel()
                raise APIError(503, f"the model's engine is not running ({e})", code="engine_stopped") from None

    def cancel(self):
        for c in self.choices:
            if c.seq is not None:
                c.seq.cancel()

    def abandon(self):
        """The client left: stop generating and count it."""
        if not self.finished:
            self.finished = True
            self.cancel()
            self.metrics.disconnects.labels(self.route).inc()

    async def events(self):
        """Yield (choice, new text, new tokens) until every choice has a finish_reason.

        Events that are already waiting are merged per choice, so a busy server sends fewer, larger
        stream chunks instead of falling behind. The first token always goes out on its own, so a
        client sees it as soon as it exists; after it, chunks leave at most every `stream_interval`
        seconds times the number of streams being sent (up to 0.1 s): each chunk costs this loop time that
        the engine's thread waits for (the GIL), so 16 streams at a chunk each per 5 ms cost the engine
        about a third of its decoding rate on a small machine.
        """
        remaining = len(self.choices)
        limit = self.params.timeout + 30.0  # the engine enforces the limit; this only guards against a stall
        while remaining:
            while not self.pending:  # a wake-up can be stale: its events were drained with an earlier batch
                self.wake.clear()
                self.signalled = False  # then look again: an event appended before this line did not signal
                if self.pending:
                    break
                try:
                    async with asyncio.timeout(limit):  # a timer, not a task per wait as wait_for makes
                        await self.wake.wait()
                except TimeoutError:
                    self.cancel()
                    raise APIError(504, "generation stalled", code="timeout") from None
            batch = [self.pending.popleft()]
            while self.first_token_at is not None and self.pending:
                batch.append(self.pending.popleft())
            updates: dict[int, tuple[str, list[Token]]] = {}
            for i, ev in batch:
                c = self.choices[i]
                if c.finish_reason is not None:
                    continue
                text, tokens = updates.get(i, ("", []))
                if isinstance(ev, Token):
                    if self.first_token_at is None:
                        self.first_token_at = time.perf_counter()
                        self.metrics.ttft.labels(self.served.name).observe(self.first_token_at - self.t0)
                    piece, stopped = c.stop.push(ev.text)
                    c.offsets.append(len(c.text))
                    c.tokens.append(ev)
                    c.text += piece
                    updates[i] = (text + piece, tokens + [ev])
                    if stopped:
                        c.finish_reason = "stop"
                        c.seq.cancel()
                        remaining -= 1
                elif ev.reason == "length":
                    piece = c.stop.flush()
                    c.text += piece
                    c.finish_reason = "length"
                    remaining -= 1
                    updates[i] = (text + piece, tokens)
                else:
                    self.fail(ev)
            for i, (text, tokens) in updates.items():
                yield self.choices[i], text, tokens
            if remaining and self.first_token_at is not None and self.interval > 0 and not self.ended.is_set():
                pause = min(self.interval * max(1, Generation.streaming), max(self.interval, 0.1))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self.ended.wait()
        self.finished = True

    def fail(self, ev: Done):
        """An engine-side end other than length: stop everything and raise the matching API error."""
        self.cancel()
        self.finished = True
        if ev.reason == "queue_timeout":
            raise APIError(429, f"the server is busy: {ev.message}; retry shortly", code="queue_timeout",
                           headers={"Retry-After": "1"})
        if ev.reason == "timeout":
            raise APIError(504, ev.message, code="request_timeout")
        if ev.reason == "cancelled":
            raise APIError(503, f"generation was cancelled: {ev.message or 'server shutting down'}", code="cancelled")
        raise APIError(500, f"generation failed: {ev.message}", code="internal_error")

    async def collect(self, request):
        """Run to the end (non-streaming), stopping early if the client disconnects."""
        async def drain():
            async for _ in self.events():
                pass

        async def watch():
            while not await request.is_disconnected():
                await asyncio.sleep(0.05)

        work, watcher = asyncio.ensure_future(drain()), asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if work in done:
            return work.result()
        work.cancel()
        self.abandon()
        raise ClientGone()

    async def stream(self, first: list[dict], chunk, final=None):
        """SSE text: `first` chunks, chunk(choice, text, tokens) per event (None = skip), final(), [DONE]."""
        ended = False
        Generation.streaming += 1
        try:
            for obj in first:
                yield sse(obj)
            async for c, text, tokens in self.events():
                obj = chunk(c, text, tokens)
                if obj is not None:
                    yield sse(obj)
            if final is not None:
                obj = final()
                if obj is not None:
                    yield sse(obj)
            ended = True
        except APIError as e:
            ended = True
            yield sse(error_body(e.status, e.message, e.param, e.code))
        finally:
            Generation.streaming -= 1
            if not ended:  # cancelled from outside: the client disconnected
                self.abandon()
        yield DONE

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.choices)

# ----------------------------------------------------------------------------- logprobs shapes


def completion_logprobs(served: Served, tokens: list[Token], offsets: list[int], base: int = 0) -> dict:
    """The completions shape: parallel lists of tokens, their logprobs, top alternatives, text offsets."""
    dec = served.pipeline.tokenizer.decode
    return {"tokens": [dec([t.id]) for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{dec([i]): lp for i, lp in (t.top or [])} for t in tokens],
            "text_offset": [base + o for o in offsets]}


def chat_logprobs(served: Served, tokens: list[Token]) -> dict:
    """The chat shape: one entry per token with its bytes and top alternatives."""
    dec = served.pipeline.tokenizer.decode

    def entry(i, lp):
        s = dec([i])
        return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}
    return {"content": [{**entry(t.id, t.logprob), "top_logprobs": [entry(i, lp) for i, lp in (t.top or [])]}
                        for t in tokens], "refusal": None}
