"""Identity axis: paired by seed, 0 for the base against itself, growing with a perturbed generator;
the landmark proxy against planted landmarks."""
import copy

import numpy as np
import pytest
import torch

from stylegan_blend.errors import UserError
from stylegan_blend.evaluation.identity import (FacenetIdentity, LPIPSIdentity, ProxyIdentity, identity_scores,
                                                landmark_loss, make_identity)
from stylegan_blend.evaluation.scoring import identity_features
from tiny_nets import TINY_G, randomized


def perturbed(G, scale, seed=7):
    G = copy.deepcopy(G)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.synthesis.named_parameters():
            if name.endswith("weight"):
                p.add_(torch.randn(p.shape, generator=g) * scale * p.std())
    return G


@pytest.fixture(scope="module")
def gens():
    from stylegan_blend.networks import Generator

    G = randomized(Generator(**TINY_G), 1)
    return G, perturbed(G, 0.3), perturbed(G, 1.5)


def _losses(extractor, gens, n=8):
    feats = [identity_features(G, extractor, n, batch_size=n) for G in gens]
    return [identity_scores(extractor, feats[0], f)[extractor.metric][0] for f in feats]


def test_proxy_zero_for_base_and_grows(gens):
    same, small, large = _losses(ProxyIdentity(), gens)
    assert same == pytest.approx(0, abs=1e-12)
    assert 0 < small < large


def test_lpips_and_facenet_from_local_files(gens, tmp_path):
    import torchvision
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alex.pth")
    same, small, large = _losses(LPIPSIdentity(tmp_path / "alex.pth"), gens)
    assert same == pytest.approx(0, abs=1e-9) and 0 < small < large
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), tmp_path / "facenet.pt")
    same, small, large = _losses(FacenetIdentity(tmp_path / "facenet.pt"), gens, n=4)
    assert same == pytest.approx(0, abs=1e-9) and 0 < small < large
    with pytest.raises(UserError, match="not InceptionResnetV1"):
        FacenetIdentity(tmp_path / "alex.pth")


def test_weights_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.delenv("STYLEGAN_BLEND_FACENET", raising=False)
    with pytest.raises(UserError, match="STYLEGAN_BLEND_FACENET"):
        make_identity("identity_facenet")
    with pytest.raises(UserError, match="not found"):
        make_identity("lpips", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="expected one of"):
        make_identity("arcface")


def test_landmark_proxy_against_planted_landmarks():
    # planted 5-point faces in image fractions: eyes 0.2 apart
    face = np.array([[0.4, 0.4], [0.6, 0.4], [0.5, 0.5], [0.42, 0.6], [0.58, 0.6]])
    base = np.stack([face, face, face, np.full((5, 2), np.nan)])
    cell = np.stack([face + [0.02, 0.0], face + [0.03, 0.04], np.full((5, 2), np.nan), face])
    got = landmark_loss(base, cell)
    # shift 0.02 / eye 0.2 = 0.1; shift 0.05 / 0.2 = 0.25; lost face = 1; base not found = undefined
    np.testing.assert_allclose(got[:3], [0.1, 0.25, 1.0])
    assert np.isnan(got[3])

    planted = {"base": base, "cell": cell}
    calls = iter(["base", "cell"])
    proxy = ProxyIdentity(detector=lambda x: planted[next(calls)])
    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    b, c = proxy.features(imgs), proxy.features(imgs)  # same images: structure term 0
    scores = identity_scores(proxy, b, c)
    assert scores["idloss_landmarks"] == (pytest.approx((0.1 + 0.25 + 1.0) / 3), 3)
    assert scores["idloss_proxy"][0] == pytest.approx((0.05 + 0.125 + 0.5 + 0.0) / 4)
    assert scores["face_detect_rate"] == (0.75, 4)


def test_lowfreq_structure_term_by_hand():
    proxy = ProxyIdentity(detector=lambda x: np.full((len(x), 5, 2), np.nan))
    rng = np.random.default_rng(1)
    img = rng.integers(40, 200, (2, 32, 32, 3)).astype(np.uint8)
    inverted, dimmer = 255 - img, (img * 0.5 + 20).astype(np.uint8)
    f = proxy.features(torch.from_numpy(img))
    # correlation -1 -> (1 - (-1)) / 2 = 1; a brightness/contrast change keeps the structure -> ~0
    assert proxy.per_seed(f, proxy.features(torch.from_numpy(inverted)))["idloss_lowfreq"] == \
        pytest.approx([1, 1], abs=1e-6)
    assert proxy.per_seed(f, proxy.features(torch.from_numpy(dimmer)))["idloss_lowfreq"] == \
        pytest.approx([0, 0], abs=1e-3)
