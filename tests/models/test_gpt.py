import math

import pytest
import torch

from genforge.models.gpt import (GPT, Dropout, GPTConfig, check_sampling, matmul_attention, rotary_tables,
                                 sample_next, use_matmul_attention)


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=37, block_size=32, n_layer=2, n_head=2, n_embd=32)
    base.update(kw)
    return GPTConfig(**base)


VARIANTS = [dict(), dict(pos="learned", norm="layernorm", qk_norm=False, activation="gelu", bias=True,
                         tie_weights=False)]
CACHED = VARIANTS + [dict(rope_grid=(4, 5))]  # positions 12..31 a 4 x 5 grid with 2-D rotary angles


@pytest.mark.parametrize("kw", VARIANTS)
def test_loss_at_init_is_near_uniform(kw):
    torch.manual_seed(0)
    model = GPT(tiny(**kw))
    x, y = torch.randint(0, 37, (8, 32)), torch.randint(0, 37, (8, 32))
    _, loss = model(x, y)
    assert abs(loss.item() - math.log(37)) < 0.1


@pytest.mark.parametrize("kw", VARIANTS)
def test_overfits_one_batch(kw):
    torch.manual_seed(0)
    model = GPT(tiny(**kw))
    x = torch.randint(0, 37, (4, 32))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("kw", CACHED)
def test_kv_cache_matches_full_forward(kw):
    torch.manual_seed(0)
    model = GPT(tiny(**kw)).eval()
    x = torch.randint(0, 37, (3, 20))
    full, _ = model(x)
    cache = model.new_cache(3)
    parts = [model(x[:, :7], cache=cache)[0], model(x[:, 7:12], cache=cache)[0]]  # prefill + chunk
    parts += [model(x[:, t:t + 1], cache=cache)[0] for t in range(12, 20)]  # one token at a time
    cached = torch.cat(parts, dim=1)
    assert torch.allclose(full, cached, atol=1e-5), (full - cached).abs().max()


def test_seeded_sampling_is_deterministic_and_past_context():
    torch.manual_seed(0)
    model = GPT(tiny())
    x = torch.zeros(2, 1, dtype=torch.long)
    a = model.generate(x, 50, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(3))
    b = model.generate(x, 50, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 51) and torch.equal(a, b)
    assert model.training  # generate restores the mode it found


def test_greedy_equals_argmax_of_uncached_forward():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 37, (1, 5))
    out = model.generate(idx, 40, temperature=0.0)  # runs past block_size=32
    ref = idx
    for _ in range(40):
        logits, _ = model(ref[:, -32:])
        ref = torch.cat([ref, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out[:, :32], ref[:, :32])


def test_top_k_and_top_p_restrict_support():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    ks = {sample_next(logits, 1.0, 2, None, g).item() for _ in range(200)}
    assert ks <= {0, 1}
    probs = logits.softmax(-1)[0]
    ps = {sample_next(logits, 1.0, None, float(probs[0]) + 1e-3, g).item() for _ in range(200)}
    assert ps == {0, 1}  # the smallest set reaching p needs the top two
    assert {sample_next(logits, 1.0, None, 0.01, g).item() for _ in range(50)} == {0}


@pytest.mark.parametrize("args,msg", [((0, 1.0, None, None), "max_new_tokens"), ((5, -0.1, None, None), "temperature"),
                                      ((5, 1.0, 0, None), "top_k"), ((5, 1.0, None, 0.0), "top_p"),
                                      ((5, 1.0, None, 1.5), "top_p")])
def test_bad_sampling_parameters(args, msg):
    with pytest.raises(ValueError, match=msg):
        check_sampling(*args)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4).validate()
    with pytest.raises(ValueError, match="model.attn_dropout"):
        GPTConfig(attn_dropout=1.0).validate()
    with pytest.raises(ValueError, match="model.attention='matmul'"):
        GPTConfig(attention="matmul", dropout=0.1).validate()


def test_grid_rotary_tables_follow_the_2d_formula():
    hs, length, base, (rows, cols) = 8, 10, 100.0, (2, 3)
    cos, sin = rotary_tables(hs, length, base, (rows, cols))
    freq = [base ** (-2 * i / hs) for i in range(hs // 2)]
    start = length - rows * cols  # 4: positions 0..3 keep 1-D angles
    for t in range(length):
        r, c = divmod(t - start, cols)
        for i, f in enumerate(freq):
            pos = t if t < start else start + (r if i % 2 == 0 else c)  # even pairs: the row; odd: the column
            assert math.isclose(cos[t, i], math.cos(pos * f), abs_tol=1e-6), (t, i)
            assert math.isclose(sin[t, i], math.sin(pos * f), abs_tol=1e-6), (t, i)
    flat = rotary_tables(hs, length, base)
    assert torch.equal(flat[0][:start], cos[:start]) and not torch.equal(flat[0], cos)
    with pytest.raises(ValueError, match=r"model.rope_grid=\(4, 4\) must be"):
        GPTConfig(block_size=15, rope_grid=(4, 4)).validate()
    with pytest.raises(ValueError, match="model.rope_grid"):
        GPTConfig(pos="learned", rope_grid=(2, 2)).validate()


def test_attention_kernels_give_the_same_model():
    torch.manual_seed(0)
    sdpa = GPT(tiny(attention="sdpa")).eval()
    matmul = GPT(tiny(attention="matmul")).eval()
    matmul.load_state_dict(sdpa.state_dict())
    x = torch.randint(0, 37, (2, 32))
    assert torch.allclose(sdpa(x)[0], matmul(x)[0], atol=1e-5)


def test_dropout_rate_scale_and_determinism():
    drop = Dropout(0.25)  # 64/256 exactly
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.005
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.01  # inverted dropout keeps the expectation
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the global generator drives the mask
    drop.eval()
    assert drop(x) is x
    g = torch.ones(1000, requires_grad=True)
    torch.manual_seed(1)
    out = Dropout(0.5).train()(g)
    out.sum().backward()
    assert torch.equal(g.grad, out.detach())  # d(out)/dx is the same mask and scale
    odd = Dropout(0.5).train()(torch.ones(3, 7, 5))  # numel not a multiple of the 8 bytes per draw
    assert odd.shape == (3, 7, 5) and 0 < (odd == 0).sum() < odd.numel()


def test_matmul_attention_matches_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, dtype=torch.float64) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(matmul_attention(q, k, v), ref, atol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16: within bf16 rounding of the exact answer
        low = matmul_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert low.dtype == torch.bfloat16 and (low.double() - ref).abs().max() < 0.05
    qs = [torch.empty(1, 1, T, 8, dtype=dt) for T, dt in ((64, torch.bfloat16), (512, torch.bfloat16),
                                                           (513, torch.bfloat16), (64, torch.float32))]
    assert [use_matmul_attention(q) for q in qs] == [True, True, False, False]


def test_bf16_generation_with_an_fp32_cache():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    start = torch.randint(0, 37, (2, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the prefill takes the matmul path, the cache is fp32
        out = model.generate(start, 6, temperature=0.0)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], start)


def test_bf16_training_forward_close_to_fp32():
    torch.manual_seed(0)
    model = GPT(tiny())
    x = torch.randint(0, 37, (4, 16))
    _, exact = model(x, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # takes the matmul attention path
        _, low = model(x, x)
    assert abs(low.item() - exact.item()) < 0.02
    low.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("kw", CACHED)
def test_decode_step_matches_full_forward(kw):
    torch.manual_seed(0)
    model = GPT(tiny(**kw)).eval()
    x = torch.randint(0, 37, (3, 20))
    full, _ = model(x)
    cache = model.new_cache(3)
    with torch.no_grad():
        first, _ = model(x[:, :6], cache=cache)
        steps = [model.decode_step(x[:, t], cache) for t in range(6, 20)]
    assert torch.allclose(first, full[:, :6], atol=1e-5)
    assert torch.allclose(torch.stack(steps, 1), full[:, 6:], atol=1e-5)


@pytest.mark.parametrize("kw", CACHED)
def test_prompts_through_the_cached_path_match_full_forward(kw):
    """one_token()'s decode with T tokens per row (how sampling and the engine fill a prompt): a prompt from
    position 0, then a chunk after it (causal within, over the cached prefix), then single tokens; and
    prompts padded on the right with `last` picking each row's own last token."""
    torch.manual_seed(0)
    model = GPT(tiny(**kw)).eval()
    x = torch.randint(0, 37, (3, 20))
    full, _ = model(x)
    cache, decode = model.new_cache(3), model.one_token()
    with torch.no_grad():
        got = [decode(x[:, :7], cache), decode(x[:, 7:12], cache)] + [decode(x[:, t], cache) for t in (12, 13)]
        assert cache.pos == 14
        for logits, t in zip(got, (6, 11, 12, 13)):
            assert torch.allclose(logits, full[:, t], atol=1e-5), t
        last = torch.tensor([4, 19, 0])
        padded = decode(x, model.new_cache(3), last=last)
    assert torch.allclose(padded, full[torch.arange(3), last], atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.one_token()(x[:, :9], model.new_cache(3))
    assert low.dtype == torch.bfloat16 and (low.float() - full[:, 8]).abs().max() < 0.05


def test_exponential_race_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits.expand(1000, 3), 1.0, None, None, g) for _ in range(10)]).flatten()
    freq = torch.bincount(draws, minlength=3).float() / draws.numel()
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.02)


def test_tiny_top_p_and_temperature_are_greedy_not_nan():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 4.0]])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert sample_next(logits, 1.0, None, 1e-300, g).tolist() == [1, 2]  # 1e-300 is 0.0 in float32
        assert sample_next(logits, 1e-40, None, None, g).tolist() == [1, 2]  # logits / 1e-40 would overflow


def test_logits_processor_mask_restricts_every_step():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    allowed = torch.zeros(37, dtype=torch.bool)
    allowed[[3, 5, 30]] = True
    g = torch.Generator().manual_seed(0)
    out = model.generate(torch.zeros(2, 1, dtype=torch.long), 40, generator=g, logits_processor=allowed)
    assert set(out[:, 1:].flatten().tolist()) <= {3, 5, 30}
    with pytest.raises(ValueError, match="bool"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 2, logits_processor=allowed.float())


def test_logits_processor_function_sees_each_step_and_can_guide_row_groups():
    """A function of (logits, step); returning B/2 rows keeps two copies of each sequence in step, as
    classifier-free guidance needs (conditional rows first, unconditional second)."""
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    steps = []

    def by_position(logits, step):  # even steps: token 1 only; odd steps: token 2 only
        steps.append(step)
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep[:, 1 + step % 2] = True
        return logits.masked_fill(~keep, float("-inf"))
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 6, logits_processor=by_position)
    assert out[0, 1:].tolist() == [1, 2, 1, 2, 1, 2] and steps == list(range(6))

    seen = []

    def guidance(logits, step):  # (2B, V) -> (B, V)
        cond, uncond = logits.chunk(2)
        seen.append(logits.size(0))
        return uncond + 3.0 * (cond - uncond)
    prompts = torch.tensor([[4, 5], [6, 7], [0, 0], [0, 0]])  # two prompts, then their unconditional copies
    g = torch.Generator().manual_seed(1)
    guided = model.generate(prompts, 30, generator=g, temperature=0.0, logits_processor=guidance)
    assert guided.shape == (2, 32) and set(seen) == {4}
    with torch.no_grad():  # greedy guided decoding, recomputed without a cache: same tokens
        seq = prompts.clone()
        for _ in range(30):
            logits = model(seq)[0][:, -1]
            cond, uncond = logits.chunk(2)
            nxt = (uncond + 3.0 * (cond - uncond)).argmax(-1)
            seq = torch.cat([seq, nxt.repeat(2)[:, None]], 1)
    assert torch.equal(guided[:, 2:], seq[:2, 2:])


@pytest.mark.parametrize("kw", VARIANTS)
def test_one_token_path_under_bf16_autocast_stays_close_to_fp32(kw):
    torch.manual_seed(0)
    model = GPT(tiny(**kw)).eval()
    x = torch.randint(0, 37, (2, 12))
    full, _ = model(x)
    cache = model.new_cache(2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x[:, :4], cache=cache)
        decode = model.one_token()
        steps = torch.stack([decode(x[:, t], cache) for t in range(4, 12)], 1)
    assert steps.dtype == torch.bfloat16 and (steps.float() - full[:, 4:]).abs().max() < 0.05


def test_encoder_block_sees_both_directions_and_never_padding():
    from genforge.models.gpt import Block
    torch.manual_seed(0)
    block = Block(tiny(), causal=False).eval()
    x = torch.randn(1, 6, 32)
    mask = torch.tensor([[True] * 4 + [False] * 2])[:, None, None, :]  # (B, 1, 1, T): 2 padding positions
    y = block(x, mask=mask)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, 32)  # padding content must not matter
    assert torch.allclose(block(x2, mask=mask)[:, :4], y[:, :4], atol=1e-6)
    x3 = x.clone()
    x3[:, 3] += 1.0  # a later real token changes earlier positions (not causal)
    assert not torch.allclose(block(x3, mask=mask)[:, 0], y[:, 0], atol=1e-4)
    causal = Block(tiny()).eval()
    causal.load_state_dict(block.state_dict())
    assert torch.allclose(causal(x3)[:, 0], causal(x)[:, 0], atol=1e-6)  # the decoder's does not look ahead
