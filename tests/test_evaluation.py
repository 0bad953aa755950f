"""FID/KID maths against independent NumPy/SciPy implementations, the extractors, the reference cache, the CLI.

References: FD = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½) (Heusel et al. 2017); for diagonal covariances
this is ||mu1 - mu2||² + Σ (σ1 - σ2)². Unbiased MMD² with k(x, y) = (x·y / d + 1)³ (Bińkowski et al. 2018).
"""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from stylegan_blend.app.cli import main
from stylegan_blend.checkpoints import save_network
from stylegan_blend.errors import UserError
from stylegan_blend.evaluation import (
    INCEPTION_ENV,
    INCEPTION_FILE,
    RandCNNExtractor,
    evaluate_generator,
    frechet_distance,
    kernel_distance,
    list_images,
    make_extractor,
    reference_features,
    score,
)
from stylegan_blend.evaluation import distances as distances_mod
from stylegan_blend.evaluation import extractors as extractors_mod
from stylegan_blend.networks import Generator
from stylegan_blend.networks.sampling import generate_images
from stylegan_blend.run.tables import METRICS_COLUMNS as METRICS_CSV_COLUMNS
from stylegan_blend.run.tables import append_metrics_rows

TINY = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=256, channel_max=32))


# --- synthetic image domains ---------------------------------------------------------------------------------

def flat_blobs(n: int, seed: int, res: int = 32) -> np.ndarray:
    """Cartoon-like: a flat background with a few flat-colour discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    out = np.empty((n, res, res, 3), np.uint8)
    for i in range(n):
        img = np.empty((res, res, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3)
        for _ in range(3):
            cy, cx = rng.uniform(0, res, 2)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(1, max(res / 3, 2)) ** 2] = rng.integers(0, 256, 3)
        out[i] = img
    return out


def noisy_textures(n: int, seed: int, res: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (n, 1, 1, 3))
    return np.clip(base + rng.normal(0, 40, (n, res, res, 3)), 0, 255).astype(np.uint8)


def write_pngs(folder, images, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(images):
        name = f"{prefix}{i:03d}.png"
        Image.fromarray(img).save(folder / name)
        names.append(name)
    return names


# --- Fréchet distance ----------------------------------------------------------------------------------------

def scipy_fd(mu1, s1, mu2, s2):
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_on_random_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_fd(mu1, s1, mu2, s2), rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_agrees_with_clean_fid_when_covariances_are_singular():
    from cleanfid.fid import frechet_distance as cleanfid_fd

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(20, 40)), rng.normal(0.2, 1.5, size=(25, 40))  # fewer samples than dimensions
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(*args) == pytest.approx(cleanfid_fd(*args), rel=1e-6)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    sd1, sd2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    expected = ((mu1 - mu2) ** 2).sum() + ((sd1 - sd2) ** 2).sum()
    assert frechet_distance(mu1, np.diag(sd1 ** 2), mu2, np.diag(sd2 ** 2)) == pytest.approx(expected, rel=1e-9)


# --- kernel distance -----------------------------------------------------------------------------------------

def loop_mmd2(x, y):
    """Unbiased MMD² written out pair by pair."""
    d, m, n = x.shape[1], len(x), len(y)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_equals_full_sample_unbiased_mmd_when_subsets_cover_the_sets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(25, 5)), rng.normal(0.3, 1.2, size=(25, 5))
    mean, std = kernel_distance(x, y, num_subsets=3, max_subset_size=1000)
    assert mean == pytest.approx(loop_mmd2(x, y), rel=1e-9)
    assert std == pytest.approx(0, abs=1e-12)  # each subset is a permutation of the whole set


def test_kid_matches_clean_fid_and_both_kernel_paths_agree(monkeypatch):
    from cleanfid.fid import kernel_distance as cleanfid_kd

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.2, 1.0, size=(30, 8))
    assert kernel_distance(x, y, num_subsets=2)[0] == pytest.approx(cleanfid_kd(x, y, num_subsets=2), rel=1e-9)
    y = y[:24]  # now subsets of x are random draws
    shared = kernel_distance(x, y, num_subsets=10, max_subset_size=20, seed=3)
    monkeypatch.setattr(distances_mod, "GRAM_LIMIT", 0)
    per_subset = kernel_distance(x, y, num_subsets=10, max_subset_size=20, seed=3)
    assert shared == pytest.approx(per_subset, rel=1e-9) and shared[1] > 0


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    c = rng.normal(0.5, 1.0, size=(300, 16))
    same, same_std = kernel_distance(a, b, num_subsets=20, max_subset_size=100)
    diff, _ = kernel_distance(a, c, num_subsets=20, max_subset_size=100)
    assert abs(same) < 3 * same_std + 1e-3
    assert diff > 20 * abs(same) and diff > 0.05
    assert kernel_distance(a, c, num_subsets=5, seed=7) == kernel_distance(a, c, num_subsets=5, seed=7)


def test_score_names_and_prefix():
    ex = RandCNNExtractor()
    rng = np.random.default_rng(3)
    out = score(rng.normal(size=(40, 4)), rng.normal(size=(30, 4)), ex, prefix="src_")
    assert set(out) == {"src_fd_randcnn", "src_kd_randcnn", "src_density_randcnn", "src_coverage_randcnn"}
    assert all(np.isfinite(v) for v in out.values())


def test_fd_warns_below_the_feature_dimension(caplog):
    ex = RandCNNExtractor()
    rng = np.random.default_rng(4)
    with caplog.at_level("WARNING"):
        score(rng.normal(size=(40, 50)), rng.normal(size=(30, 50)), ex)
        score(rng.normal(size=(40, 50)), rng.normal(size=(30, 50)), ex)
        score(rng.normal(size=(40, 20)), rng.normal(size=(30, 20)), ex)  # N above the dimension: quiet
    assert [r.getMessage()[:46] for r in caplog.records] == ["fd_randcnn: 30 samples < 50 feature dimensions"]


def test_kid_subset_follows_the_smaller_set():
    """300 vs 400 samples: the subset is 300, not clean-fid's 1000. With 300 vs 300 and one subset, the
    estimate is the full-set unbiased MMD² computed here by hand."""
    from stylegan_blend.evaluation.distances import kid_subset_size

    assert kid_subset_size(300, 400) == 300 and kid_subset_size(5000, 4000) == 1000
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 8)), rng.normal(0.3, 1.0, size=(300, 8))

    def k(a, b):
        return (a @ b.T / 8 + 1) ** 3
    m = 300
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    want = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    assert kernel_distance(x, y, num_subsets=1)[0] == pytest.approx(want, rel=1e-10)


def test_density_coverage_by_hand():
    from stylegan_blend.evaluation.distances import density_coverage

    real = np.array([[0.0], [1.0], [3.0]])
    # k=1 radii: 1, 1, 2. fake 0.5 lies in balls 0 and 1, 10 and 11 in none -> density 2 / (1 * 3);
    # balls 0 and 1 are covered, ball 2 is not -> coverage 2/3
    assert density_coverage(real, np.array([[0.5], [10.0], [11.0]]), k=1) == pytest.approx((2 / 3, 2 / 3))
    # fake 2.5 falls in ball 2 only (|2.5 - 3| <= 2; 1.5 > 1): density (2 + 1) / 3, all balls covered
    assert density_coverage(real, np.array([[0.5], [2.5], [11.0]]), k=1) == pytest.approx((1.0, 1.0))


def _prdc_density_coverage(real, fake, k):
    """Naeem et al. 2020, eqs. for density and coverage, as in their `prdc` package: B(x, r) is the OPEN ball
    (`distance < radius`), r = distance from a real sample to its k-th nearest other real sample (ties count
    once each). Written as plain loops over the definitions."""
    n, m = len(real), len(fake)
    radius = []
    for i in range(n):
        others = sorted(float(np.linalg.norm(real[i] - real[j])) for j in range(n) if j != i)
        radius.append(others[k - 1])
    inside = [[float(np.linalg.norm(fake[j] - real[i])) < radius[i] for i in range(n)] for j in range(m)]
    density = sum(sum(row) for row in inside) / (k * m)
    coverage = sum(any(inside[j][i] for j in range(m)) for i in range(n)) / n
    return density, coverage


def test_density_coverage_follow_prdc_on_ties():
    from stylegan_blend.evaluation.distances import density_coverage

    # integer lattice points with duplicates: many distances tie exactly with a ball's radius
    real = np.array([[0, 0], [0, 0], [1, 0], [0, 1], [1, 1], [2, 0], [0, 2], [2, 2], [3, 1], [1, 3]], float)
    fake = np.array([[0, 0], [1, 0], [1, 1], [1, 1], [2, 1], [3, 3], [0.5, 0.5], [2, 0]], float)
    for k in (1, 2, 3, 5):
        want = _prdc_density_coverage(real, fake, k)
        assert density_coverage(real, fake, k=k) == pytest.approx(want, abs=1e-12), k
    # the case is one where the inequality matters: closed balls would count more
    closed = sum(float(np.linalg.norm(f - r)) <= np.sort(np.linalg.norm(real - r, axis=1))[3]
                 for f in fake for r in real) / (3 * len(fake))
    assert closed > _prdc_density_coverage(real, fake, 3)[0]


def test_density_is_one_when_fakes_are_the_reals():
    from stylegan_blend.evaluation.distances import density_coverage

    real = np.random.default_rng(0).normal(size=(40, 3))  # distinct distances: exactly k - 1 neighbours inside
    assert density_coverage(real, real.copy(), k=5) == (1.0, 1.0)  # `<=` gives 6/5


# --- extractors ----------------------------------------------------------------------------------------------

def test_randcnn_is_a_deterministic_proxy_that_separates_domains():
    ex = make_extractor("randcnn")
    assert ex.metric_names == ("fd_randcnn", "kd_randcnn") and ex.comparable is False
    assert "not comparable" in type(ex).__doc__
    blobs_a, blobs_b = ex(torch.from_numpy(flat_blobs(80, 1))), ex(torch.from_numpy(flat_blobs(80, 2)))
    noise_a, noise_b = ex(torch.from_numpy(noisy_textures(80, 3))), ex(torch.from_numpy(noisy_textures(80, 4)))
    assert blobs_a.dtype == np.float64 and blobs_a.shape == (80, ex.dim)
    within = max(score(blobs_a, blobs_b, ex)["fd_randcnn"], score(noise_a, noise_b, ex)["fd_randcnn"])
    across = score(blobs_a, noise_a, ex)
    assert across["fd_randcnn"] > 5 * within
    assert across["kd_randcnn"] > 20 * abs(score(blobs_a, blobs_b, ex)["kd_randcnn"])
    again = RandCNNExtractor(batch_size=7)(torch.from_numpy(flat_blobs(80, 1)))  # fresh weights, other batching
    assert np.allclose(again, blobs_a, rtol=0, atol=1e-12)


def test_extractor_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        make_extractor("randcnn")(torch.zeros(2, 8, 8, 3))


def test_missing_inception_weights_say_what_to_put_where(monkeypatch, tmp_path):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setattr(extractors_mod, "CLEANFID_DIR", tmp_path)
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(UserError) as err:
        make_extractor("inception")
    msg = str(err.value)
    assert INCEPTION_FILE in msg and str(tmp_path / INCEPTION_FILE) in msg and INCEPTION_ENV in msg
    assert "https://" in msg and "\n" not in msg
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(UserError, match=r"nope\.pt not found"):
        make_extractor("inception")
    with pytest.raises(UserError, match=r"other\.pt not found"):
        make_extractor("inception", inception_path=tmp_path / "other.pt")
    with pytest.raises(UserError, match="feature extractor 'vgg'"):
        make_extractor("vgg")


class _FakeLayers(torch.nn.Module):
    """Stands in for Inception's `layers`: [N, 3, 299, 299] -> [N, 2048, 1, 1], sensitive to every region."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 8 * 8, 2048)

    def forward(self, x):
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)).reshape(-1, 2048, 1, 1)


class _FakeInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _FakeLayers()

    def forward(self, x):
        return self.layers(x)


def pil_float_bicubic_299(img: np.ndarray) -> np.ndarray:
    """clean-fid's "clean" resize written from its description: each channel as a float PIL image, bicubic."""
    chans = [np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
             for c in range(3)]
    return np.stack(chans, axis=-1).clip(0, 255)


def test_inception_pipeline_resizes_like_clean_fid_and_reads_the_env_path(monkeypatch, tmp_path):
    torch.manual_seed(0)
    fake = _FakeInception().eval()
    path = tmp_path / "weights.pt"
    torch.jit.script(fake).save(str(path))
    monkeypatch.setenv(INCEPTION_ENV, str(path))
    ex = make_extractor("inception")
    assert ex.metric_names == ("fid", "kid") and ex.comparable is True
    imgs = flat_blobs(3, 5, res=32)
    feats = ex(torch.from_numpy(imgs))
    x = torch.from_numpy(np.stack([pil_float_bicubic_299(i) for i in imgs])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        expected = fake.layers((x - 128) / 128).reshape(3, 2048).double().numpy()
    assert feats.shape == (3, 2048) and np.allclose(feats, expected, atol=1e-4)
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="garbage.pt: not clean-fid's TorchScript"):
        make_extractor("inception", inception_path=bad)


# --- reference features and their cache ----------------------------------------------------------------------

class CountingExtractor(RandCNNExtractor):
    calls = 0

    def __call__(self, images):
        CountingExtractor.calls += 1
        return super().__call__(images)


def test_reference_cache_hit_miss_and_invalidation(tmp_path, caplog):
    data, cache = tmp_path / "data", tmp_path / "cache"
    names = write_pngs(data, flat_blobs(10, 0, res=16))
    ex = CountingExtractor(batch_size=4)
    caplog.set_level(logging.INFO, logger="stylegan_blend.evaluation")

    first = reference_features(ex, data, 16, cache_dir=cache)
    assert first.shape == (10, ex.dim) and CountingExtractor.calls == 3 and "cache miss" in caplog.text
    caplog.clear()
    second = reference_features(ex, data, 16, cache_dir=cache)
    assert np.array_equal(first, second) and CountingExtractor.calls == 3 and "cache hit" in caplog.text
    direct = ex(torch.from_numpy(np.stack([np.asarray(Image.open(data / n)) for n in names])))
    assert np.allclose(first, direct, atol=1e-12)

    caplog.clear()  # another resolution is another entry
    reference_features(ex, data, 8, cache_dir=cache)
    assert "cache miss" in caplog.text

    caplog.clear()  # one pixel of one file changes -> recomputed
    img = np.asarray(Image.open(data / names[4])).copy()
    img[0, 0] ^= 1
    Image.fromarray(img).save(data / names[4])
    changed = reference_features(ex, data, 16, cache_dir=cache)
    assert "cache miss" in caplog.text and not np.array_equal(changed, first)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_pngs(data, flat_blobs(3, 0, res=8))
    monkeypatch.setenv("STYLEGAN_BLEND_CACHE", str(tmp_path / "envcache"))
    reference_features(RandCNNExtractor(), data, 8)
    assert len(list((tmp_path / "envcache").glob("randcnn_8px_*.npz"))) == 1


def test_manifest_split_and_fallbacks(tmp_path):
    data = tmp_path / "data"
    names = write_pngs(data / "images", flat_blobs(5, 0, res=8))
    entries = [dict(file=f"images/{n}", split="val" if i == 2 else "train", sha256=str(i), source=n, time_s=None)
               for i, n in enumerate(names)]
    (data / "manifest.json").write_text(json.dumps(dict(format="stylegan_blend.dataset", version=1, settings={},
                                                        val_fraction=0.2, seed=0, images=entries)))
    assert [p.name for p in list_images(data, "train")] == [n for i, n in enumerate(names) if i != 2]
    assert [p.name for p in list_images(data, "val")] == [names[2]]
    assert len(list_images(data, "all")) == 5
    (data / "images" / names[0]).unlink()
    with pytest.raises(UserError, match="listed in manifest.json but missing"):
        list_images(data, "train")
    (data / "manifest.json").unlink()
    assert len(list_images(data, "train")) == 4  # no manifest: every image, as the datamodule does
    with pytest.raises(UserError, match="not found"):
        list_images(tmp_path / "missing")
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(data / "images" / "wide.png")
    with pytest.raises(UserError, match="wide.png: 6x8 is not square"):
        reference_features(RandCNNExtractor(), data, 8, cache_dir=tmp_path / "c")


# --- scoring a generator -------------------------------------------------------------------------------------

def tiny_G(seed=0) -> Generator:
    torch.manual_seed(seed)
    return Generator(**TINY).eval()


def test_evaluate_generator_scores_fixed_seed_images(tmp_path):
    G = tiny_G()
    ex = RandCNNExtractor(batch_size=5)
    ref = ex(torch.from_numpy(flat_blobs(20, 0)))
    src = ex(torch.from_numpy(noisy_textures(20, 0)))
    out = evaluate_generator(G, ref, ex, num_gen=12, seeds_start=3, batch_size=4, source_ref_features=src)
    by_hand = ex(generate_images(G, range(3, 15), noise_mode="const"))
    assert out == {**score(by_hand, ref, ex), **score(by_hand, src, ex, prefix="src_")}
    assert set(out) == {p + m + "_randcnn" for p in ("", "src_") for m in ("fd", "kd", "density", "coverage")}


def test_metrics_csv_appends_and_checks_header(tmp_path):
    path = tmp_path / "metrics.csv"
    append_metrics_rows(path, [dict(epoch=1, swap_res=16, direction="low_base", metric="kd_randcnn", value=0.1)])
    append_metrics_rows(path, [dict(epoch=2, swap_res="none", metric="fd_randcnn", value=3)])
    rows = list(csv.reader(open(path)))
    assert rows[0] == list(METRICS_CSV_COLUMNS) and len(rows) == 3 and rows[2][2] == "none" and rows[1][1] == ""
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="header"):
        append_metrics_rows(path, [dict(metric="x")])


# --- CLI -----------------------------------------------------------------------------------------------------

@pytest.fixture
def network_file(tmp_path):
    path = tmp_path / "net.pt"
    meta = dict(epoch=3, kimg=1.5, blend=dict(low="a", high="b", swap_res=8, width=0.0, mapping="low"))
    save_network(path, tiny_G(), meta=meta)
    return path


def test_evaluate_command_prints_table_and_appends_csv(tmp_path, network_file, capsys):
    data, src = tmp_path / "data", tmp_path / "src"
    write_pngs(data, flat_blobs(12, 0))
    write_pngs(src, noisy_textures(12, 0))
    out_csv = tmp_path / "m.csv"
    argv = ["evaluate", "--network", str(network_file), "--data", str(data), "--extractor", "randcnn",
            "--num-gen", "8", "--cache-dir", str(tmp_path / "cache"), "--source-data", str(src), "--csv", str(out_csv)]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for name in ("fd_randcnn", "kd_randcnn", "src_fd_randcnn", "src_kd_randcnn", "not comparable"):
        assert name in out
    assert main(argv[:-2] + ["--csv", str(out_csv), "--metrics", "kid"]) == 0
    rows = list(csv.DictReader(open(out_csv)))
    assert list(rows[0]) == list(METRICS_CSV_COLUMNS)
    assert [r["metric"] for r in rows] == ["fd_randcnn", "kd_randcnn", "src_fd_randcnn", "src_kd_randcnn",
                                           "kd_randcnn", "src_kd_randcnn"]
    r = rows[0]
    assert (r["epoch"], r["kimg"], r["swap_res"], r["n_gen"], r["n_ref"], r["extractor"]) == \
        ("3", "1.5", "8", "8", "12", "randcnn")
    assert rows[4]["value"] == rows[1]["value"]  # fixed seeds + cached reference -> same number


@pytest.mark.parametrize("extra, message", [
    (["--extractor", "inception"], INCEPTION_FILE),
    (["--inception-path", "/nonexistent/inception.pt"], "/nonexistent/inception.pt not found"),
    (["--extractor", "randcnn", "--metrics", "fid,lpips"], "metric 'lpips'"),
    (["--extractor", "randcnn", "--data", "/nonexistent/dir"], "/nonexistent/dir not found"),
])
def test_evaluate_command_errors_are_one_line(tmp_path, network_file, monkeypatch, capsys, extra, message):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setattr(extractors_mod, "CLEANFID_DIR", tmp_path)
    data = tmp_path / "data"
    write_pngs(data, flat_blobs(4, 0))
    rc = main(["evaluate", "--network", str(network_file), "--data", str(data), "--num-gen", "4",
               "--cache-dir", str(tmp_path / "cache")] + extra)
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_evaluate_default_is_the_training_proxy_without_inception_weights(tmp_path, network_file, monkeypatch,
                                                                          capsys):
    """Seen 8: `evaluate` defaulted to Inception (failing offline) while training scores with the proxy."""
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setattr(extractors_mod, "CLEANFID_DIR", tmp_path / "no-weights")
    data = tmp_path / "data"
    write_pngs(data, flat_blobs(4, 0))
    rc = main(["evaluate", "--network", str(network_file), "--data", str(data), "--num-gen", "4",
               "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert rc == 0 and "randcnn proxy" in out and "kd_randcnn" in out
