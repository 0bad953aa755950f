"""Fréchet distance (FID's formula), the unbiased kernel distance (KID) and density/coverage, on feature arrays."""
from __future__ import annotations

import numpy as np

from ..errors import UserError


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows = samples), the Gaussian that FID fits to a feature set."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise UserError(f"features of shape {features.shape}: expected at least 2 samples to fit a Gaussian")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^½) (Heusel et al. 2017, eq. 6).

    Tr((S1 S2)^½) is taken as the sum of square roots of the eigenvalues of S1^½ S2 S1^½ (similar to S1 S2,
    symmetric PSD), from two `eigh` calls. clean-fid's scipy `sqrtm` gives the same number but takes seconds
    per call at a few hundred dimensions, and with fewer samples than dimensions (S singular, the usual case
    here) needs a diagonal fudge; the symmetric route needs neither."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"frechet_distance: shapes {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape} differ")
    evals, evecs = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt1 = (evecs * np.sqrt(evals.clip(min=0))) @ evecs.T
    middle = sqrt1 @ sigma2 @ sqrt1
    tr_covmean = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


# Up to this many samples in total, the kernel matrices of all samples are computed once (<= 134 MB) and
# subsets index into them: ~100x cheaper than three matrix products per subset.
GRAM_LIMIT = 4096


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kernel_distance(f1, f2, num_subsets: int = 100, max_subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³ (Bińkowski et al. 2018),
    averaged over random subsets of size m = min(n1, n2, max_subset_size) drawn without replacement.
    Returns (mean, std over subsets). Unlike FID it is unbiased, so it stays honest with a few hundred reals.
    Same estimator as clean-fid's `kernel_distance`, but seeded, with the spread, and with shared kernel
    matrices for small sets."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"kernel_distance: feature shapes {f1.shape} and {f2.shape} do not match")
    m = kid_subset_size(len(f1), len(f2), max_subset_size)
    if m < 2:
        raise UserError(f"KID needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    if len(f1) + len(f2) <= GRAM_LIMIT:
        k11, k22, k12 = _poly_kernel(f1, f1), _poly_kernel(f2, f2), _poly_kernel(f1, f2)

        def blocks(i, j):
            return k11[np.ix_(i, i)], k22[np.ix_(j, j)], k12[np.ix_(i, j)]
    else:
        def blocks(i, j):
            x, y = f1[i], f2[j]
            return _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        kxx, kyy, kxy = blocks(rng.choice(len(f1), m, replace=False), rng.choice(len(f2), m, replace=False))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[s] = within - 2 * kxy.mean()
    return float(values.mean()), float(values.std())


def kid_subset_size(n1: int, n2: int, max_subset_size: int = 1000) -> int:
    """KID's subset size: the smaller set's size, capped (1000 as in clean-fid), so 300 images use 300."""
    return min(int(n1), int(n2), int(max_subset_size))


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of `fake` against `real`: each real sample's ball is open, of
    radius the distance to its k-th nearest real neighbour; density = mean number of balls a fake falls in, / k
    (≈1 when the sets match, not capped, so it rewards fakes piling up in dense regions); coverage = share of
    real balls holding at least one fake (mode coverage, in [0, 1]). Both higher is better.

    Inside means strictly closer than the radius, as in the authors' `prdc` package: then fake == real gives
    density exactly 1 (each ball holds its own centre and the k − 1 neighbours strictly inside it), where `<=`
    would count the k-th neighbour too and give (k + 1) / k. Ties are this study's case: a memorised training
    image generated again sits at distance 0 from its real twin."""
    from scipy.spatial.distance import cdist

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) <= k:
        raise UserError(f"density/coverage with k={k} needs more than {k} reference samples, got {len(real)}")
    radii = np.sort(cdist(real, real), axis=1)[:, k]  # column 0 is the sample itself
    inside = cdist(fake, real) < radii[None, :]  # [fake, real]; strict, as prdc
    return float(inside.sum() / (k * len(fake))), float(inside.any(axis=0).mean())


# ------------------------------------------------------------------ bootstrap over generated samples
# A bootstrap resample of the generated seeds is given as counts c (how often each seed is drawn; rows of a
# [B, n] matrix summing to n); the reference set stays fixed. Both statistics are computed from quantities that
# do not change between resamples, so B resamples cost a few matrix products, not B re-extractions.

def kernel_moments(gen, ref, chunk: int = 2048) -> tuple[np.ndarray, float]:
    """What KID needs from the reference set, for the bootstrap: per generated sample the mean kernel value
    against every reference sample [n_gen], and the reference set's own mean off-diagonal kernel value."""
    gen, ref = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    rowmean = np.concatenate([_poly_kernel(gen[i:i + chunk], ref).mean(axis=1) for i in range(0, len(gen), chunk)])
    total = trace = 0.0
    for i in range(0, len(ref), chunk):
        block = _poly_kernel(ref[i:i + chunk], ref)
        total += block.sum()
        trace += np.einsum("ii->", block[:, i:i + chunk])
    n = len(ref)
    return rowmean, float((total - trace) / (n * (n - 1)))


def kid_resampled(gen, ref_rowmean, ref_within: float, counts) -> np.ndarray:
    """Unbiased MMD² (KID's estimator on the full sets) of each resample of `gen` against the fixed reference,
    from the generated samples' kernel matrix: [B]. Pairs of draws that are copies of one seed are left out of
    the within-set term (as a U-statistic on distinct samples), so duplicates are not mistaken for collapse."""
    gen = np.asarray(gen, np.float64)
    counts = np.atleast_2d(np.asarray(counts, np.float64))
    n = counts.sum(axis=1)
    gram = _poly_kernel(gen, gen)
    self_pairs = (counts ** 2) @ np.diag(gram)
    within = (np.einsum("bi,ij,bj->b", counts, gram, counts) - self_pairs) / (n ** 2 - (counts ** 2).sum(axis=1))
    return within + ref_within - 2 * (counts @ np.asarray(ref_rowmean, np.float64)) / n


def frechet_resampled(gen, counts, mu_ref, sigma_ref) -> np.ndarray:
    """Fréchet distance of each resample of `gen` (weighted mean and covariance) to fixed reference stats: [B]."""
    gen = np.asarray(gen, np.float64)
    counts = np.atleast_2d(np.asarray(counts, np.float64))
    out = np.empty(len(counts))
    for b, c in enumerate(counts):
        n = c.sum()
        mu = c @ gen / n
        centred = gen - mu
        sigma = (centred.T * c) @ centred / (n - 1)
        out[b] = frechet_distance(mu, sigma, mu_ref, sigma_ref)
    return out
