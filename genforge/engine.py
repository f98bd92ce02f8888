"""A KV-cached batching engine for GPT: many concurrent generations share every decode step.

    engine = Engine(GPTSlots(pipeline.model), tokenizer=pipeline.tokenizer)   # or engine_for(pipeline)
    seq = engine.submit(prompt_ids, SamplingParams(max_tokens=50, seed=0), emit=events.append)
    ...; engine.close()

Continuous batching: one worker thread owns the model. Every iteration it admits waiting
sequences into free cache slots (their prompts prefilled together: one pass of the model's cached path over the
prompts padded on the right to the longest, `GPTSlots.prefill`), then runs ONE decode step for
all active sequences together, each at its own position in its own KV-cache slot (rows at different
positions attend over the slots padded to the longest, with a mask), and samples every row in one call
(`sample_rows`), each row's noise drawn from that request's own `torch.Generator`. A sequence leaves
the batch as soon as it ends (length, cancel, wall-clock limit) and a waiting one takes its slot at the
next step.
So a seeded request gives the same tokens whether it ran alone or batched with others.

Past the context length, a sequence restarts from the newest half of its tokens, exactly as
`GPT.stream` does, so the server and `genforge sample` agree.

`GPTSlots` is the model side: slot storage for the keys and values, and a `SlotView` that gives the
model's own attention the cache protocol with a position per row (no block maths here). The
scheduler only needs GPTSlots' small interface, so tests drive it with a mock model.
The server (genforge/server/) is the only user, in a thread of its own or, by default, in a child
process that calls `step()` itself (server/engine_process.py); run its tests with `pytest tests/test_engine*.py`.
"""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data.tokenizers import StreamDecoder
from .models.gpt import GPT, MIN_TEMPERATURE, check_sampling, sample_next

# ----------------------------------------------------------------------------- model side


class SlotView:
    """The cache protocol of genforge/models/gpt.py over slots `rows` of a GPTSlots store, row b's new
    tokens taking positions start[b] .. start[b]+T-1: the model's attention writes and reads through it.
    Where each new key goes is worked out once per call and shared by every layer."""

    def __init__(self, slots: GPTSlots, rows: slice, start: list[int]):
        self.slots, self.rows, self.start = slots, rows, start

    def positions(self, T: int) -> torch.Tensor:
        s, dev, first = self.slots, self.slots.arange.device, self.start[0]
        self.shared = all(p == first for p in self.start)  # every row at one position
        L = (first if self.shared else max(self.start)) + T  # keys to attend over
        assert L <= s.block_size, f"position {L - 1} is past the context length {s.block_size}"
        self.L = L
        self.layers = s.views(self.rows)
        if self.shared:  # as KVCache: one slice per write, causal attention with no mask (the common case
            self.mask = None  # of one sequence, or of n samples of one prompt)
            return s.arange[first:L]  # (T,)
        pos = torch.tensor(self.start, device=dev)[:, None] + s.arange[None, :T]  # (B, T) absolute positions
        # key j is visible to query t of row b when j <= pos[b, t]; the keys past a row's length are -inf
        hidden = s.arange[None, None, :L] > pos[:, :, None]  # (B, T, L)
        self.mask = torch.zeros(hidden.shape, dtype=s.dtype, device=dev).masked_fill_(hidden, float("-inf"))[:, None]
        # row of (slot, head, position) in a layer's store viewed as (S * nh * T_max, hs)
        slot = torch.arange(self.rows.start, self.rows.stop, device=dev)[:, None, None]  # (B, 1, 1)
        head = torch.arange(s.n_head, device=dev)[None, :, None]  # (1, nh, 1)
        self.where = ((slot * s.n_head + head) * s.block_size + pos[:, None, :]).flatten()  # (B * nh * T,)
        return pos

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        s = self.slots
        keys, values = self.layers[layer]  # (B, nh, T_max, hs)
        if self.shared:
            keys[:, :, self.L - k.size(2):self.L] = k
            values[:, :, self.L - v.size(2):self.L] = v
        else:  # k (B, nh, T, hs): each row at its own position
            hs = k.size(-1)
            s.k_rows[layer].index_copy_(0, self.where, k.reshape(-1, hs).to(keys.dtype))
            s.v_rows[layer].index_copy_(0, self.where, v.reshape(-1, hs).to(values.dtype))
        return keys[:, :, :self.L], values[:, :, :self.L], self.mask

    def advance(self, T: int) -> None:  # the scheduler keeps each sequence's position
        pass


class GPTSlots:
    """A GPT plus per-slot KV caches: keys/values (n_layer, S, nh, T_max, hs), one slot per sequence.

    `forward(idx, start, rows)` runs tokens idx (B, T) of the sequences in cache slots `rows`
    (a contiguous slice, B = its length), row b's tokens taking positions start[b] .. start[b]+T-1
    (start: a list of ints from the engine, or a tensor),
    and returns the logits of each row's last token (B, V). The maths is the model's own cached path
    (`GPT.one_token`), the one `genforge sample` runs, for a new token per row and for a prompt alike.
    """

    def __init__(self, model: GPT):
        self.model = model.eval()
        c = model.config
        self.block_size, self.vocab_size = c.block_size, c.vocab_size
        self.n_head, self.hs = c.n_head, c.n_embd // c.n_head
        self.capacity = 0
        self.k = self.v = None
        self.decode = model.one_token()  # the model is frozen while it is served

    def reserve(self, slots: int):
        """Grow the caches to at least `slots` slots, keeping what they hold."""
        if slots <= self.capacity:
            return
        p = next(self.model.parameters())
        c = self.model.config
        new = max(slots, 2 * self.capacity)
        shape = (c.n_layer, new, self.n_head, self.block_size, self.hs)
        self.dtype = p.dtype
        k, v = torch.zeros(shape, dtype=p.dtype, device=p.device), torch.zeros(shape, dtype=p.dtype, device=p.device)
        if self.capacity:
            k[:, :self.capacity], v[:, :self.capacity] = self.k, self.v
        self.k, self.v, self.capacity = k, v, new
        self.k_layers, self.v_layers = [k[i] for i in range(c.n_layer)], [v[i] for i in range(c.n_layer)]
        self.k_rows = [t.view(-1, self.hs) for t in self.k_layers]  # (S * nh * T_max, hs) per layer
        self.v_rows = [t.view(-1, self.hs) for t in self.v_layers]
        self.arange = torch.arange(self.block_size, device=p.device)
        self._views = {}

    def views(self, rows: slice) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's (keys, values) of slots `rows`, (B, nh, T_max, hs) views made once per batch shape:
        at batch 1 slicing them anew each step costs ~10% of a small model's decode step."""
        key = (rows.start, rows.stop)
        if key not in self._views:
            if len(self._views) >= 64:  # prefills of many batch shapes: start again rather than grow
                self._views.clear()
            self._views[key] = [(k[rows], v[rows]) for k, v in zip(self.k_layers, self.v_layers)]
        return self._views[key]

    def move(self, src: int, dst: int, length: int):
        """Copy slot src's first `length` positions into slot dst (to keep active slots contiguous)."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]

    def forward(self, idx: torch.Tensor, start: torch.Tensor | list[int], rows: slice) -> torch.Tensor:
        if not torch.is_inference_mode_enabled():  # the engine's thread runs in it: entering costs ~5% of a step
            with torch.inference_mode():
                return self.forward(idx, start, rows)
        dev = self.k.device
        view = SlotView(self, rows, start.tolist() if torch.is_tensor(start) else list(start))
        return self.decode(idx.to(dev), view)  # (B, V)

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], rows: slice) -> torch.Tensor:
        """Fill slots `rows` from position 0 with prompts of any lengths in ONE pass; return each prompt's
        next-token logits (B, V). The prompts are padded on the right to the longest: causal attention keeps the
        padding out of every real token's view (so each row's logits are its own prompt's), and the padding's keys
        lie past the row's position, where the decode step's mask hides them until real tokens overwrite them."""
        dev = self.k.device
        lengths = torch.tensor([len(p) for p in prompts], device=dev)  # (B,)
        idx = torch.zeros(len(prompts), int(lengths.max()), dtype=torch.long)  # (B, T) padded with token 0
        for b, p in enumerate(prompts):
            idx[b, :len(p)] = torch.tensor(p)
        return self.decode(idx.to(dev), SlotView(self, rows, [0]), last=lengths - 1)  # each prompt's last real token

# ----------------------------------------------------------------------------- requests

@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None  # None = a fresh random seed
    logprobs: int | None = None  # report the chosen token's log-probability and this many alternatives
    timeout: float | None = None  # wall-clock limit in seconds from submission

    def validate(self):
        check_sampling(self.max_tokens, self.temperature, self.top_k, self.top_p)


@dataclass
class Token:
    id: int
    text: str  # the new text this token completes ("" while a UTF-8 character is incomplete)
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # (token id, log-probability), most likely first


@dataclass
class Done:
    reason: str  # length | cancelled | timeout | queue_timeout | error
    message: str = ""


class QueueFull(RuntimeError):
    """The engine's waiting queue is full; retry later."""


class Sequence:
    """One generation: prompt ids in, Token events then one Done event out through `emit`."""

    def __init__(self, prompt: list[int], params: SamplingParams, emit: Callable, tokenizer):
        self.prompt, self.params, self.emit = list(prompt), params, emit
        self.tokens: list[int] = []  # generated so far
        self.context: list[int] = []  # the tokens the cache holds plus the newest sampled one
        self.gen = torch.Generator()
        self.gen.manual_seed(params.seed % 2**64 if params.seed is not None else torch.seed())
        self.decoder = StreamDecoder(tokenizer) if tokenizer is not None else None
        self.submitted = time.monotonic()
        self.cancelled = False
        self.done = False  # set once Done has been emitted
        self.pos = 0  # positions filled in this sequence's cache slot

    def cancel(self):
        """Stop generating (thread-safe); the engine drops the sequence at its next step."""
        self.cancelled = True


def sample_rows(logits: torch.Tensor, params: list[SamplingParams], gens: list[torch.Generator]) -> list[int]:
    """logits (B, V) -> one token per row, row b drawn exactly as `sample_next(logits[b:b+1], ...)` draws it
    with row b's settings and generator (the same token, bit for bit: tests/test_engine_batching.py):
    temperature, top-k and top-p as per-row tensors, one sort / softmax / argmax for the whole batch, and only
    the noise drawn row by row, each from its own generator. Per-row calls of sample_next cost ~3x as much at
    16 rows (~10% of a decode step); one row takes sample_next itself (fewer ops)."""
    B, V = logits.shape
    if B == 1:
        p = params[0]
        return sample_next(logits, p.temperature, p.top_k, p.top_p, gens[0]).tolist()
    greedy = [p.temperature < MIN_TEMPERATURE for p in params]
    if all(greedy):
        return logits.argmax(dim=-1).tolist()
    x = logits.float() / torch.tensor([1.0 if g else p.temperature for g, p in zip(greedy, params)])[:, None]
    top_k = [p.top_k if p.top_k is not None and p.top_k < V else V for p in params]
    if min(top_k) < V:  # the k-th largest logit of each row (k = V: the smallest, nothing masked)
        kth = x.sort(dim=-1, descending=True).values.gather(1, torch.tensor(top_k)[:, None] - 1)  # (B, 1)
        x = x.masked_fill(x < kth, float("-inf"))
    top_p = [p.top_p if p.top_p is not None and p.top_p < 1.0 else float("inf") for p in params]
    if min(top_p) < 1.0:
        sorted_x, order = torch.sort(x, descending=True, dim=-1)
        probs = sorted_x.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= torch.tensor(top_p)[:, None]  # the smallest set reaching top_p
        drop[:, 0] = False
        x = torch.full_like(x, float("-inf")).scatter(-1, order, sorted_x.masked_fill(drop, float("-inf")))
    probs = x.softmax(dim=-1)
    noise = torch.ones_like(probs)  # greedy rows draw none, as sample_next does
    for b in range(B):
        if not greedy[b]:
            noise[b].exponential_(generator=gens[b])
    tokens = (probs / noise).argmax(dim=-1)  # the exponential race of sample_next
    if any(greedy):
        tokens = torch.where(torch.tensor(greedy), logits.argmax(dim=-1), tokens)
    return tokens.tolist()

# ----------------------------------------------------------------------------- scheduler


class Engine:
    def __init__(self, slots, tokenizer=None, max_batch: int = 32, max_queue: int = 256,
                 queue_timeout: float = 30.0, thread: bool = True):
        """thread=False: no worker thread; the owner calls `step()` (the server's engine process does, in its
        main thread: genforge/server/engine_process.py)."""
        assert max_batch > 0 and max_queue >= 0
        self.slots, self.tokenizer = slots, tokenizer
        self.vocab_size = slots.vocab_size
        self.max_batch, self.max_queue, self.queue_timeout = max_batch, max_queue, queue_timeout
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.active: list[Sequence] = []  # active[i] lives in cache slot i
        self.tokens_generated = 0
        self.steps = 0  # decode steps run (each over the whole batch)
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="genforge-engine", daemon=True) if thread else None
        if thread:
            self._thread.start()

    # ---- public, any thread

    def submit(self, prompt: list[int], params: SamplingParams, emit: Callable) -> Sequence:
        params.validate()
        if not prompt:
            raise ValueError("prompt must hold at least one token")
        if max(prompt) >= self.slots.vocab_size or min(prompt) < 0:
            raise ValueError(f"prompt token ids must be in [0, {self.slots.vocab_size})")
        seq = Sequence(prompt, params, emit, self.tokenizer)
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting")
            self.waiting.append(seq)
            self._cv.notify()
        return seq

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def close(self):
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is None:
            self._shut()
        else:
            self._thread.join(timeout=10)

    # ---- worker thread

    @torch.inference_mode()  # entered once for the thread, not once per step
    def _loop(self):
        while True:
            with self._cv:
                while not self._closed and not self.waiting and not self.active:
                    self._cv.wait()
                if self._closed:
                    break
            self.step()
        self._shut()

    def step(self):
        """One iteration: admit waiting sequences into free slots (prefilled together), then one decode step."""
        with self._cv:
            admitted = self._take_waiting()
        try:
            self._prefill(admitted)
            if self.active:
                self._decode()
        except Exception as e:  # never leave a client hanging: end everything in flight
            for seq in self.active + admitted:
                self._finish(seq, Done("error", f"{type(e).__name__}: {e}"))
            self.active = []

    def _shut(self):
        for seq in self.active + list(self.waiting):
            self._finish(seq, Done("cancelled", "the server is shutting down"))
        self.active, self.waiting = [], collections.deque()

    def _take_waiting(self) -> list[Sequence]:
        """Pop the sequences that fit in free slots; expire those that waited too long."""
        now = time.monotonic()
        taken = []
        while self.waiting and len(self.active) + len(taken) < self.max_batch:
            taken.append(self.waiting.popleft())
        for seq in list(self.waiting):
            if now - seq.submitted > self.queue_timeout:
                self.waiting.remove(seq)
                self._finish(seq, Done("queue_timeout", f"waited more than {self.queue_timeout:g}s for a slot"))
        return taken

    def _prefill(self, admitted: list[Sequence]):
        """Give the admitted sequences the next slots and their first tokens: one forward for all their prompts
        where the model side has `prefill` (GPTSlots), else one forward per prompt."""
        now, seqs = time.monotonic(), []
        for seq in admitted:
            if self._ended(seq):
                continue
            if now - seq.submitted > self.queue_timeout:
                self._finish(seq, Done("queue_timeout", f"waited more than {self.queue_timeout:g}s"))
                continue
            seq.context = seq.prompt[-self.slots.block_size:]
            seqs.append(seq)
        if not seqs:
            return
        base = len(self.active)
        self.slots.reserve(base + len(seqs))
        self.active += seqs
        if len(seqs) > 1 and hasattr(self.slots, "prefill"):
            logits = self.slots.prefill([s.context for s in seqs], slice(base, base + len(seqs)))  # (B, V)
            for seq in seqs:
                seq.pos = len(seq.context)
        else:
            logits = torch.cat([self._encode(seq, base + i) for i, seq in enumerate(seqs)])  # (B, V)
        self._sample(seqs, logits)

    def _encode(self, seq: Sequence, slot: int) -> torch.Tensor:
        """(Re)fill slot from seq.context; return the next-token logits (1, V)."""
        idx = torch.tensor([seq.context])
        logits = self.slots.forward(idx, [0], slice(slot, slot + 1))
        seq.pos = len(seq.context)
        return logits

    def _decode(self):
        block = self.slots.block_size
        for i, seq in enumerate(self.active):  # a full cache restarts from the newest half of its context
            if seq.pos >= block and not self._ended(seq):
                seq.context = seq.context[-max(1, block // 2):]
                self._sample([seq], self._encode(seq, i))
        self._compact()
        if not self.active:
            return
        B = len(self.active)
        idx = torch.from_numpy(np.array([[s.context[-1]] for s in self.active]))  # (B, 1); 3x faster than torch.tensor
        logits = self.slots.forward(idx, [s.pos for s in self.active], slice(0, B))  # (B, V)
        self.steps += 1
        for seq in self.active:
            seq.pos += 1
        self._sample(self.active, logits)
        self._compact()

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor):
        """logits (B, V) -> one token for each of seqs, emitted; ends the sequences that are done."""
        live = [i for i, seq in enumerate(seqs) if not self._ended(seq)]
        if len(live) < len(seqs):
            seqs, logits = [seqs[i] for i in live], logits[live]
        if not seqs:
            return
        tokens = sample_rows(logits, [s.params for s in seqs], [s.gen for s in seqs])
        for i, (seq, tok) in enumerate(zip(seqs, tokens)):
            p = seq.params
            lp = top = None
            if p.logprobs is not None:
                logp = F.log_softmax(logits[i].float(), dim=-1)
                lp = float(logp[tok])
                if p.logprobs > 0:
                    vals, ids = torch.topk(logp, min(p.logprobs, logp.numel()))
                    top = list(zip(ids.tolist(), vals.tolist()))
            seq.tokens.append(tok)
            seq.context.append(tok)
            if len(seq.context) > 2 * self.slots.block_size:
                seq.context = seq.context[-self.slots.block_size:]
            self.tokens_generated += 1
            text = seq.decoder.push([tok]) if seq.decoder is not None else ""
            seq.emit(Token(tok, text, lp, top))
            if len(seq.tokens) >= p.max_tokens:
                self._finish(seq, Done("length"))

    def _ended(self, seq: Sequence) -> bool:
        """True (after emitting Done) when seq was cancelled or ran past its wall-clock limit."""
        if seq.done:
            return True
        if seq.cancelled:
            self._finish(seq, Done("cancelled"))
        elif seq.params.timeout is not None and time.monotonic() - seq.submitted > seq.params.timeout:
            self._finish(seq, Done("timeout", f"generation ran past the {seq.params.timeout:g}s limit"))
        return seq.done

    def _finish(self, seq: Sequence, done: Done):
        if seq.done:
            return
        seq.done = True
        try:
            seq.emit(done)
        except Exception:  # a broken receiver must not stop the engine
            pass

    def _compact(self):
        """Drop ended sequences, moving the last active slot into each hole."""
        i = 0
        while i < len(self.active):
            seq = self.active[i]
            if not self._ended(seq):
                i += 1
                continue
            last = self.active.pop()
            if last is not seq:
                self.slots.move(len(self.active), i, last.pos)
                self.active[i] = last


def engine_for(pipeline, **kw) -> Engine:
    """An Engine over a GPTPipeline (its model and tokenizer)."""
    return Engine(GPTSlots(pipeline.model), tokenizer=pipeline.tokenizer, **kw)


__all__ = ["Engine", "GPTSlots", "SamplingParams", "Token", "Done", "QueueFull", "Sequence", "engine_for"]
