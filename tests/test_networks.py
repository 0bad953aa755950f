"""Network-level behaviour: truncation, w_avg tracking, noise modes, Freeze-D, minibatch stddev, fp32 on CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylegan_blend.networks import Discriminator, Generator
from stylegan_blend.networks.layers import MinibatchStdLayer

G_KWARGS = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))
D_KWARGS = dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
                epilogue_kwargs=dict(mbstd_group_size=4))


def make_g(**overrides) -> Generator:
    torch.manual_seed(0)
    G = Generator(**{**G_KWARGS, **overrides}).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


def test_truncation_lerps_towards_w_avg():
    G = make_g()
    z = torch.randn(3, 32)
    with torch.no_grad():
        w = G.mapping(z, None)
        w_avg = G.mapping.w_avg
        torch.testing.assert_close(G.mapping(z, None, truncation_psi=0.7), w_avg + 0.7 * (w - w_avg))
        torch.testing.assert_close(G.mapping(z, None, truncation_psi=0.0), w_avg.expand_as(w))
        cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=4)
    torch.testing.assert_close(cut[:, :4], w_avg + 0.5 * (w[:, :4] - w_avg))
    torch.testing.assert_close(cut[:, 4:], w[:, 4:])
    assert w.shape == (3, G.num_ws, 32) and torch.equal(w[:, 0], w[:, -1])  # one w broadcast to all layers


def test_w_avg_tracks_with_decay_0995_in_train_mode_only():
    G = make_g()
    z = torch.randn(5, 32)
    old = G.mapping.w_avg.clone()
    with torch.no_grad():
        G.mapping(z, None)  # eval: no update
    torch.testing.assert_close(G.mapping.w_avg, old, rtol=0, atol=0)
    G.train()
    with torch.no_grad():
        G.mapping(z, None, skip_w_avg_update=True)
        torch.testing.assert_close(G.mapping.w_avg, old, rtol=0, atol=0)
        w = G.mapping(z, None)[:, 0]
    torch.testing.assert_close(G.mapping.w_avg, 0.995 * old + 0.005 * w.mean(dim=0))


def test_noise_modes():
    G = make_g()
    z = torch.randn(2, 32)
    with torch.no_grad():
        const_a = G(z, None, noise_mode="const")
        const_b = G(z, None, noise_mode="const")
        none = G(z, None, noise_mode="none")
        torch.manual_seed(5)
        rand_a = G(z, None, noise_mode="random")
        torch.manual_seed(5)
        rand_b = G(z, None, noise_mode="random")
        rand_c = G(z, None, noise_mode="random")
    assert torch.equal(const_a, const_b)
    assert torch.equal(rand_a, rand_b)  # driven by torch's RNG
    assert not torch.allclose(rand_a, rand_c, atol=1e-3)
    assert not torch.allclose(const_a, none, atol=1e-3)
    with torch.no_grad():  # noise_strength 0 removes noise whatever the mode
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
        torch.testing.assert_close(G(z, None, noise_mode="const"), none)
        torch.testing.assert_close(G(z, None, noise_mode="random"), none)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, None, noise_mode="fixed")


def test_fused_and_non_fused_modconv_give_the_same_image():
    G = make_g()
    z = torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(G(z, None, noise_mode="const", fused_modconv=True),
                                   G(z, None, noise_mode="const", fused_modconv=False), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_autograd_and_inference_paths_agree(batch):
    """Without autograd the layers work in place / channels-last; with it they must not, and every
    parameter of G must receive a gradient."""
    G = make_g()
    z = torch.randn(batch, 32)
    with torch.inference_mode():
        fast = G(z, None, noise_mode="const")
    img = G(z, None, noise_mode="const")
    torch.testing.assert_close(img.detach(), fast, atol=1e-5, rtol=1e-5)
    assert fast.is_contiguous() and img.is_contiguous()
    img.square().mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_cpu_runs_fp16_blocks_in_fp32():
    """num_fp16_res only switches CUDA blocks to fp16; on CPU the result is the fp32 network's."""
    G16 = make_g(synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=4, conv_clamp=256))
    G32 = make_g(synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=256))
    G32.load_state_dict(G16.state_dict())
    z = torch.randn(2, 32)
    with torch.no_grad():
        img = G16(z, None, noise_mode="const")
        assert img.dtype == torch.float32
        torch.testing.assert_close(img, G32(z, None, noise_mode="const"), rtol=0, atol=0)
    D = Discriminator(**{**D_KWARGS, "num_fp16_res": 4})
    assert D(torch.randn(4, 3, 32, 32)).dtype == torch.float32


def test_freeze_d_counts_layers_from_the_image_side():
    """32 px resnet D layers in order: b32 fromrgb, conv0, conv1, skip; b16 conv0, conv1, skip; b8 ...
    freeze_layers=5 freezes all of b32 and b16.conv0; the epilogue (b4) always trains."""
    D = Discriminator(**{**D_KWARGS, "block_kwargs": dict(freeze_layers=5)})
    frozen = {n.rsplit(".", 1)[0] for n, p in D.named_parameters() if not p.requires_grad}
    assert frozen == {"b32.fromrgb", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0"}
    D(torch.randn(4, 3, 32, 32)).sum().backward()
    for n, p in D.named_parameters():
        assert (p.grad is None) == (not p.requires_grad), n
    assert set(D.state_dict()) == set(Discriminator(**D_KWARGS).state_dict())  # same keys either way


def ref_mbstd(x: np.ndarray, group: int, num_channels: int) -> np.ndarray:
    """Sample i is grouped with samples i +- k*(N/group); per group: std over members, mean over c/h/w."""
    n, c, h, w = x.shape
    m = n // group
    out = np.zeros((n, num_channels, h, w))
    for i in range(n):
        members = x[[i % m + k * m for k in range(group)]]
        std = np.sqrt(members.var(axis=0) + 1e-8)  # population variance over the group
        for f in range(num_channels):
            cs = c // num_channels
            out[i, f] = std[f * cs:(f + 1) * cs].mean()
    return np.concatenate([x, out], axis=1)


@pytest.mark.parametrize("n,group,num_channels", [(8, 4, 1), (6, 2, 2), (3, 4, 1), (4, None, 1)])
def test_minibatch_stddev(n, group, num_channels):
    x = np.random.default_rng(0).standard_normal((n, 4, 3, 3))
    ours = MinibatchStdLayer(group, num_channels)(torch.from_numpy(x))
    np.testing.assert_allclose(ours.numpy(), ref_mbstd(x, min(group or n, n), num_channels), rtol=1e-6, atol=1e-8)


def test_minibatch_stddev_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(4)(torch.randn(6, 2, 2, 2))
