"""Score a generator: fixed-seed samples -> features -> Fréchet and kernel distances to reference features."""
from __future__ import annotations

import logging
import sys

import numpy as np

from ..errors import UserError
from ..networks.sampling import generate_images
from .distances import density_coverage, feature_stats, frechet_distance, kernel_distance
from .extractors import FeatureExtractor
from .identity import identity_scores

log = logging.getLogger(__name__)
DENSITY_K = 5  # Naeem et al.'s k for density/coverage
_warned: set[str] = set()  # each small-N warning once per process, not once per cell


def score(gen_features: np.ndarray, ref_features: np.ndarray, extractor: FeatureExtractor,
          prefix: str = "") -> dict[str, float]:
    """{fid, kid, density, coverage} (or {fd_<x>, kd_<x>, density_<x>, coverage_<x>} for a proxy extractor).
    KID comes with FID because with a few hundred reals FID is strongly biased upwards while KID is
    unbiased; its subset size follows the smaller set. FD warns when a set has fewer samples than feature
    dimensions (its covariance is then singular: compare FD only at equal N)."""
    fd_name, kd_name = extractor.metric_names
    n, dim = min(len(gen_features), len(ref_features)), gen_features.shape[1]
    message = (f"{prefix}{fd_name}: {n} samples < {dim} feature dimensions, the covariance is singular and the "
               f"Fréchet distance is biased upwards; compare it only at equal N, or use {prefix}{kd_name}")
    if n < dim and message not in _warned:
        _warned.add(message)
        log.warning(message)
    few = (f"warning: {prefix}{fd_name}/{kd_name} from only {len(ref_features)} reference images against "
           f"{len(gen_features)} generated: noisy and biased, compare such scores only with each other")
    if len(ref_features) < min(len(gen_features), 50) and few not in _warned:
        _warned.add(few)
        print(few, file=sys.stderr)
    mu_g, sigma_g = feature_stats(gen_features)
    mu_r, sigma_r = feature_stats(ref_features)
    kid, _ = kernel_distance(gen_features, ref_features)
    tail = "" if extractor.comparable else f"_{extractor.name}"
    out = {prefix + fd_name: frechet_distance(mu_g, sigma_g, mu_r, sigma_r), prefix + kd_name: kid}
    if len(ref_features) > DENSITY_K:  # the k-NN balls need k + 1 reference samples; with fewer, FD/KD only
        density, coverage = density_coverage(ref_features, gen_features, k=DENSITY_K)
        out.update({f"{prefix}density{tail}": density, f"{prefix}coverage{tail}": coverage})
    return out


def _image_chunks(G, num_gen: int, seeds_start: int, batch_size: int, chunk: int, truncation_psi: float,
                  noise_mode: str, device):
    if num_gen < 2:
        raise UserError(f"num_gen {num_gen}: expected at least 2 generated images")
    seeds = list(range(seeds_start, seeds_start + num_gen))
    for i in range(0, num_gen, chunk):
        yield generate_images(G, seeds[i:i + chunk], truncation_psi=truncation_psi, noise_mode=noise_mode,
                              batch_size=batch_size, device=device)


def generated_features(G, extractor: FeatureExtractor, num_gen: int, seeds_start: int = 0, batch_size: int = 16,
                       truncation_psi: float = 1.0, noise_mode: str = "const", device="cpu") -> np.ndarray:
    """Features of G's images for seeds seeds_start ... seeds_start + num_gen - 1 (NVIDIA's seed convention),
    generated and featurised chunk by chunk so memory stays flat."""
    chunk = max(batch_size, extractor.batch_size)
    return np.concatenate([extractor(imgs) for imgs in _image_chunks(G, num_gen, seeds_start, batch_size, chunk,
                                                                    truncation_psi, noise_mode, device)])


def identity_features(G, identity, num: int, batch_size: int = 16, device="cpu") -> dict:
    """The identity extractor's features of G's images for seeds 0 ... num - 1 (the pairing key)."""
    parts = [identity.features(imgs) for imgs in _image_chunks(G, num, 0, batch_size, max(batch_size, 32), 1.0,
                                                                "const", device)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def evaluate_cell(G, ref_features: np.ndarray, extractor: FeatureExtractor, num_gen: int, batch_size: int = 16,
                  device="cpu", source_ref_features: np.ndarray | None = None, identity=None,
                  base_identity: dict | None = None, num_identity: int = 0, keep: dict | None = None):
    """Style scores {metric: value} (as `evaluate_generator`) and identity scores {metric: (value, n)} of one
    cell from one pass over seeds 0 ... num_gen - 1: the first `num_identity` images are paired by seed with
    `base_identity` (the base model's identity features of the same seeds). `keep` (a dict) receives what the
    bootstrap over seeds needs: `style_features` and the per-seed identity losses `identity`."""
    feats, id_parts = [], []
    num_identity = min(num_identity, num_gen) if identity is not None else 0
    chunk = max(batch_size, extractor.batch_size)
    for i, imgs in enumerate(_image_chunks(G, num_gen, 0, batch_size, chunk, 1.0, "const", device)):
        feats.append(extractor(imgs))
        if i * chunk < num_identity:
            id_parts.append(identity.features(imgs[:num_identity - i * chunk]))
    gen = np.concatenate(feats)
    scores = score(gen, ref_features, extractor)
    if source_ref_features is not None:
        scores.update(score(gen, source_ref_features, extractor, prefix="src_"))
    ident = {}
    if id_parts and base_identity is not None:
        cell = {k: np.concatenate([p[k] for p in id_parts]) for k in id_parts[0]}
        base = {k: v[:num_identity] for k, v in base_identity.items()}
        ident = identity_scores(identity, base, cell)
        if keep is not None:
            keep["identity"] = identity.per_seed(base, cell)
    if keep is not None:
        keep["style_features"] = gen
    return scores, ident


def evaluate_generator(G, ref_features: np.ndarray, extractor: FeatureExtractor, num_gen: int, seeds_start: int = 0,
                       batch_size: int = 16, truncation_psi: float = 1.0, device="cpu",
                       source_ref_features: np.ndarray | None = None) -> dict[str, float]:
    """Target-domain scores, plus `src_`-prefixed scores against `source_ref_features` when given
    (how much of the source domain a blend keeps); both from the same generated images."""
    gen = generated_features(G, extractor, num_gen, seeds_start, batch_size, truncation_psi, device=device)
    scores = score(gen, ref_features, extractor)
    if source_ref_features is not None:
        scores.update(score(gen, source_ref_features, extractor, prefix="src_"))
    return scores
