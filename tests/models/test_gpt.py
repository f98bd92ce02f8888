import math

import pytest
import torch

from genforge.models.gpt import (GPT, Dropout, GPTConfig, check_sampling, matmul_attention, sample_next,
                                 use_matmul_attention)


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=37, block_size=32, n_layer=2, n_head=2, n_embd=32)
    base.update(kw)
    return GPTConfig(**base)


VARIANTS = [dict(), dict(pos="learned", norm="layernorm", qk_norm=False, activation="gelu", bias=True,
                         tie_weights=False)]


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


@pytest.mark.parametrize("kw", VARIANTS)
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


@pytest.mark.parametrize("kw", VARIANTS)
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


def test_exponential_race_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits.expand(1000, 3), 1.0, None, None, g) for _ in range(10)]).flatten()
    freq = torch.bincount(draws, minlength=3).float() / draws.numel()
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.02)
