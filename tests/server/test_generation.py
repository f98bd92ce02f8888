"""genforge.server.generation: how engine events become stream chunks."""
import asyncio
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
        gen.queue = asyncio.Queue()  # everything already produced before the sender looks (a busy server)
        for ch in "hello":
            gen.queue.put_nowait((0, Token(ord(ch), ch)))
        gen.queue.put_nowait((0, Done("length")))
        return [(text, len(tokens)) async for _, text, tokens in gen.events()], gen.choices[0]
    chunks, choice = asyncio.run(run())
    assert chunks == [("h", 1), ("ello", 4)]
    assert choice.text == "hello" and choice.finish_reason == "length"
