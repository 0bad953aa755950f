"""The paired bootstrap behind every pick, against hand cases: resampled KID/FD against direct recomputation on
resampled features, stability of cells that differ by a constant (paired) or only by chance, the seeds needed
to separate two cells against the textbook standard error, and the per-seed files a run keeps."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stylegan_blend.run.tables import parse_metric_row
from stylegan_blend.selection import select_rows
from stylegan_blend.selection.uncertainty import seed_counts


def poly(a, b):  # k(x, y) = (x·y / d + 1)³, written out again (Bińkowski et al. 2018)
    return (a @ b.T / a.shape[1] + 1.0) ** 3


# --- style statistics on resampled seeds ----------------------------------------------------------------------

def test_kid_from_resampled_kernel_matrices_equals_kid_on_resampled_features():
    from stylegan_blend.evaluation.distances import kernel_moments, kid_resampled

    rng = np.random.default_rng(0)
    gen, ref = rng.normal(size=(12, 5)), rng.normal(0.3, 1.0, size=(9, 5))
    counts = seed_counts(12, 12, 4, seed=1)
    rowmean, within = kernel_moments(gen, ref)
    got = kid_resampled(gen, rowmean, within, counts)
    for b, c in enumerate(counts):
        idx = np.repeat(np.arange(12), c)  # the resampled feature rows
        x = gen[idx]
        # within-set term over pairs of draws that are different seeds (copies of one seed are not a pair)
        pairs = [(i, j) for i in range(len(idx)) for j in range(len(idx)) if idx[i] != idx[j]]
        kxx = np.mean([poly(x[i:i + 1], x[j:j + 1])[0, 0] for i, j in pairs])
        kyy = np.mean([poly(ref[i:i + 1], ref[j:j + 1])[0, 0] for i in range(9) for j in range(9) if i != j])
        kxy = poly(x, ref).mean()
        assert got[b] == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_kid_without_resampling_is_the_full_set_unbiased_mmd():
    from stylegan_blend.evaluation import kernel_distance
    from stylegan_blend.evaluation.distances import kernel_moments, kid_resampled

    rng = np.random.default_rng(1)
    gen, ref = rng.normal(size=(30, 6)), rng.normal(0.5, 1.0, size=(30, 6))
    rowmean, within = kernel_moments(gen, ref, chunk=7)  # chunked sums agree with the whole
    # equal set sizes: every KID subset is the whole set, so the subset average is the full-set estimate
    assert kid_resampled(gen, rowmean, within, np.ones((1, 30)))[0] == pytest.approx(
        kernel_distance(gen, ref, num_subsets=3)[0], rel=1e-10)


def test_fd_on_resampled_counts_equals_fd_on_resampled_rows():
    from stylegan_blend.evaluation import frechet_distance
    from stylegan_blend.evaluation.distances import frechet_resampled

    rng = np.random.default_rng(2)
    gen, ref = rng.normal(size=(20, 3)), rng.normal(1.0, 2.0, size=(40, 3))
    mu_r, sigma_r = ref.mean(0), np.cov(ref, rowvar=False)
    counts = seed_counts(20, 10, 3, seed=0)
    got = frechet_resampled(gen, counts, mu_r, sigma_r)
    for b, c in enumerate(counts):
        x = np.repeat(gen, c, axis=0)
        assert got[b] == pytest.approx(frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu_r, sigma_r), rel=1e-9)


def test_seed_counts_are_stratified_and_the_same_for_every_cell():
    counts = seed_counts(10, 4, 50, seed=3)
    assert counts.shape == (50, 10) and (counts[:, :4].sum(1) == 4).all() and (counts[:, 4:].sum(1) == 6).all()
    assert seed_counts(10, 4, 50, seed=3) is counts or np.array_equal(seed_counts(10, 4, 50, seed=3), counts)
    assert not np.array_equal(seed_counts(10, 4, 50, seed=4), counts)


# --- the rule over resamples ----------------------------------------------------------------------------------

class FakeSeeds:
    """Per-seed values given directly: a cell's style is the mean of per-seed style contributions (what KID and
    FD are not, but the pairing and the rule do not care), its identity the mean of per-seed losses."""

    def __init__(self, per_seed: dict):
        self.per_seed = per_seed  # (epoch, cell) -> (style per seed [n], identity per seed [n_id])

    def sizes(self, epoch, cell, identity_metric):
        s, i = self.per_seed[(epoch, cell)]
        return len(s), len(i)

    def resample(self, epoch, cell, style_metric, identity_metric, counts):
        s, i = self.per_seed[(epoch, cell)]
        return counts @ s / len(s), counts[:, :len(i)] @ i / len(i)


def rows_for(per_seed: dict, extra: dict | None = None) -> list:
    rows = []
    for (epoch, cell), (s, i) in per_seed.items():
        swap = cell[4:].split("_")[0]
        for metric, value in (("kd_randcnn", s.mean()), ("idnorm_proxy", i.mean())):
            rows.append(parse_metric_row(dict(epoch=epoch, kimg=epoch, swap_res=swap, direction="low_base",
                                              metric=metric, value=value, extractor="x"), "test"))
    return rows


def test_cells_differing_by_a_constant_are_told_apart_in_every_paired_resample():
    rng = np.random.default_rng(0)
    style = rng.normal(1.0, 0.3, 100)
    loss = rng.normal(0.5, 0.2, 100)  # per-seed spread 0.2: unpaired, a 0.01 shift is within the noise
    cells = {(1, "swap8_low_base"): (style, loss), (1, "swap16_low_base"): (style, loss + 0.01)}
    sel = select_rows(rows_for(cells), "weighted=0", seeds=FakeSeeds(cells))
    u = sel.bootstrap.overall
    assert sel.overall.point.cell == "swap8_low_base" and u.stability == 1.0 and u.advice() == ""
    assert sel.summary() == "e1·s8 (stable 100 %; also e1·s16)"  # CIs overlap: the shift is below the spread
    with_draws = select_rows(rows_for(cells), "weighted=0", seeds=FakeSeeds(cells), bootstrap=50, bootstrap_seed=1)
    assert with_draws.bootstrap.resamples == 50 and with_draws.bootstrap.overall.stability == 1.0


def test_cells_equal_but_for_chance_split_the_resamples():
    rng = np.random.default_rng(1)
    style = np.ones(200)
    loss = rng.normal(0.5, 0.2, 200)
    # the same losses on other seeds: equal means, paired differences centred on 0
    cells = {(3, "swap8_low_base"): (style, loss), (3, "swap16_low_base"): (style, rng.permutation(loss))}
    sel = select_rows(rows_for(cells), "weighted=0", seeds=FakeSeeds(cells), bootstrap=400)
    u = sel.bootstrap.overall
    # exact tie on the point estimate: fewest fine-tuned layers (swap16) is chosen, by the declared tie-break
    assert sel.overall.point.cell == "swap16_low_base"
    assert 0.4 < u.stability < 0.6 and [p.cell for p in u.also] == ["swap8_low_base"]
    ci = sel.ci(sel.overall.point)[1]
    se = loss.std(ddof=1) / math.sqrt(200)  # the textbook standard error of a mean
    assert ci[1] - ci[0] == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_seeds_to_separate_follow_the_standard_error_of_the_difference():
    rng = np.random.default_rng(5)
    n = 100
    loss = rng.normal(0.5, 0.2, n)
    style = np.ones(n)
    d1, d2 = rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)
    d1 += 0.001 - d1.mean()  # exact means: A beats B by 0.001 and C by 0.0015, within a standard error (0.005)
    d2 += 0.0015 - d2.mean()
    cells = {(1, "swap4_low_base"): (style, loss), (1, "swap8_low_base"): (style, loss + d1),
             (1, "swap16_low_base"): (style, loss + d2)}
    sel = select_rows(rows_for(cells), "weighted=0", seeds=FakeSeeds(cells), bootstrap=400)
    u = sel.bootstrap.overall
    assert sel.overall.point.cell == "swap4_low_base" and u.stability < 0.5
    d = d1 if u.runner_up.cell == "swap8_low_base" else d2
    # SE of the mean paired difference ∝ 1/√n: 95 % separation needs n' = (1.96 · sd / mean)² seeds
    want = (1.96 * d.std(ddof=1) / d.mean()) ** 2
    assert u.seeds_to_separate == pytest.approx(want, rel=0.25)
    assert f"about {u.seeds_to_separate} seeds (now {n}" in u.advice() and u.runner_up.label in u.advice()


def test_no_bootstrap_without_per_seed_data_says_why():
    cells = {(1, "swap8_low_base"): (np.ones(4), np.ones(4))}
    sel = select_rows(rows_for(cells), "knee")
    assert sel.bootstrap is None and "stability unknown" in sel.summary()


# --- per-seed files of a run ----------------------------------------------------------------------------------

def test_per_seed_files_round_trip_and_stale_files_are_refused(tmp_path):
    from stylegan_blend.evaluation import kernel_distance
    from stylegan_blend.evaluation.per_seed import RunSeedData, StyleReference, write_cell

    rng = np.random.default_rng(0)
    ref = StyleReference(rng.normal(size=(16, 4)), "randcnn", "train")
    ref.write(tmp_path)
    feats = {c: rng.normal(0.2 * i, 1, size=(16, 4)) for i, c in enumerate(("swap4_low_base", "swap8_low_base"))}
    losses = {c: rng.uniform(0, 1, 8) for c in feats}
    rows = []
    for c in feats:
        write_cell(tmp_path, 2, c, feats[c], ref, {"idloss_proxy": losses[c]}, None, "abc", "proxy")
        kid = kernel_distance(feats[c], ref.features, num_subsets=2)[0]  # equal sizes: the full-set estimate
        for metric, value, ext in (("kd_randcnn", kid, "randcnn"), ("idloss_proxy", losses[c].mean(), "proxy"),
                                   ("idnorm_proxy", losses[c].mean() / 0.8, "proxy"), ("idbase_proxy", 0.8, "proxy")):
            rows.append(parse_metric_row(dict(epoch=2, kimg=1, swap_res=c[4], direction="low_base", metric=metric,
                                              value=value, extractor=ext, network_sha256="abc"), "test"))
    seeds = RunSeedData(tmp_path, rows)
    assert seeds.sizes(2, "swap4_low_base", "idnorm_proxy") == (16, 8)
    ones = np.ones((1, 16))
    for c in feats:
        style, ident = seeds.resample(2, c, "kd_randcnn", "idnorm_proxy", ones)
        assert style[0] == pytest.approx(kernel_distance(feats[c], ref.features, num_subsets=2)[0], rel=1e-5)
        assert ident[0] == pytest.approx(losses[c].mean() / 0.8)  # normalised by the run's idbase row
        assert seeds.resample(2, c, "kd_randcnn", "idloss_proxy", ones)[1][0] == pytest.approx(losses[c].mean())
    meta = json.loads(str(np.load(tmp_path / "scores" / "epoch=0002" / "swap4_low_base.npz")["meta"]))
    assert meta == dict(epoch=2, cell="swap4_low_base", network_sha256="abc", style_extractor="randcnn",
                        identity_extractor="proxy", reference=ref.id, reference_split="train")
    # rows re-scored from another network file: the kept per-seed data no longer belongs to them
    stale = [parse_metric_row(dict(epoch=2, kimg=1, swap_res=r.swap_res, direction="low_base", metric=r.metric,
                                   value=r.value, extractor=r.extractor, network_sha256="def"), "t") for r in rows]
    assert "another network" in RunSeedData(tmp_path, stale).resample(2, "swap4_low_base", "kd_randcnn",
                                                                       "idloss_proxy", ones)
    # the style reference changed (another split): refused too
    StyleReference(rng.normal(size=(20, 4)), "randcnn", "val").write(tmp_path)
    assert "reference" in RunSeedData(tmp_path, rows).resample(2, "swap4_low_base", "kd_randcnn", "idloss_proxy", ones)


def test_best_of_runs_uses_the_rule_and_the_paired_bootstrap():
    from stylegan_blend.selection.run import select_across

    rng = np.random.default_rng(3)
    style, loss = rng.normal(1.0, 0.3, 100), rng.normal(0.5, 0.2, 100)
    # run A's only cell is run B's shifted by a constant on both axes: B's pick dominates in every resample
    a = {(2, "swap8_low_base"): (style + 0.01, loss + 0.01)}
    b = {(2, "swap8_low_base"): (style, loss)}
    sels = [select_rows(rows_for(c), "knee", seeds=FakeSeeds(c)) for c in (a, b)]
    across = select_across(sels, "knee")
    assert across.winner == 1 and across.stability == 1.0 and across.also == (0,)
    assert across.text(["A", "B"]) == "B (stable 100 %; also A)"
    # a run whose pick is far better on style but much worse on identity is a trade-off, not a loser
    c = {(2, "swap8_low_base"): (style - 0.5, loss + 0.3)}
    sels.append(select_rows(rows_for(c), "knee", seeds=FakeSeeds(c)))
    assert select_across(sels, "knee").winner in (1, 2)  # B and C: both on the runs' front
    assert select_across(sels, "min_identity=0.4").winner == 1  # C's identity score (~0.2) fails the bar
