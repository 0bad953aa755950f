"""The `selection:` settings and their defaults, stated once (Hydra's schema for the group, registered by
app.config): which rule makes a blend cell "best", on which axes, and how its stability is measured."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SelectionConfig:
    rule: str = "knee"  # knee | min_identity (param: identity score bar) | weighted (param: style weight α)
    param: float | None = None
    style_metric: str | None = None  # default: kid, else fid, else the proxy kd_*
    identity_metric: str | None = (
        None  # default: idnorm_ (idloss / another person's) of dlib > facenet > ..., else idloss_*
    )
    bootstrap: int = 200  # paired resamples over seeds behind every pick's stability (0: none)
    bootstrap_seed: int = 0  # the same resamples on every run of the selection


DEFAULT_RULE = SelectionConfig.rule
