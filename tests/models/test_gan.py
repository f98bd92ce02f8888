"""GAN models: the articles' layer shapes, conditioning, spectral norm, losses and the WGAN-GP penalty."""
import math

import pytest
import torch
import torch.nn as nn

from genforge.models.gan import (Discriminator, GANConfig, Generator, build, d_loss, diff_augment, g_loss,
                                 gradient_penalty, r1_penalty)

pytestmark = pytest.mark.usefixtures("one_thread")


def layers(module, kinds):
    return [m for m in module.modules() if isinstance(m, kinds)]


def test_mlp_is_article_000():
    g, d = build(GANConfig(arch="mlp", image_size=28, channels=1))
    shapes = [(m.in_features, m.out_features) for m in layers(g, nn.Linear)]
    assert shapes == [(100, 256), (256, 512), (512, 784)]
    assert [type(m) for m in g.body.net] == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU, nn.Linear, nn.Tanh]
    assert [(m.in_features, m.out_features) for m in layers(d, nn.Linear)] == [(784, 512), (512, 256), (256, 1)]
    x = g(torch.randn(5, 100))
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    assert d(x).shape == (5,)


def test_dcgan_is_article_003_at_28px():
    c = GANConfig(arch="dcgan", g_width=128, d_width=64, leak=0.01)
    g, d = build(c)
    assert (g.body.fc.in_features, g.body.fc.out_features) == (100, 7 * 7 * 128)
    ups = layers(g, nn.ConvTranspose2d)
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in ups] == [(128, 128, (5, 5), (2, 2))] * 2
    assert (g.body.to_image.in_channels, g.body.to_image.out_channels, g.body.to_image.kernel_size) == (128, 1, (7, 7))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for m in ups]
    x = g(torch.randn(2, 100))
    for h in hooks:
        h.remove()
    assert seen == [(128, 14, 14), (128, 28, 28)] and x.shape == (2, 1, 28, 28)
    convs = layers(d, nn.Conv2d)
    assert [m.out_channels for m in convs] == [64, 128, 256, 512]
    assert all(m.negative_slope == 0.01 for m in layers(d, nn.LeakyReLU))
    assert d(x).shape == (2,)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 1)])
def test_dcgan_sizes(size, channels):
    g, d = build(GANConfig(arch="dcgan", image_size=size, channels=channels, g_width=16, d_width=8))
    x = g(torch.randn(2, 100))
    assert x.shape == (2, channels, size, size)
    assert d(x).shape == (2,)


def test_unsupported_dcgan_size():
    with pytest.raises(ValueError, match="model.image_size=48"):
        GANConfig(arch="dcgan", image_size=48).validate()


def test_conditional_generator_and_projection_discriminator():
    g, d = build(GANConfig(arch="dcgan", num_classes=10, g_width=16, d_width=8))
    z = torch.randn(4, 100)
    with torch.no_grad():
        g.embed.weight[3] *= 2.0  # a class with its own scale
        a, b = g.eval()(z, torch.tensor([1] * 4)), g(z, torch.tensor([3] * 4))
    assert not torch.allclose(a, b)
    assert d.project.weight.shape == (10, d.body.out_features)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        d.project.weight[2].fill_(0.1)
        diff = d(x, torch.tensor([2] * 4)) - d(x, torch.tensor([0] * 4))
        expected = (d.body(x) * (d.project.weight[2] - d.project.weight[0])).sum(1)
    torch.testing.assert_close(diff, expected)


def test_spectral_norm_bounds_the_discriminator_layers():
    _, d = build(GANConfig(arch="mlp", image_size=8, spectral_norm=True))
    for _ in range(30):  # power iterations run on every training-mode forward
        d(torch.randn(8, 1, 8, 8))
    for m in layers(d, nn.Linear):
        assert torch.linalg.matrix_norm(m.weight, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_losses_on_hand_computed_logits():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert d_loss("minimax", real, fake).item() == pytest.approx((sp(0) + sp(-2)) / 2 + (sp(0) + sp(-1)) / 2)
    assert g_loss("minimax", fake).item() == pytest.approx((math.log(0.5) + math.log(1 - 1 / (1 + math.e))) / 2)
    assert g_loss("nonsaturating", fake).item() == pytest.approx((sp(0) + sp(1)) / 2)
    assert d_loss("hinge", real, fake).item() == pytest.approx((1 + 0) / 2 + (1 + 0) / 2)
    assert d_loss("wgan-gp", real, fake).item() == pytest.approx(-0.5 - 1.0)
    with pytest.raises(ValueError, match="gan.loss='lsgan'"):
        d_loss("lsgan", real, fake)


class Quadratic(nn.Module):
    """D(x) = sum(x^2): its gradient at x is 2x, so the penalty is easy to compute by hand."""

    def forward(self, x, labels=None):
        return (x ** 2).flatten(1).sum(1)


def test_wgan_gp_penalty_by_hand():
    real = torch.tensor([[1.0, 0.0], [3.0, 4.0]]).view(2, 1, 1, 2)
    fake = torch.zeros(2, 1, 1, 2)
    alpha = torch.tensor([0.5, 1.0])
    # x_hat = [0.5, 0] and [3, 4]; gradients [1, 0] and [6, 8]; norms 1 and 10 -> ((0)^2 + (9)^2) / 2
    assert gradient_penalty(Quadratic(), real, fake, alpha).item() == pytest.approx(40.5)
    # R1: squared gradient norms at the reals: |[2, 0]|^2 = 4 and |[6, 8]|^2 = 100
    assert r1_penalty(Quadratic(), real).item() == pytest.approx(52.0)


def test_gradient_penalty_is_differentiable_in_d():
    _, d = build(GANConfig(arch="mlp", image_size=8))
    gp = gradient_penalty(d, torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.rand(4))
    gp.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters() if p.dim() == 2)


def test_diff_augment_is_seeded_and_differentiable():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    a = diff_augment(x, torch.Generator().manual_seed(0))
    b = diff_augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None


def test_sample_is_seeded_and_restores_mode():
    g = Generator(GANConfig(arch="dcgan", g_width=16))
    g.train()
    a = g.sample(3, torch.Generator().manual_seed(1))
    b = g.sample(3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and g.training


@pytest.mark.parametrize("mode", [True, False])
def test_sample_restores_mode_when_generating_fails(mode):
    g = Generator(GANConfig(arch="dcgan", g_width=16, num_classes=3))
    g.train(mode)
    with pytest.raises(AssertionError, match="needs labels"):
        g.sample(2, torch.Generator().manual_seed(0))  # a conditional generator without labels
    assert g.training is mode and all(m.training is mode for m in g.modules())


def test_standing_stats_match_the_generator_s_own_activations():
    torch.manual_seed(0)
    g = Generator(GANConfig(arch="dcgan", g_width=16, num_classes=3))
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)]
    for m in norms:  # stale statistics, as an EMA copy holds after copying another G's buffers
        m.running_mean.fill_(3.0)
        m.running_var.fill_(9.0)
    z = torch.randn(1024, g.config.z_dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(1024) % 3
    with torch.no_grad():
        g.train()
        batch_stats = g(z, labels)  # normalised with this batch's own statistics
        g.eval()
        stale = g(z, labels)
        g.standing_stats(batches=8, size=256)
        standing = g(z, labels)
    assert not g.training and all(m.momentum == 0.1 for m in norms)  # mode and momentum restored
    assert (stale - batch_stats).abs().mean() > 0.1
    assert (standing - batch_stats).abs().mean() < 0.02
    before = [m.running_mean.clone() for m in norms]
    g.standing_stats(batches=8, size=256)  # fixed seed: the same statistics again
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))


# ----------------------------------------------------------------------------- diversity options (issue 14)


def test_mode_seeking_ratio_by_hand():
    from genforge.models.gan import mode_seeking_loss
    x1 = torch.zeros(2, 1, 2, 2)
    x2 = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 3.0)])  # mean |x1 - x2|: 1 and 3
    z1, z2 = torch.zeros(2, 4), torch.tensor([[2.0] * 4, [1.0] * 4])  # mean |z1 - z2|: 2 and 1
    x2.requires_grad_(True)
    loss = mode_seeking_loss(x1, x2, z1, z2)
    assert loss.item() == pytest.approx(1 / ((1 / 2 + 3 / 1) / 2 + 1e-5))  # ratios 0.5 and 3
    loss.backward()
    assert (x2.grad < 0).all()  # lower loss = images further apart (x2 > x1 grows)


def test_minibatch_std_feature_by_hand_and_in_d():
    from genforge.models.gan import MinibatchStd
    out = MinibatchStd()(torch.tensor([[0.0, 4.0], [2.0, 4.0]]))  # per-feature std 1 and 0 -> mean 0.5
    assert torch.allclose(out, torch.tensor([[0.0, 4.0, 0.5], [2.0, 4.0, 0.5]]), atol=1e-3)
    for arch, extra in (("dcgan", 2 * 2), ("mlp", 1)):  # dcgan: one more channel over D's last 2x2 map
        plain = build(GANConfig(arch=arch, d_width=4, g_width=8, mlp_hidden=(16,)))[1]
        std = build(GANConfig(arch=arch, d_width=4, g_width=8, mlp_hidden=(16,), minibatch_std=True))[1]
        assert std.body.out_features == plain.body.out_features + extra
        assert any(isinstance(m, MinibatchStd) for m in std.modules())
        assert not any(isinstance(m, MinibatchStd) for m in plain.modules())
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    same = x[:1].expand(3, -1, -1, -1)  # a collapsed batch: D's extra feature is (almost) zero
    d = Discriminator(GANConfig(arch="dcgan", d_width=4, g_width=8, minibatch_std=True))  # PyTorch's init
    h_varied, h_same = d.body(x), d.body(same)  # (3, (32 + 1) * 2 * 2): the std channel is last
    convs = d.body.net[:-2](x)  # (3, 32, 2, 2): D's features before the std channel
    expected = (convs.var(0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(h_varied[:, -4:], expected.expand(3, 4)) and expected > 1e-3
    assert torch.allclose(h_same[:, -4:], torch.full((3, 4), 1e-4))  # sqrt of the 1e-8 floor: no spread
    assert d(x).shape == (3,)
