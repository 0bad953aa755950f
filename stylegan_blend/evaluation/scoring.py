"""Score a generator: fixed-seed samples -> features -> Fréchet and kernel distances to reference features."""
from __future__ import annotations

import sys

import numpy as np

from ..errors import UserError
from .distances import feature_stats, frechet_distance, kernel_distance
from .extractors import FeatureExtractor


def score(gen_features: np.ndarray, ref_features: np.ndarray, extractor: FeatureExtractor,
          prefix: str = "") -> dict[str, float]:
    """{fid, kid} (or {fd_<x>, kd_<x>} for a proxy extractor). KID comes with FID because with a few hundred
    reals FID is strongly biased upwards while KID is unbiased."""
    fd_name, kd_name = extractor.metric_names
    if len(ref_features) < min(len(gen_features), 50):
        print(f"warning: {prefix}{fd_name}/{kd_name} from only {len(ref_features)} reference images against "
              f"{len(gen_features)} generated: noisy and biased, compare such scores only with each other",
              file=sys.stderr)
    mu_g, sigma_g = feature_stats(gen_features)
    mu_r, sigma_r = feature_stats(ref_features)
    kid, _ = kernel_distance(gen_features, ref_features)
    return {prefix + fd_name: frechet_distance(mu_g, sigma_g, mu_r, sigma_r), prefix + kd_name: kid}


def generated_features(G, extractor: FeatureExtractor, num_gen: int, seeds_start: int = 0, batch_size: int = 16,
                       truncation_psi: float = 1.0, noise_mode: str = "const", device="cpu") -> np.ndarray:
    """Features of G's images for seeds seeds_start ... seeds_start + num_gen - 1 (NVIDIA's seed convention),
    generated and featurised chunk by chunk so memory stays flat."""
    from ..sampling import generate_images

    if num_gen < 2:
        raise UserError(f"num_gen {num_gen}: expected at least 2 generated images")
    seeds = list(range(seeds_start, seeds_start + num_gen))
    chunk = max(batch_size, extractor.batch_size)
    feats = [extractor(generate_images(G, seeds[i:i + chunk], truncation_psi=truncation_psi, noise_mode=noise_mode,
                                       batch_size=batch_size, device=device))
             for i in range(0, num_gen, chunk)]
    return np.concatenate(feats)


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
