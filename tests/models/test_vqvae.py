"""genforge/models/vqvae.py: shapes, straight-through gradients, the EMA codebook, k-means, dead codes, FSQ, round trips."""
import json
from dataclasses import asdict

import pytest
import torch

from genforge.models.vqvae import FSQ, VQVAE, VectorQuantizer, VQVAEConfig, from_state, kmeans

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"width": 16, "res_blocks": 1, "codebook_size": 32, "code_dim": 4}


def images(n: int, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("kw,grid,k", [
    ({}, (7, 7), 32),
    ({"image_size": 32, "channels": 3}, (8, 8), 32),
    ({"quantizer": "fsq", "fsq_levels": (8, 5, 5, 5)}, (7, 7), 1000),
    ({"arch": "mlp", "groups": 6, "loss": "bce"}, (1, 6), 32),
])
def test_shapes_of_codes_and_images(kw, grid, k):
    m = VQVAE(VQVAEConfig(**{**SMALL, **kw})).eval()
    c = m.config
    x = images(3, c.image_size, c.channels)
    codes = m.encode(x)
    assert m.grid == grid and m.code_length == grid[0] * grid[1] and m.codebook_size == k
    assert codes.shape == (3, m.code_length) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < k
    out = m.decode(codes)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


def test_gradients_pass_the_quantizer_straight_through_to_the_encoder():
    m = VQVAE(VQVAEConfig(**SMALL, commitment=0.0))
    _, out = m(images(4))
    out["recon"].backward()  # the reconstruction alone: the encoder learns only through the quantizer
    enc = [p.grad for p in m.encoder.parameters()]
    assert all(g is not None for g in enc) and sum(g.abs().sum() for g in enc) > 0


def test_forward_uses_the_chosen_codes_and_eval_reconstruction_is_decode_of_encode():
    m = VQVAE(VQVAEConfig(**SMALL))
    m(images(8))  # initialises the codebook (k-means on this batch)
    m.eval()
    x = images(5, seed=1)
    recon, out = m(x)
    assert torch.equal(out["codes"], m.encode(x))
    assert torch.allclose(recon, m.decode(m.encode(x)), atol=1e-6)


def test_ema_codebook_update_on_a_hand_case():
    q = VectorQuantizer(VQVAEConfig(codebook_size=2, code_dim=1, ema_decay=0.5, dead_after=0))
    q.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    q.embed_sum.copy_(q.codebook)
    q.ready.fill_(True)
    z = torch.tensor([[1.0], [3.0], [9.0]])
    idx = q.indices(z)
    assert idx.tolist() == [0, 0, 1]
    q.update(z, idx)
    # cluster sizes 0.5 * 1 + 0.5 * (2, 1) = (1.5, 1); sums 0.5 * (0, 10) + 0.5 * (4, 9) = (2, 9.5)
    assert torch.allclose(q.cluster_size, torch.tensor([1.5, 1.0]))
    assert torch.allclose(q.codebook.flatten(), torch.tensor([2 / 1.5, 9.5]), atol=1e-4)


def test_a_code_unused_for_dead_after_batches_is_reseeded_from_encoder_outputs():
    q = VectorQuantizer(VQVAEConfig(codebook_size=3, code_dim=1, ema_decay=0.5, dead_after=2))
    q.codebook.copy_(torch.tensor([[0.0], [10.0], [100.0]]))
    q.embed_sum.copy_(q.codebook)
    q.ready.fill_(True)
    z = torch.tensor([[0.5], [9.5], [1.0], [11.0]])
    q.update(z, q.indices(z))
    assert q.idle.tolist() == [0, 0, 1] and q.restarts.item() == 0
    q.update(z, q.indices(z))
    assert q.restarts.item() == 1 and q.idle[2] == 0
    assert q.codebook[2].item() in z.flatten().tolist()  # re-seeded at an encoder output


def test_kmeans_finds_separated_clusters_and_initialises_the_codebook_on_the_first_batch():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    x = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(-1, 2)
    found = kmeans(x, 3, iters=10, gen=torch.Generator().manual_seed(1))
    assert torch.cdist(found, centres).min(0).values.max() < 0.2  # every centre has a centroid beside it
    q = VectorQuantizer(VQVAEConfig(codebook_size=3, code_dim=2, kmeans_iters=10, dead_after=0)).train()
    assert not q.ready
    q(x)
    assert q.ready and torch.cdist(q.codebook, centres).min(0).values.max() < 0.3


def test_fsq_codes_cover_every_level_combination_and_look_up_to_the_quantised_values():
    q = FSQ(VQVAEConfig(fsq_levels=(8, 5)))
    assert q.k == 40 and q.dim == 2
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0)) * 3
    vals, idx, commit = q(z)
    assert set(idx.tolist()) == set(range(40)) and commit.item() == 0
    assert torch.allclose(q.lookup(idx), vals) and torch.equal(q.indices(z), idx)
    assert vals.abs().max() <= 1
    z.requires_grad_(True)
    q(z)[0].sum().backward()
    assert z.grad.abs().sum() > 0  # straight through the rounding


def test_rebuilt_from_a_json_config_and_state_dict_it_encodes_and_decodes_the_same():
    for kw in ({}, {"quantizer": "fsq", "fsq_levels": (4, 4, 3)}):
        m = VQVAE(VQVAEConfig(**SMALL, **kw))
        m(images(8))
        m.eval()
        cfg = json.loads(json.dumps(asdict(m.config)))  # fsq_levels comes back as a list
        again = from_state(cfg, {k: v.clone() for k, v in m.state_dict().items()})
        x = images(4, seed=2)
        assert torch.equal(again.encode(x), m.encode(x))
        assert torch.equal(again.decode(m.encode(x)), m.decode(m.encode(x)))
    with pytest.raises(ValueError, match="unknown field.*colour"):
        from_state({**cfg, "colour": 1}, m.state_dict())


def test_seeded_training_steps_are_deterministic():
    def run():
        torch.manual_seed(0)
        m = VQVAE(VQVAEConfig(**SMALL, dead_after=1))
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        for step in range(3):
            _, out = m(images(8, seed=step))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        return m.state_dict()
    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_codes_and_configs_are_clear_errors():
    m = VQVAE(VQVAEConfig(**SMALL)).eval()
    with pytest.raises(ValueError, match=r"codes: expected shape \(B, 49\)"):
        m.decode(torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="codes must be in 0..31"):
        m.decode(torch.full((1, 49), 32))
    with pytest.raises(ValueError, match="model.image_size=30"):
        VQVAE(VQVAEConfig(image_size=30))
