"""The engine's batched decode step: one sampler call for every row draws what sample_next draws row by
row, the padded attention over per-row positions equals each row's own attention, seeded requests with
mixed settings decoded together equal `GPT.stream`, prompts prefilled together equal each alone, and the
server's chunk pacing counts live streams and is not woken by the engine once per chunk."""
import asyncio
import threading
import time
import types

import torch
import torch.nn.functional as F

from genforge.engine import Done, Engine, GPTSlots, SamplingParams, Token, sample_rows
from genforge.models.gpt import matmul_attention, sample_next
from genforge.server.generation import Generation
from tests.test_engine import VOCAB, Collector, run_all, tiny_gpt


def mixed_params(n: int, V: int, seed: int) -> list[SamplingParams]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n):
        r = torch.rand(4, generator=g).tolist()
        out.append(SamplingParams(temperature=0.0 if r[0] < 0.2 else 0.3 + 1.5 * r[1],
                                  top_k=None if r[2] < 0.4 else 1 + int(r[2] * V),
                                  top_p=None if r[3] < 0.4 else r[3], seed=seed * 100 + b))
    return out


def test_sample_rows_draws_what_sample_next_draws_row_by_row(one_thread):
    torch.manual_seed(0)
    for trial in range(24):
        B, V = 2 + trial % 9, 5 + 29 * trial
        logits = torch.randn(B, V) * 3
        logits[0, :3] = logits[0, 3]  # ties at the top of a row
        params = mixed_params(B, V, trial)
        ours = [torch.Generator().manual_seed(p.seed) for p in params]
        refs = [torch.Generator().manual_seed(p.seed) for p in params]
        for _ in range(3):  # the generators also advance alike
            got = sample_rows(logits, params, ours)
            want = [int(sample_next(logits[b:b + 1], p.temperature, p.top_k, p.top_p, refs[b])[0])
                    for b, p in enumerate(params)]
            assert got == want, f"trial {trial}: {got} != {want}"
    greedy = [SamplingParams(temperature=0.0)] * 3
    logits = torch.randn(3, 11)
    assert sample_rows(logits, greedy, [torch.Generator()] * 3) == logits.argmax(-1).tolist()


def test_padded_attention_equals_each_rows_own_attention():
    torch.manual_seed(1)
    B, nh, hs, L = 5, 3, 8, 13
    lengths = [1, 4, 13, 7, 10]
    q, k, v = torch.randn(B, nh, 1, hs), torch.randn(B, nh, L, hs), torch.randn(B, nh, L, hs)
    hidden = torch.arange(L)[None, :] >= torch.tensor(lengths)[:, None]  # keys past each row's length
    bias = torch.zeros(B, 1, 1, L).masked_fill(hidden[:, None, None], float("-inf"))
    k_noisy = k.masked_fill(hidden[:, None, :, None], 1e4)  # padding must not leak into any row
    y = matmul_attention(q, k_noisy, v, bias)  # (B, nh, 1, hs)
    for b, n in enumerate(lengths):
        ref = F.scaled_dot_product_attention(q[b:b + 1], k[b:b + 1, :, :n], v[b:b + 1, :, :n])
        assert (y[b:b + 1] - ref).abs().max() < 1e-6


def test_seeded_requests_with_mixed_settings_batched_equal_gpt_stream(one_thread):
    m = tiny_gpt(block_size=12)
    prompts = [[1, 2, 3], [4] * 9, [5, 6], [7, 8, 9, 10, 11], [12], [2, 2]]
    params = mixed_params(len(prompts), len(VOCAB), 7)
    for p in params:
        p.max_tokens = 16  # past the context of 12: each window restarts inside the batch
    refs = []
    for prompt, p in zip(prompts, params):
        g = torch.Generator().manual_seed(p.seed)
        refs.append([int(t) for t in m.stream(torch.tensor([prompt]), p.max_tokens, temperature=p.temperature,
                                              top_k=p.top_k, top_p=p.top_p, generator=g)])
    engine = Engine(GPTSlots(m), max_batch=8)
    try:
        results = run_all(engine, prompts, params)
    finally:
        engine.close()
    assert [ids for ids, _ in results] == refs
    assert engine.steps < sum(p.max_tokens for p in params) // 2, "the requests were not decoded together"


def test_streams_are_counted_while_they_are_sent_and_not_after():
    async def run():
        counter = types.SimpleNamespace(labels=lambda *names: counter, inc=lambda: None)
        gen = Generation(types.SimpleNamespace(name="m"), [[1]], 1, SamplingParams(timeout=5.0), [],
                         types.SimpleNamespace(disconnects=counter), "completions")
        before = Generation.streaming
        stream = gen.stream([{"first": 1}], lambda c, text, tokens: None)
        first = await stream.__anext__()
        inside = Generation.streaming
        await stream.aclose()  # the client left
        return before, inside, Generation.streaming, first
    before, inside, after, first = asyncio.run(run())
    assert first.startswith("data: {") and inside == before + 1 and after == before


def test_batched_prefill_of_prompts_of_different_lengths_equals_each_alone(one_thread):
    m = tiny_gpt(block_size=16)
    slots = GPTSlots(m)
    slots.reserve(3)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [5], [8, 9, 7, 9]]
    logits = slots.prefill(prompts, slice(0, 3))  # one padded forward
    for b, p in enumerate(prompts):
        assert torch.allclose(logits[b], m(torch.tensor([p]))[0][0, -1], atol=1e-5)
    nxt = torch.tensor([[2], [0], [3]])  # the padding's keys stay hidden from the next decode step
    step = slots.forward(nxt, torch.tensor([len(p) for p in prompts]), slice(0, 3))
    for b, p in enumerate(prompts):
        assert torch.allclose(step[b], m(torch.tensor([p + nxt[b].tolist()]))[0][0, -1], atol=1e-5)

    params = mixed_params(len(prompts), len(VOCAB), 3)
    for p in params:
        p.max_tokens = 20  # past the context of 16
    refs = [[int(t) for t in m.stream(torch.tensor([prompt]), p.max_tokens, temperature=p.temperature, top_k=p.top_k,
                                      top_p=p.top_p, generator=torch.Generator().manual_seed(p.seed))]
            for prompt, p in zip(prompts, params)]
    engine = Engine(GPTSlots(m), max_batch=8)
    sizes = []
    prefill = engine.slots.prefill
    engine.slots.prefill = lambda ps, rows: sizes.append(len(ps)) or prefill(ps, rows)
    try:
        with engine._cv:  # the engine cannot admit any of them before all three wait
            cols = [Collector() for _ in prompts]
            for prompt, p, col in zip(prompts, params, cols):
                engine.submit(prompt, p, col)
        results = [c.wait()[0] for c in cols]
    finally:
        engine.close()
    assert sizes == [3], f"the prompts were not prefilled together: {sizes}"
    assert results == refs, "a seeded request changed when its prompt was prefilled with others"


def test_the_engine_wakes_a_stream_only_while_it_waits_not_once_per_chunk():
    """Tokens that arrive while the stream waits out its interval are picked up when the pause ends: no
    cross-thread wake-up (call_soon_threadsafe) per chunk, and every token still arrives, in order."""
    async def run():
        counter = types.SimpleNamespace(labels=lambda *names: counter, inc=lambda *a: None, observe=lambda *a: None)
        emits = []
        engine = types.SimpleNamespace(submit=lambda prompt, params, emit: emits.append(emit) or
                                       types.SimpleNamespace(cancel=lambda: None))
        gen = Generation(types.SimpleNamespace(name="m", engine=engine), [[1]], 1,
                         SamplingParams(max_tokens=40, timeout=30.0), [], types.SimpleNamespace(
                             prompt_tokens=counter, ttft=counter, disconnects=counter), "completions", interval=0.03)
        wakes = []
        wake = gen.wake.set
        gen.wake.set = lambda: wakes.append(1) or wake()
        gen.start()

        def produce():  # the engine's thread: a token every 3 ms, far faster than the chunks leave
            for i in range(40):
                emits[0](Token(i, "abcdefghij"[i % 10]))
                time.sleep(0.003)
            emits[0](Done("length"))
        thread = threading.Thread(target=produce)
        thread.start()
        chunks = [text async for _, text, _ in gen.events()]
        thread.join()
        return chunks, len(wakes)
    chunks, wakes = asyncio.run(run())
    assert "".join(chunks) == "abcdefghij" * 4
    assert len(chunks) >= 3 and wakes <= 2, f"{wakes} wake-ups for {len(chunks)} chunks"
