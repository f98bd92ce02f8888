"""GPT: a decoder-only transformer language model, and the transformer core every genforge family shares.

Reads top to bottom in the order the network runs: norms, rotary and attention helpers, the caches,
the attention, MLP and block modules, the config, the model, then sampling. Article 001's GPT and
GPT-2 are presets of the same `GPTConfig` (see genforge/families/gpt.py); only torch is imported here.

One attention serves every use: training (no cache), sampling (`KVCache`, every row at one position),
the server's batched decoding (genforge/engine.py's slot cache, a position per row) and encoders
(`Block(cfg, causal=False)` with a padding mask, genforge/models/classifier.py). A cache owns its keys
and values; the attention only asks it where the new tokens sit and what they may see. Sampling
(`GPT.stream`) takes a logits processor, so constrained vocabularies and guidance reuse one decode loop.

Axis legend: B batch, T time (new tokens), L keys attended over, C channels (n_embd), nh heads,
hs head size, V vocab.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import check_sampling  # noqa: F401 (the samplers' settings check; imported from here by families)

# ----------------------------------------------------------------------------- helpers


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight.to(x.dtype), self.eps)


class Dropout(nn.Module):
    """Inverted dropout. On CPU the keep mask is drawn as random bytes, so `p` is rounded to a
    multiple of 1/256 (0.1 acts as 0.1016): torch's Bernoulli sampler runs on one thread and costs per
    element, so the bytes come eight to a 64-bit draw; byte masks made the `quality` preset's step at
    two threads ~5% faster (benchmarks/gpt_step.py).
    Other devices use F.dropout. Both draw from torch's global generator (seeded runs repeat)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.cut = max(1, round(p * 256)) if p > 0 else 0  # bytes below `cut` are dropped

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()  # 8 random bytes per 64-bit draw: the sampler's cost is per element
        words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-2**63, 2**63 - 1)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.cut
        return (x * keep).mul_(256 / (256 - self.cut))


def make_norm(kind: str, dim: int, eps: float, bias: bool) -> nn.Module:
    return RMSNorm(dim, eps) if kind == "rmsnorm" else nn.LayerNorm(dim, eps=eps, bias=bias)


def rotary_tables(head_size: int, length: int, base: float, grid: tuple[int, int] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (length, hs/2) for rotary position embeddings: position t turns channel pair i by
    t * base^(-2i/hs). With a `grid` (rows, cols), the last rows * cols positions are an image in raster order
    from position s = length - rows * cols: cell (r, c) turns the even pairs by (s + r) * freq and the odd
    pairs by (s + c) * freq, so two cells see their row and column offsets (2-D RoPE) and every cell sits
    after the earlier 1-D positions on both axes."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
    pos = torch.arange(length, dtype=torch.float32)[:, None].repeat(1, head_size // 2)  # (T, hs/2): per pair
    if grid is not None:
        rows, cols = grid
        start, cell = length - rows * cols, torch.arange(rows * cols, dtype=torch.float32)  # (rows*cols,)
        pos[start:, 0::2] = start + (cell // cols)[:, None]
        pos[start:, 1::2] = start + (cell % cols)[:, None]
    angles = pos * inv_freq  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (first half, second half) of x (B, nh, T, hs) by position angles."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def rotary_matrix(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The (hs, hs) matrix R with x @ R == apply_rotary(x, cos, sin) for one position."""
    c, s = torch.diag(cos), torch.diag(sin)  # (hs/2, hs/2)
    return torch.cat((torch.cat((c, s), 1), torch.cat((-s, c), 1)), 0)


def use_matmul_attention(q: torch.Tensor) -> bool:
    """Whether causal attention over q (B, nh, T, hs) is faster as explicit matmuls than through SDPA:
    on CPU in bf16 up to context 512, SDPA's fused kernel is 1.15-7x slower (benchmarks/gpt_attention.py)."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.size(-2) <= 512


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Softmax attention of q (B, nh, T, hs) over k, v (B, nh, L, hs) as two batched matmuls in q's dtype,
    the mask added inside the first one: causal (bias None, T == L; the (B*nh, T, T) weights are kept for
    backward), or an additive `bias` (B, 1, T, L) of 0 (visible) and -inf: the engine's rows, each over its
    own keys padded to the longest row (one query per row: SDPA's fused kernel costs ~1.2-1.7x more there)."""
    B, nh, T, hs = q.shape
    L = k.size(2)
    k, v = k.to(q.dtype), v.to(q.dtype)  # e.g. a prefill under autocast reads back an fp32 KV cache
    if bias is None:
        bias = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    else:
        bias = bias.to(q.dtype).expand(B, nh, T, L).reshape(B * nh, T, L)
    with torch.autocast(q.device.type, enabled=False):  # softmax in q's dtype: no fp32 copy of the weights
        scores = torch.baddbmm(bias, q.reshape(B * nh, T, hs), k.reshape(B * nh, L, hs).transpose(1, 2),
                               alpha=hs ** -0.5)
        y = scores.softmax(-1) @ v.reshape(B * nh, L, hs)
    return y.view(B, nh, T, hs)


# ----------------------------------------------------------------------------- caches
# A cache stores keys and values between forward calls. The attention asks it three things and never
# which kind it is: where the new tokens sit (`positions`), to store their keys/values and hand back
# everything they attend over with a visibility mask (`update`), and to move on (`advance`).
# The mask is additive, (B, 1, T, L) of 0 (visible) and -inf; None = causal: the T new queries are the
# last T of the L keys. The engine's slot cache
# (genforge/engine.py) follows the same protocol with a position per row.


class Cache(Protocol):
    def positions(self, T: int) -> torch.Tensor: ...  # (T,) shared by every row, or (B, T) per row
    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...
    def advance(self, T: int) -> None: ...


class KVCache:
    """Contiguous keys and values for every layer, (n_layer, B, nh, T_max, hs) each; every row at the same
    position (`genforge sample`, training-time samples)."""

    def __init__(self, n_layer, batch, n_head, max_len, head_size, dtype, device):
        self.k = torch.zeros(n_layer, batch, n_head, max_len, head_size, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.pos = 0  # number of positions filled
        self.max_len = max_len
        self._arange = torch.arange(max_len, device=device)
        self._k = [self.k[i] for i in range(n_layer)]  # per-layer views: fewer indexing ops per token
        self._v = [self.v[i] for i in range(n_layer)]

    def positions(self, T: int) -> torch.Tensor:
        return self._arange[self.pos:self.pos + T]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, nh, T, hs) at the current position; return all keys/values so far (causal)."""
        end = self.pos + k.size(2)
        keys, values = self._k[layer], self._v[layer]  # (B, nh, T_max, hs)
        keys[:, :, self.pos:end] = k
        values[:, :, self.pos:end] = v
        return keys[:, :, :end], values[:, :, :end], None

    def advance(self, T: int) -> None:
        self.pos += T


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
           dropout: float, kernel: str) -> torch.Tensor:
    """Softmax attention of q (B, nh, T, hs) over k, v (B, nh, L, hs) -> (B, nh, T, hs). `mask` (broadcast
    to (B, nh, T, L), True = visible) wins; else causal means the queries are the last T of the L keys."""
    T, L = q.size(-2), k.size(-2)
    if mask is None and causal and T == L:
        if dropout == 0.0 and (kernel == "matmul" or (kernel == "auto" and use_matmul_attention(q))):
            return matmul_attention(q, k, v)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    if mask is None and causal and T > 1:  # a chunk after a cached prefix: causal within, full over the prefix
        mask = torch.ones(T, L, dtype=torch.bool, device=q.device).tril(diagonal=L - T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)

# ----------------------------------------------------------------------------- blocks


def rms_norm_1tok(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMS normalisation over the last axis as one native kernel: layer_norm over [x, -x], whose mean is
    zero, divides x by sqrt(mean(x^2) + eps) exactly as F.rms_norm does (to rounding). On the CPU,
    F.rms_norm runs as ~8 small ops; at one token per row this is 1.3-1.7x faster."""
    C = x.size(-1)
    return F.layer_norm(torch.cat((x, -x), -1), (2 * C,), None, None, eps)[..., :C]


def norm_fn(m: nn.Module, cast: bool) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor | None]:
    """An RMSNorm / LayerNorm module as a plain function of x (the one-token path), and the gain the next
    linear layer should fold into its weight (fp32 RMSNorm: its gain scales that layer's input columns).
    cast: under autocast, where activations and weights may differ in dtype."""
    w, b, eps = m.weight, getattr(m, "bias", None), m.eps
    if isinstance(m, RMSNorm):
        if cast:
            return (lambda x: F.rms_norm(x, (x.size(-1),), w.to(x.dtype), eps)), None
        return (lambda x: rms_norm_1tok(x, eps)), w
    return (lambda x: F.layer_norm(x, (x.size(-1),), w, b, eps)), None


def out_fn(w: torch.Tensor, b: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(h, x) -> x + h @ w.T (+ b): an output projection and its residual add, one addmm without a bias."""
    if b is None:
        wt = w.t()
        return lambda h, x: torch.addmm(x, h, wt)
    return lambda h, x: x + F.linear(h, w, b)


class Attention(nn.Module):
    """Multi-head self-attention: causal for the decoder, over every real token for an encoder
    (`causal=False` with a padding mask). The cache, if any, owns the keys and values."""

    def __init__(self, cfg: GPTConfig, causal: bool = True):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, f"n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}"
        self.n_head, self.hs, self.causal = cfg.n_head, cfg.n_embd // cfg.n_head, causal
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.q_norm = RMSNorm(self.hs, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(self.hs, cfg.norm_eps) if cfg.qk_norm else None
        self.attn_dropout = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.attention = cfg.attention
        self.resid_drop = Dropout(cfg.dropout)

    def forward(self, x, rope, cache: Cache | None = None, layer: int = 0, mask: torch.Tensor | None = None):
        """x (B, T, C); rope (cos, sin) broadcastable to (B, nh, T, hs/2) or None; mask (B, 1, T|1, L)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v, mask = cache.update(layer, k, v)  # (B, nh, L, hs): what the new queries attend over
            k, v = k.to(q.dtype), v.to(q.dtype)  # e.g. a bf16 prefill reading back an fp32 cache
        drop = self.attn_dropout if self.training else 0.0
        y = attend(q, k, v, mask, self.causal, drop, self.attention)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.c_proj(y))

    def one_token(self, cast: bool, gain: torch.Tensor | None = None
                  ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, Cache, int, int], torch.Tensor]:
        """forward() for rows of T new tokens each (T = 1: one per row, the decode step; T > 1: a prompt), as a
        function (h (B*T, C), x, rot, cache, layer, T) -> x + the attention of h, over this module's weights:
        2-D activations and no module calls (at batch 1 a small model is bound by per-op and Python overhead,
        not FLOPs), queries and keys normalised in one call and rotated by one (hs, hs) matrix per row
        (`rot`: (1, hs, hs) or (B, hs, hs); for T > 1 the (cos, sin) angles of each token), the input norm's
        `gain` folded into the qkv weight, the residual added inside the output matmul. cast: match dtypes
        under autocast (each cast costs a few microseconds, so fp32 decoding skips them). Build it per use:
        it captures the weights' current values where it folds or stacks them."""
        nh, hs, kernel = self.n_head, self.hs, self.attention
        w_qkv, b_qkv = self.c_attn.weight, self.c_attn.bias
        if gain is not None:
            w_qkv = w_qkv * gain  # (3C, C): column c scaled by the norm's gain of channel c
        project = out_fn(self.c_proj.weight, self.c_proj.bias)
        gains = eps = None
        if self.q_norm is not None:  # (2, 1, 1, hs)
            gains, eps = torch.stack((self.q_norm.weight, self.k_norm.weight))[:, None, None], self.q_norm.eps

        def step(h, x, rot, cache, layer, T=1):
            N, C = h.shape  # N = B * T tokens, row-major
            qkv = F.linear(h, w_qkv, b_qkv).view(N, 3, nh, 1, hs)
            qk, v = qkv[:, :2], qkv[:, 2]  # (N, 2, nh, 1, hs), (N, nh, 1, hs)
            if gains is not None:
                qk = (F.rms_norm(qk, (hs,), None, eps) * gains.to(qk.dtype)) if cast else rms_norm_1tok(qk, eps) * gains
            if T > 1 and rot is not None:  # a prompt: (cos, sin) per token, cheaper than matrices over many tokens
                qk = apply_rotary(qk, *rot)
            elif rot is not None:
                qk = (qk.reshape(N, 2 * nh, hs) @ (rot.to(qk.dtype) if cast else rot)).view(N, 2, nh, 1, hs)
            q, k = qk[:, 0], qk[:, 1]  # (N, nh, 1, hs)
            if T > 1:  # (B, nh, T, hs): each row's T tokens side by side
                q, k, v = (t.reshape(N // T, T, nh, hs).transpose(1, 2) for t in (q, k, v))
            keys, values, mask = cache.update(layer, k, v)  # (B, nh, L, hs)
            if cast:
                keys, values = keys.to(q.dtype), values.to(q.dtype)
            if T > 1:  # causal within the new tokens, over every cached one before them
                y = attend(q, keys, values, mask, True, 0.0, kernel).transpose(1, 2)  # (B, T, nh, hs)
            elif mask is not None and use_matmul_attention(q):  # a position per row, bf16: two matmuls
                y = matmul_attention(q, keys, values, mask)
            else:  # every row at one position (mask None), or a position per row: an additive mask over the
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # keys padded to the longest
            return project(y.reshape(N, C), x)
        return step


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.c_fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.activation = cfg.activation
        self.drop = Dropout(cfg.dropout)

    def forward(self, x):
        h = F.linear(x, self.c_fc.weight, self.c_fc.bias)
        if self.activation == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        return self.drop(F.linear(h, self.c_proj.weight, self.c_proj.bias))

    def one_token(self, gain: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """forward() as a function (h, x) -> x + MLP(h) over this module's weights, the input norm's `gain`
        folded in and the residual added inside the output matmul (no dropout: the one-token path samples)."""
        w1, b1, act = self.c_fc.weight, self.c_fc.bias, self.activation
        if gain is not None:
            w1 = w1 * gain  # (4C, C)
        project = out_fn(self.c_proj.weight, self.c_proj.bias)
        approximate = "tanh" if act == "gelu_tanh" else "none"

        def step(h, x):
            h = F.linear(h, w1, b1)
            h = F.relu(h).square() if act == "relu2" else F.gelu(h, approximate=approximate)
            return project(h, x)
        return step


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, cfg: GPTConfig, causal: bool = True):
        super().__init__()
        self.ln_1 = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.attn = Attention(cfg, causal)
        self.ln_2 = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, rope=None, cache: Cache | None = None, layer: int = 0, mask: torch.Tensor | None = None):
        x = x + self.attn(self.ln_1(x), rope, cache, layer, mask)
        return x + self.mlp(self.ln_2(x))

    def one_token(self, cast: bool) -> Callable[[torch.Tensor, torch.Tensor | None, Cache, int, int], torch.Tensor]:
        """forward() for rows of T new tokens, x (B*T, C): see Attention.one_token."""
        (n1, g1), (n2, g2) = norm_fn(self.ln_1, cast), norm_fn(self.ln_2, cast)
        attn, mlp = self.attn.one_token(cast, g1), self.mlp.one_token(g2)

        def step(x, rot, cache, layer, T=1):
            x = attn(n1(x), x, rot, cache, layer, T)
            return mlp(n2(x), x)
        return step

# ----------------------------------------------------------------------------- config


@dataclass
class GPTConfig:
    vocab_size: int = 0  # 0 = taken from the tokenizer
    block_size: int = 128  # context length in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * n_embd
    dropout: float = 0.0  # on embeddings and residual branches
    attn_dropout: float | None = None  # on attention weights; None = same as dropout
    bias: bool = False  # biases in Linear and LayerNorm layers
    pos: Literal["rope", "learned"] = "rope"  # rotary or learned absolute positions
    rope_base: float = 10000.0
    # (rows, cols): the last rows * cols positions are an image grid with 2-D rotary angles (rotary_tables);
    # set by the text2image family from prior.positions. None = 1-D positions everywhere
    rope_grid: tuple[int, int] | None = None
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    qk_norm: bool = True  # RMS-normalise queries and keys per head (steadier at high LR)
    activation: Literal["gelu", "gelu_tanh", "relu2"] = "relu2"
    tie_weights: bool = True  # share the token embedding and the output head
    init_std: float = 0.02
    # causal attention kernel: auto = two matmuls on the CPU in bf16 up to context 512 (faster there,
    # benchmarks/gpt_attention.py), F.scaled_dot_product_attention otherwise; KV-cached decoding uses SDPA
    attention: Literal["auto", "sdpa", "matmul"] = "auto"

    def validate(self):
        for name in ("block_size", "n_layer", "n_head", "n_embd", "mlp_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd={self.n_embd} must be divisible by model.n_head={self.n_head}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError("rotary positions need an even head size (model.n_embd / model.n_head)")
        if self.rope_grid is not None and (self.pos != "rope" or len(self.rope_grid) != 2 or min(self.rope_grid) <= 0
                                           or math.prod(self.rope_grid) > self.block_size):
            raise ValueError(f"model.rope_grid={self.rope_grid} must be (rows, cols) > 0 with rows * cols <= "
                             f"model.block_size={self.block_size}, and model.pos='rope'")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {value}")
        attn_dropout = self.dropout if self.attn_dropout is None else self.attn_dropout
        if self.attention == "matmul" and attn_dropout > 0:
            raise ValueError("model.attention='matmul' has no dropout on attention weights: "
                             "set model.attn_dropout=0 or model.attention='auto'")

# ----------------------------------------------------------------------------- model


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.vocab_size > 0, "GPTConfig.vocab_size must be set (from the tokenizer)"
        cfg.validate()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.drop = Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        if cfg.pos == "rope":
            cos, sin = rotary_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_base, cfg.rope_grid)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self._rot = None  # (T_max, hs, hs) rotary matrices of the one-token path, built on first use
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # residual projections: scaled by depth (GPT-2)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=self.config.init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=self.config.init_std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(self, idx: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> final-norm hidden states (B, T, C); the body every use shares (language
        modelling, a classifier's encoder, cached decoding of a prompt)."""
        B, T = idx.shape
        if cache is None:
            assert T <= self.config.block_size, f"sequence of {T} tokens exceeds the context length {self.config.block_size}"
            pos = None  # 0 .. T-1
        else:
            pos = cache.positions(T)  # (T,) or (B, T)
            assert int(pos.max()) < self.config.block_size, (
                f"sequence of {int(pos.max()) + 1} tokens exceeds the context length {self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device) if pos is None else pos)
        elif pos is None:
            rope = (self.rope_cos[:T], self.rope_sin[:T])  # (T, hs/2)
        else:
            rope = (self.rope_cos[pos], self.rope_sin[pos])  # (T, hs/2) or (B, T, hs/2)
            if pos.dim() == 2:
                rope = (rope[0][:, None], rope[1][:, None])  # (B, 1, T, hs/2)
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, rope, cache, i)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)

    def forward(self, idx, targets=None, cache: Cache | None = None, last_only: bool = False):
        """idx (B, T) token ids -> (logits (B, T, V) or (B, 1, V) if last_only, mean loss or None)."""
        x = self.hidden(idx, cache)
        if targets is None:
            return self.lm_head(x[:, -1:] if last_only else x), None
        logits = self.lm_head(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        p = next(self.parameters())
        c = self.config
        return KVCache(c.n_layer, batch, c.n_head, max_len or c.block_size, c.n_embd // c.n_head, p.dtype, p.device)

    def one_token(self) -> Callable[..., torch.Tensor]:
        """The cached path of the whole model: a function (tok, cache, last=None) -> logits (B, V) that reads and
        extends the cache, made of the blocks' `one_token` functions. tok (B,): one new token per row (a decode
        step; side by side with forward() at T = 1 it is 1.5x faster at batch 1, benchmarks/gpt_sample.py); tok
        (B, T): T new tokens per row (a prompt), the logits of each row's last token, or of token last[b] of
        row b (prompts padded on the right). Sampling and the server's engine both fill a prompt through it, so
        they hold the same keys. Build it per use (once per `stream`, once per server engine): it captures
        the current norm gains."""
        if self.wpe is None and (self._rot is None or self._rot.device != self.rope_cos.device):
            self._rot = torch.stack([rotary_matrix(c, s) for c, s in zip(self.rope_cos, self.rope_sin)])
        rot_table, wte, wpe = self._rot, self.wte.weight, None if self.wpe is None else self.wpe.weight
        cos_table, sin_table = (self.rope_cos, self.rope_sin) if wpe is None else (None, None)
        cast = torch.is_autocast_enabled(wte.device.type)
        blocks = [block.one_token(cast) for block in self.h]
        final, gain = norm_fn(self.ln_f, cast)
        head = self.lm_head.weight if gain is None else self.lm_head.weight * gain  # (V, C)
        block_size = self.config.block_size

        def prompt(tok, cache, last):  # (B, T) new tokens per row
            (B, T), p = tok.shape, cache.positions(tok.size(1))  # p: (T,) shared by every row, or (B, T)
            assert int(p.max()) < block_size, f"{int(p.max()) + 1} tokens exceed the context length {block_size}"
            p = (p.expand(B, T) if p.dim() == 1 else p).reshape(-1)  # (B*T,)
            x = F.embedding(tok.reshape(-1), wte)  # (B*T, C)
            if wpe is not None:
                x, rot = x + wpe[p], None
            else:
                rot = (cos_table[p][:, None, None, None], sin_table[p][:, None, None, None])  # (B*T, 1, 1, 1, hs/2)
            for i, block in enumerate(blocks):
                x = block(x, rot, cache, i, T)
            cache.advance(T)
            x = x.view(B, T, -1)  # each row's last (or chosen) token
            return F.linear(final(x[:, -1] if last is None else x[torch.arange(B, device=x.device), last]), head)

        def decode(tok, cache, last=None):
            if tok.dim() == 2:
                if tok.size(1) > 1:
                    return prompt(tok, cache, last)
                tok = tok[:, 0]
            p = cache.positions(1).view(-1)  # (1,) shared by every row, or (B,) one per row
            x = F.embedding(tok, wte)  # (B, C)
            rot = None
            if wpe is not None:
                x = x + wpe[p]
            else:
                rot = rot_table.index_select(0, p)  # (1 or B, hs, hs)
            for i, block in enumerate(blocks):
                x = block(x, rot, cache, i)
            cache.advance(1)
            return F.linear(final(x), head)  # (B, V)
        return decode

    def decode_step(self, tok: torch.Tensor, cache: Cache) -> torch.Tensor:
        """One new token per row, tok (B,) -> logits (B, V): `one_token()` built and used once."""
        return self.one_token()(tok, cache)

    # ------------------------------------------------------------------------- sampling

    @torch.inference_mode()
    def stream(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None,
               logits_processor: LogitsProcessor | torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Yield the next tokens for each of max_new_tokens steps, sampling with a KV cache.

        `logits_processor` edits the next-token logits before sampling: a boolean mask of the allowed
        tokens ((V,) or (B, V)), or a function (logits (B, V), step) -> logits (B', V). A function may return
        fewer rows (B' dividing B): each sampled token is then fed to B / B' consecutive groups of rows
        (row r of the output feeds rows r, r + B', r + 2B', ...): classifier-free guidance keeps the
        conditional and unconditional copies of a sequence in step this way. Yields (B',) tokens.
        When the context fills up, the newest half of it is kept and re-encoded, so sampling
        can run past the context length.
        """
        check_sampling(max_new_tokens, temperature, top_k, top_p)
        process = as_processor(logits_processor)
        was_training = self.training
        self.eval()
        try:
            T_max = self.config.block_size
            idx = idx[:, -T_max:]
            cache = self.new_cache(idx.size(0))
            decode = self.one_token()
            logits = decode(idx, cache)  # (B, V): the prompt through the cached path
            recent = []  # tokens since the last (re)fill, for a restart when the context is full
            for step in range(max_new_tokens):
                if process is not None:
                    logits = process(logits, step)
                nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B',)
                yield nxt
                if nxt.size(0) != idx.size(0):
                    nxt = nxt.repeat(idx.size(0) // nxt.size(0))  # (B,): the same token for every group
                recent.append(nxt)
                if cache.pos >= T_max:  # context full: restart from the newest half
                    idx = torch.cat([idx, torch.stack(recent, 1)], dim=1)[:, -(T_max // 2):]
                    recent = []
                    cache.pos = 0
                    logits = decode(idx, cache)
                else:
                    logits = decode(nxt, cache)
        finally:
            self.train(was_training)

    @torch.inference_mode()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kw) -> torch.Tensor:
        """idx (B, T) -> (B', T + max_new_tokens): the prompt followed by sampled tokens."""
        new = list(self.stream(idx, max_new_tokens, **kw))
        if not new:
            return idx
        out = torch.stack(new, dim=1)  # (B', max_new_tokens)
        return torch.cat([idx[:out.size(0)], out], dim=1)


# logits (B, V), step (tokens sampled so far) -> logits (B', V), B' dividing B
LogitsProcessor = Callable[[torch.Tensor, int], torch.Tensor]


def as_processor(p: LogitsProcessor | torch.Tensor | None) -> LogitsProcessor | None:
    """A boolean mask of allowed tokens becomes the function that sets every other logit to -inf."""
    if p is None or callable(p):
        return p
    if p.dtype != torch.bool:
        raise ValueError(f"logits_processor: a mask must be a bool tensor, got {p.dtype}")
    return lambda logits, step: logits.masked_fill(~p.to(logits.device), float("-inf"))


MIN_TEMPERATURE = 1e-6  # below this, logits / temperature overflows: sample greedily instead


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> next token ids (B,). temperature 0 (or below MIN_TEMPERATURE) is greedy; the most
    likely token always survives top-p, however small p is."""
    if temperature < MIN_TEMPERATURE:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # keep the smallest set reaching top_p
        drop[:, 0] = False
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    # exponential race: argmax(p / E) with E ~ Exp(1) draws index i with probability p_i, and
    # costs a fraction of torch.multinomial for one draw per row
    probs = logits.softmax(dim=-1)
    noise = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / noise).argmax(dim=-1)
