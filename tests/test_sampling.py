"""Seeds, latents and uint8 conversion follow NVIDIA generate.py; generate_images leaves G as it found it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylegan_blend.errors import UserError
from stylegan_blend.networks import Generator
from stylegan_blend.networks.sampling import generate_images, parse_seeds, to_uint8, z_from_seed

TINY_G = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
              mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))


@pytest.mark.parametrize("text, seeds", [("0-3,7", [0, 1, 2, 3, 7]), ("5", [5]), (" 2 - 4 , 0 ", [2, 3, 4, 0]),
                                         ("9,9", [9, 9]), ("4294967295", [4294967295])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", " ", "a", "3-1", "1,,2", "-1", "1-2-3", "1.5", "4294967296", "0-4294967296"])
def test_parse_seeds_rejects_with_one_line(text):
    with pytest.raises(UserError) as exc:
        parse_seeds(text)
    assert "\n" not in str(exc.value) and repr(text) in str(exc.value)


def test_z_from_seed_is_numpy_randomstate_normal():
    z = z_from_seed(42, 7)
    assert z.shape == (1, 7) and z.dtype == np.float64
    # RandomState's legacy gaussian: polar Box-Muller on its MT19937 stream, drawn here value by value
    rs = np.random.RandomState(42)
    np.testing.assert_array_equal(z[0], [rs.standard_normal() for _ in range(7)])


def test_to_uint8_hand_values_and_layout():
    img = torch.tensor([-1.0, 0.0, 1.0, 2.0, -2.0, 0.5, -0.004, 0.996]).reshape(1, 2, 2, 2)
    out = to_uint8(img)
    assert out.dtype == torch.uint8 and out.shape == (1, 2, 2, 2)
    # value*127.5+128 clamped to [0, 255], truncated: -1->0.5->0, 0->128, 1->255.5->255, .5->191.75->191,
    # -0.004->127.49->127, 0.996->254.99->254; channel c of pixel (y, x) is img[0, c, y, x]
    expected_chw = np.array([0, 128, 255, 255, 0, 191, 127, 254], dtype=np.uint8).reshape(2, 2, 2)
    np.testing.assert_array_equal(out[0].numpy(), expected_chw.transpose(1, 2, 0))


def tiny_generator() -> Generator:
    torch.manual_seed(0)
    G = Generator(**TINY_G)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        G.mapping.w_avg.normal_()
    return G


def test_generate_images_matches_seed_convention_and_restores_mode():
    G = tiny_generator().train()
    w_avg = G.mapping.w_avg.clone()
    seeds = [0, 1, 5]
    out = generate_images(G, seeds, truncation_psi=0.7, noise_mode="const", batch_size=len(seeds))
    assert G.training, "G's training mode must be restored"
    assert torch.equal(G.mapping.w_avg, w_avg), "eval mode: w_avg must not be updated"
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32, 3) and not out.requires_grad
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, 32) for s in seeds])).float()
    G.eval()
    with torch.no_grad():
        img = G(z, None, truncation_psi=0.7, noise_mode="const")
    expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    assert torch.equal(out, expected)


def test_generate_images_batching_does_not_change_images():
    G = tiny_generator().eval()
    one = generate_images(G, [3, 4, 5, 6, 7], batch_size=1)
    many = generate_images(G, [3, 4, 5, 6, 7], batch_size=2)
    diff = (one.int() - many.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01  # batched modconv only differs by rounding
    assert not G.training


def test_generate_images_bad_noise_mode():
    with pytest.raises(UserError, match="noise mode"):
        generate_images(tiny_generator(), [0], noise_mode="loud")
