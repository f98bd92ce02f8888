"""genforge.server.generation: how engine events become stream chunks."""
import asyncio
import threading
import time
import types

from genforge.engine import Done, SamplingParams, Token
from genforge.server.generation import Generation


class _Metric:
    def labels(self, *names):
        return self

    def observe(self, value):
        pass


def test_first_token_goes_out_alone_then_waiting_tokens_merge():
    async def run():
        gen = Generation(types.SimpleNamespace(name="m"), [[1, 2]], 1, SamplingParams(timeout=5.0), [],
                         types.SimpleNamespace(ttft=_Metric()), "completions")
        for ch in "hello":  # everything already produced before the sender looks (a busy server)
            gen.pending.append((0, Token(ord(ch), ch)))
        gen.pending.append((0, Done("length")))
        return [(text, len(tokens)) async for _, text, tokens in gen.events()], gen.choices[0]
    chunks, choice = asyncio.run(run())
    assert chunks == [("h", 1), ("ello", 4)]
    assert choice.text == "hello" and choice.finish_reason == "length"


def test_stream_interval_merges_tokens_after_the_first_and_the_end_cuts_it_short():
    """Tokens made while the sender waits out the interval go out together; a finished sequence does
    not wait for the interval to pass."""
    async def run():
        gen = Generation(types.SimpleNamespace(name="m"), [[1, 2]], 1, SamplingParams(timeout=5.0), [],
                         types.SimpleNamespace(ttft=_Metric()), "completions", interval=0.2)
        loop = asyncio.get_running_loop()

        def produce():  # the engine's side: one token every 10 ms, then the end
            for ch in "abcdef":
                gen.pending.append((0, Token(ord(ch), ch)))
                loop.call_soon_threadsafe(gen.wake.set)
                time.sleep(0.01)
            gen.pending.append((0, Done("length")))
            loop.call_soon_threadsafe(gen.ended.set)
            loop.call_soon_threadsafe(gen.wake.set)
        t0 = time.perf_counter()
        worker = threading.Thread(target=produce)
        worker.start()
        chunks = [text async for _, text, _ in gen.events()]
        worker.join()
        return chunks, time.perf_counter() - t0
    chunks, seconds = asyncio.run(run())
    assert chunks[0] == "a" and "".join(chunks) == "abcdef"
    assert len(chunks) <= 3  # not one chunk per token
    assert seconds < 0.19  # the end arrived at ~60 ms: the 200 ms interval was cut short
