"""Identity axis: paired by seed, 0 for the base against itself, growing with a perturbed generator; the
"another person" baseline, normalised loss and retrieval rate against hand-computed cases; the proxy's thumbnail
correlation against NumPy and its sanity check on synthetic faces; LPIPS features against lpips itself."""
import copy

import numpy as np
import pytest
import torch
from tiny_nets import TINY_G, randomized

from stylegan_blend.errors import UserError
from stylegan_blend.evaluation.identity import (
    FacenetIdentity,
    IdentityExtractor,
    LPIPSIdentity,
    ProxyIdentity,
    identity_baseline,
    identity_scores,
    make_identity,
    retrieval_rate,
)
from stylegan_blend.evaluation.scoring import identity_features


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


def _check_pairwise(extractor, feats):
    """pairwise(a, b) is the paired loss on its diagonal and the same function of every other pair."""
    a, b = feats[0], feats[-1]
    d = extractor.pairwise(a, b)
    np.testing.assert_allclose(np.diag(d), extractor.per_seed(a, b)[extractor.metric], rtol=1e-6, atol=1e-9)
    for j in (1, 2):  # off the diagonal: pair base image 0 with cell image j
        one = {k: v[[0]] for k, v in a.items()}, {k: v[[j]] for k, v in b.items()}
        assert d[0, j] == pytest.approx(extractor.per_seed(*one)[extractor.metric][0], rel=1e-6, abs=1e-9)


def test_lpips_and_facenet_from_local_files(gens, tmp_path):
    import torchvision
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alex.pth")
    lp = LPIPSIdentity(tmp_path / "alex.pth")
    same, small, large = _losses(lp, gens)
    assert same == pytest.approx(0, abs=1e-9) and 0 < small < large
    feats = [identity_features(G, lp, 4, batch_size=4) for G in gens]
    _check_pairwise(lp, feats)
    # the feature distance is LPIPS itself: lpips's own forward on the same resized images
    imgs = [next(iter(_chunks(G, 4))) for G in (gens[0], gens[2])]
    x0, x2 = (lp._as_float(torch.as_tensor(i), lp.size) * 2 - 1 for i in imgs)
    with torch.no_grad():
        want = lp.model(x0, x2).flatten().double().numpy()
    np.testing.assert_allclose(lp.per_seed(feats[0], feats[2])["idloss_lpips"], want, rtol=1e-4)

    torch.save(InceptionResnetV1(pretrained=None).state_dict(), tmp_path / "facenet.pt")
    fn = FacenetIdentity(tmp_path / "facenet.pt")
    same, small, large = _losses(fn, gens, n=4)
    assert same == pytest.approx(0, abs=1e-9) and 0 < small < large
    _check_pairwise(fn, [identity_features(G, fn, 4, batch_size=4) for G in gens])
    with pytest.raises(UserError, match="not InceptionResnetV1"):
        FacenetIdentity(tmp_path / "alex.pth")


def _chunks(G, n):
    from stylegan_blend.evaluation.scoring import _image_chunks

    return _image_chunks(G, n, 0, n, n, 1.0, "const", "cpu")


def test_weights_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.delenv("STYLEGAN_BLEND_FACENET", raising=False)
    with pytest.raises(UserError, match="STYLEGAN_BLEND_FACENET"):
        make_identity("identity_facenet")
    with pytest.raises(UserError, match="not found"):
        make_identity("lpips", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="expected one of"):
        make_identity("arcface")


class Points(IdentityExtractor):
    """Faces as points on a line: the distance is |a - b|, so every number below is computable by hand."""

    name, metric = "points", "idloss_points"

    def per_seed(self, base, cell):
        return {self.metric: np.abs(base["x"] - cell["x"])}

    def pairwise(self, a, b):
        return np.abs(a["x"][:, None] - b["x"][None])


def test_baseline_normalised_loss_and_retrieval_by_hand():
    base, cell = {"x": np.array([0.0, 10.0, 20.0])}, {"x": np.array([1.0, 14.0, 14.0])}
    pts = Points()
    # off-diagonal base distances 10, 20, 10 (each twice): mean 40/3
    assert identity_baseline(pts, base) == pytest.approx(40 / 3)
    # cell 0 -> base 0 (1 < 9); cell 1 = 14 -> base 1 (4 < 6); cell 2 = 14 -> base 1 (4), not its own base 2 (6)
    assert retrieval_rate(pts, base, cell) == pytest.approx(2 / 3)
    scores = identity_scores(pts, base, cell)
    assert scores["idloss_points"] == (pytest.approx(11 / 3), 3)
    assert scores["idbase_points"] == (pytest.approx(40 / 3), 3)
    assert scores["idnorm_points"] == (pytest.approx((11 / 3) / (40 / 3)), 3)
    assert scores["idretr_points"] == (pytest.approx(2 / 3), 3)
    # a tie with another base face is not a retrieval: cell 1 = 15 is 5 from base 1 and 5 from base 2
    assert retrieval_rate(pts, base, {"x": np.array([0.0, 15.0, 20.0])}) == pytest.approx(2 / 3)


def _numpy_thumbnail_distance(a: np.ndarray, b: np.ndarray, res: int = 16) -> np.ndarray:
    """(1 - Pearson r of the res x res RGB block means) / 2, with NumPy's corrcoef."""
    def thumb(x):
        n, h, w, c = x.shape
        return x.astype(np.float64).reshape(n, res, h // res, res, w // res, c).mean(axis=(2, 4))
    ta, tb = thumb(a), thumb(b)
    return np.array([(1 - np.corrcoef(ta[i].ravel(), tb[i].ravel())[0, 1]) / 2 for i in range(len(a))])


def test_proxy_thumbnail_correlation_by_hand():
    proxy = ProxyIdentity()
    rng = np.random.default_rng(1)
    img = rng.integers(40, 200, (3, 32, 32, 3)).astype(np.uint8)
    other = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    inverted, dimmer = 255 - img, (img * 0.5 + 20).astype(np.uint8)
    f = proxy.features(torch.from_numpy(img))
    got = proxy.per_seed(f, proxy.features(torch.from_numpy(other)))["idloss_proxy"]
    np.testing.assert_allclose(got, _numpy_thumbnail_distance(img, other), atol=1e-12)
    # correlation -1 -> (1 - (-1)) / 2 = 1; a brightness/contrast change keeps the thumbnail's pattern -> ~0
    assert proxy.per_seed(f, proxy.features(torch.from_numpy(inverted)))["idloss_proxy"] == \
        pytest.approx([1, 1, 1], abs=1e-6)
    assert proxy.per_seed(f, proxy.features(torch.from_numpy(dimmer)))["idloss_proxy"] == \
        pytest.approx([0, 0, 0], abs=1e-3)
    _check_pairwise(proxy, [f, proxy.features(torch.from_numpy(other))])


def test_proxy_sanity_on_synthetic_faces():
    """The demo's world: image i of the "photo" and "toon" domains is the same face (same geometry) drawn two
    ways. One formula for every seed; a mild change of the same face is far closer than another person, and even
    the full toon rendering stays below another person and retrieves its face well above chance (1/24).
    Measured: blur 0.004, colour cast 0.03, noise 0.003 of the baseline; toon 0.84, retrieval 67 %."""
    from scipy.ndimage import gaussian_filter

    from stylegan_blend.data.synthetic import image_rng, render_face

    n = 24
    photo = np.stack([render_face(image_rng(0, i), "photo", 32) for i in range(n)])
    toon = np.stack([render_face(image_rng(0, i), "toon", 32) for i in range(n)])
    x = photo.astype(np.float32)
    mild = {"blur": gaussian_filter(x, (0, 0.6, 0.6, 0)), "colour cast": x + [8, 0, -8],
            "noise": x + np.random.default_rng(0).normal(0, 4, x.shape)}
    proxy = ProxyIdentity()
    base = proxy.features(torch.from_numpy(photo))
    for what, img in mild.items():
        changed = torch.from_numpy(np.clip(img, 0, 255).round().astype(np.uint8))
        s = identity_scores(proxy, base, proxy.features(changed))
        assert s["idnorm_proxy"][0] < 0.1 and s["idretr_proxy"][0] == 1.0, (what, s)
    s = identity_scores(proxy, base, proxy.features(torch.from_numpy(toon)))
    assert s["idnorm_proxy"][0] < 1.0 and s["idretr_proxy"][0] > 0.5, s
