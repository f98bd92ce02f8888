"""The batching engine: batched slot forward == the model's forward, batching does not change seeded
output, and the scheduler's queue, cancel, timeouts and error handling (with a mock model)."""
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from genforge.data.tokenizers import CharTokenizer
from genforge.engine import Done, Engine, GPTSlots, QueueFull, SamplingParams, Token
from genforge.models.gpt import GPT, GPTConfig

VOCAB = "abcdefghijklmnopqrstuvwxyz ,.\n"


def tiny_gpt(pos="rope", block_size=32, seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=len(VOCAB), block_size=block_size, n_layer=2, n_head=2, n_embd=32, pos=pos)).eval()


class Collector:
    """Gathers one sequence's events; `wait()` returns (token ids, Done)."""

    def __init__(self):
        self.events, self.done = [], threading.Event()

    def __call__(self, ev):
        self.events.append(ev)
        if isinstance(ev, Done):
            self.done.set()

    def wait(self, timeout=30):
        assert self.done.wait(timeout), "the engine did not finish the sequence"
        return [e.id for e in self.events if isinstance(e, Token)], self.events[-1]


def run_all(engine, prompts, params_list):
    cols = [Collector() for _ in prompts]
    for p, params, col in zip(prompts, params_list, cols):
        engine.submit(p, params, col)
    return [c.wait() for c in cols]


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_slot_forward_matches_model_forward(pos):
    m = tiny_gpt(pos)
    slots = GPTSlots(m)
    slots.reserve(2)
    a, b = torch.randint(0, len(VOCAB), (1, 20)), torch.randint(0, len(VOCAB), (1, 9))
    ref_a, ref_b = m(a)[0][0], m(b)[0][0]  # (T, V)
    la = slots.forward(a[:, :15], torch.tensor([0]), slice(0, 1))  # prefill slot 0
    lb = slots.forward(b[:, :4], torch.tensor([0]), slice(1, 2))  # prefill slot 1
    assert torch.allclose(la[0], ref_a[14], atol=1e-5) and torch.allclose(lb[0], ref_b[3], atol=1e-5)
    for t in range(4):  # batched decode, each row at its own position
        logits = slots.forward(torch.tensor([[a[0, 15 + t]], [b[0, 4 + t]]]), torch.tensor([15 + t, 4 + t]), slice(0, 2))
        assert torch.allclose(logits[0], ref_a[15 + t], atol=1e-5)
        assert torch.allclose(logits[1], ref_b[4 + t], atol=1e-5)
    slots.move(1, 0, 8)  # slot 1's cache moved to slot 0 continues correctly
    logits = slots.forward(torch.tensor([[b[0, 8]]]), torch.tensor([8]), slice(0, 1))
    assert torch.allclose(logits[0], ref_b[8], atol=1e-5)


def test_engine_equals_gpt_stream_also_past_the_context_and_when_batched():
    m = tiny_gpt(block_size=16)
    engine = Engine(GPTSlots(m), tokenizer=CharTokenizer(VOCAB), max_batch=8)
    try:
        prompt = [1, 2, 3, 4, 5]
        g = torch.Generator().manual_seed(7)
        ref = [int(t) for t in m.stream(torch.tensor([prompt]), 40, temperature=1.0, generator=g)]
        greedy = [int(t) for t in m.stream(torch.tensor([prompt]), 40, temperature=0.0)]
        alone, done = run_all(engine, [prompt], [SamplingParams(max_tokens=40, seed=7)])[0]
        assert alone == ref and done.reason == "length"  # 40 tokens > block_size 16: the window slides
        others = [[9, 8], [3] * 14, [0], [5, 6, 7, 8, 9, 10]]
        results = run_all(engine, [prompt, prompt] + others,
                          [SamplingParams(max_tokens=40, seed=7), SamplingParams(max_tokens=40, temperature=0.0)]
                          + [SamplingParams(max_tokens=5 + 7 * i, seed=i) for i in range(len(others))])
        assert results[0][0] == ref, "a seeded request changed when batched with others"
        assert results[1][0] == greedy
        assert [len(r[0]) for r in results[2:]] == [5, 12, 19, 26]
        assert engine.steps < 40 + 40 + 5 + 12 + 19 + 26, "sequences were not decoded together"
    finally:
        engine.close()


def test_logprobs_are_the_models():
    m = tiny_gpt()
    engine = Engine(GPTSlots(m))
    try:
        col = Collector()
        engine.submit([1, 2, 3], SamplingParams(max_tokens=2, temperature=0.0, logprobs=3), col)
        ids, _ = col.wait()
        with torch.no_grad():
            ref = F.log_softmax(m(torch.tensor([[1, 2, 3]]))[0][0, -1], dim=-1)
        first = col.events[0]
        assert first.id == int(ref.argmax()) and first.logprob == pytest.approx(float(ref.max()), abs=1e-5)
        assert [i for i, _ in first.top] == ref.topk(3).indices.tolist()
    finally:
        engine.close()


class MockSlots:
    """A fake model: each slot keeps the running sum of its tokens; the next token is sum % V.
    `delay` makes each forward slow; `fail_at` makes one forward raise."""

    block_size, vocab_size = 1000, 17

    def __init__(self, delay=0.0, fail_at=None):
        self.state = torch.zeros(0, dtype=torch.long)
        self.delay, self.fail_at, self.calls = delay, fail_at, 0

    def reserve(self, slots):
        if slots > len(self.state):
            self.state = torch.cat([self.state, torch.zeros(slots - len(self.state), dtype=torch.long)])

    def move(self, src, dst, length):
        self.state[dst] = self.state[src]

    def forward(self, idx, start, rows):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        s = self.state[rows]
        s = torch.where(torch.as_tensor(start) == 0, idx.sum(1), s + idx[:, -1])  # start: a list of positions
        self.state[rows] = s
        return F.one_hot(s % self.vocab_size, self.vocab_size).float() * 10


def expected(prompt, n, V=17):
    s, out = sum(prompt), []
    for _ in range(n):
        out.append(s % V)
        s += out[-1]
    return out


def test_scheduler_keeps_slots_straight_as_sequences_come_and_go():
    engine = Engine(MockSlots(), max_batch=3)
    try:
        prompts = [[i, i + 1] for i in range(10)]
        lengths = [3 + (i * 5) % 11 for i in range(10)]
        results = run_all(engine, prompts, [SamplingParams(max_tokens=n, temperature=0.0) for n in lengths])
        for p, n, (ids, done) in zip(prompts, lengths, results):
            assert ids == expected(p, n) and done.reason == "length"
    finally:
        engine.close()


def test_cancel_queue_full_queue_timeout_wall_clock_and_errors():
    engine = Engine(MockSlots(delay=0.01), max_batch=1, max_queue=1, queue_timeout=0.2)
    try:
        long = Collector()
        seq = engine.submit([1], SamplingParams(max_tokens=10_000, temperature=0.0), long)
        while not long.events:
            time.sleep(0.005)
        waiting = Collector()
        engine.submit([2], SamplingParams(max_tokens=2), waiting)  # no free slot: waits
        with pytest.raises(QueueFull):
            engine.submit([3], SamplingParams(max_tokens=2), Collector())
        assert waiting.wait()[1].reason == "queue_timeout"
        seq.cancel()
        ids, done = long.wait()
        assert done.reason == "cancelled" and 0 < len(ids) < 10_000
        timed = Collector()
        engine.submit([1], SamplingParams(max_tokens=10_000, timeout=0.1), timed)
        ids, done = timed.wait()
        assert done.reason == "timeout" and len(ids) < 10_000
    finally:
        engine.close()
    broken = Engine(MockSlots(fail_at=3))
    try:
        col = Collector()
        broken.submit([1], SamplingParams(max_tokens=50), col)
        assert col.wait()[1].reason == "error" and "boom" in col.events[-1].message
        ids, done = run_all(broken, [[4]], [SamplingParams(max_tokens=3, temperature=0.0)])[0]
        assert ids == expected([4], 3), "the engine did not recover after an error"
    finally:
        broken.close()


def test_tiny_temperature_is_greedy_not_nan():
    m = tiny_gpt()
    engine = Engine(GPTSlots(m))
    try:
        tiny = run_all(engine, [[1, 2]], [SamplingParams(max_tokens=5, temperature=5e-324, seed=0)])[0]
        greedy = run_all(engine, [[1, 2]], [SamplingParams(max_tokens=5, temperature=0.0)])[0]
        assert tiny[1].reason == "length" and tiny[0] == greedy[0]
    finally:
        engine.close()


def test_bad_requests_are_refused_at_submit():
    engine = Engine(MockSlots())
    try:
        with pytest.raises(ValueError, match="temperature"):
            engine.submit([1], SamplingParams(temperature=-1), Collector())
        with pytest.raises(ValueError, match="token ids"):
            engine.submit([99], SamplingParams(), Collector())
        with pytest.raises(ValueError, match="at least one token"):
            engine.submit([], SamplingParams(), Collector())
    finally:
        engine.close()
