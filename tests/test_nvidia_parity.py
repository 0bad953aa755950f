"""Our networks against NVIDIA stylegan2-ada-pytorch's, via fixtures its own code produced.

The fixtures (tests/data/nvidia/, see tests/data/README.md) hold NVIDIA's randomised state dicts, the
images/ws/logits NVIDIA computed from them, and the key/shape manifest of NVIDIA's paper256 networks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_blend.networks import PAPER256_D_KWARGS, PAPER256_G_KWARGS, Discriminator, Generator

DATA = Path(__file__).parent / "data" / "nvidia"
G_FIXTURES = ["g32_skip", "g16_resnet"]
D_FIXTURES = ["d32_resnet", "d16_skip", "d16_orig"]


def load(name: str) -> dict:
    return torch.load(DATA / f"{name}.pt", weights_only=True)


def nvidia_generator(fx: dict, conv_clamp=None) -> Generator:
    kwargs = json.loads(json.dumps(fx["init_kwargs"]))
    if conv_clamp is not None:
        kwargs["synthesis_kwargs"]["conv_clamp"] = conv_clamp
    G = Generator(**kwargs).eval()
    G.load_state_dict(fx["state_dict"], strict=True)
    return G


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module", params=G_FIXTURES)
def g_fixture(request):
    return request.param, load(request.param)


@pytest.mark.parametrize("fused", [True, False])
def test_generator_reproduces_nvidia_images(g_fixture, fused):
    name, fx = g_fixture
    G = nvidia_generator(fx)
    for case in fx["cases"]:
        net = G if case["conv_clamp"] is None else nvidia_generator(fx, case["conv_clamp"])
        with torch.no_grad():
            ws = net.mapping(case["z"], None, truncation_psi=case["truncation_psi"])
            img = net.synthesis(ws, noise_mode=case["noise_mode"], fused_modconv=fused)
        torch.testing.assert_close(ws, case["ws"], atol=1e-5, rtol=1e-5)
        diff = (img - case["img"]).abs()
        assert diff.max() < 2e-4, f"{name} seed {case['seed']}: max |d| {diff.max():.2e}"
        d8 = np.abs(to_uint8(img).astype(int) - to_uint8(case["img"]).astype(int))
        assert d8.mean() <= 0.5 and d8.max() <= 1, f"{name} seed {case['seed']}: uint8 mean {d8.mean()}, max {d8.max()}"


def test_generator_matches_nvidia_pngs_through_full_call():
    """The public G(z) call with NVIDIA's generate.py seed convention reproduces NVIDIA's PNGs."""
    fx = load("g32_skip")
    G = nvidia_generator(fx)
    pngs = sorted(DATA.glob("g32_skip_seed*.png"))
    assert len(pngs) == len(fx["cases"])
    for case, png in zip(fx["cases"], pngs):
        stem = f"g32_skip_seed{case['seed']:04d}_psi{case['truncation_psi']:g}_{case['noise_mode']}"
        assert png.name.startswith(stem)
        net = G if case["conv_clamp"] is None else nvidia_generator(fx, case["conv_clamp"])
        z = torch.from_numpy(np.random.RandomState(case["seed"]).randn(1, G.z_dim))
        with torch.no_grad():
            img = net(z, None, truncation_psi=case["truncation_psi"], noise_mode=case["noise_mode"])
        ours = to_uint8(img)[0].astype(int)
        theirs = np.asarray(Image.open(png).convert("RGB")).astype(int)
        d8 = np.abs(ours - theirs)
        assert d8.mean() <= 0.5 and d8.max() <= 1, f"{png.name}: mean {d8.mean()}, max {d8.max()}"


def test_generator_batch_equals_single_images(g_fixture):
    """Batch > 1 takes the non-fused path on CPU; it must give NVIDIA's per-image results."""
    name, fx = g_fixture
    G = nvidia_generator(fx)
    cases = [c for c in fx["cases"] if c["conv_clamp"] is None and c["noise_mode"] == "const"
             and c["truncation_psi"] == 1]
    z = torch.cat([c["z"] for c in cases])
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
    torch.testing.assert_close(img, torch.cat([c["img"] for c in cases]), atol=2e-4, rtol=0)


@pytest.mark.parametrize("name", D_FIXTURES)
def test_discriminator_reproduces_nvidia_logits(name):
    fx = load(name)
    D = Discriminator(**fx["init_kwargs"]).eval()
    D.load_state_dict(fx["state_dict"], strict=True)
    with torch.no_grad():
        logits = D(fx["img"], None)
    torch.testing.assert_close(logits, fx["logits"], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def manifest():
    return json.loads((DATA / "paper256_manifest.json").read_text())


def shapes(net: torch.nn.Module) -> dict[str, list[int]]:
    return {n: list(t.shape) for n, t in net.state_dict().items()}


def test_paper256_generator_matches_nvidia_manifest(manifest):
    G = Generator(**PAPER256_G_KWARGS)
    assert shapes(G) == manifest["G"]["state_dict"]
    assert sorted(n for n, _ in G.named_parameters()) == manifest["G"]["parameters"]
    n_params = sum(p.numel() for p in G.parameters())
    assert n_params == manifest["G"]["num_params"] == 24_767_458
    assert G.num_ws == manifest["num_ws"] == 14
    Generator(**manifest["G"]["init_kwargs"])  # NVIDIA's own init_kwargs are accepted as they are


def test_paper256_discriminator_matches_nvidia_manifest(manifest):
    D = Discriminator(**PAPER256_D_KWARGS)
    assert shapes(D) == manifest["D"]["state_dict"]
    assert sorted(n for n, _ in D.named_parameters()) == manifest["D"]["parameters"]
    assert sum(p.numel() for p in D.parameters()) == manifest["D"]["num_params"] == 24_001_089
    Discriminator(**manifest["D"]["init_kwargs"])


@pytest.mark.parametrize("freeze_layers", [10, 13])
def test_freeze_d_freezes_the_layers_nvidia_freezes(manifest, freeze_layers):
    """NVIDIA stores frozen weights as buffers; we keep them as parameters without gradients."""
    D = Discriminator(**{**PAPER256_D_KWARGS, "block_kwargs": {"freeze_layers": freeze_layers}})
    frozen = sorted(n for n, p in D.named_parameters() if not p.requires_grad)
    assert frozen == manifest["D"]["frozen_by_freeze_layers"][str(freeze_layers)]
    assert shapes(D) == manifest["D"]["state_dict"]
