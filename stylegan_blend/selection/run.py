"""Selection over a run's metrics.csv rows: which metrics form the two axes, per-epoch and overall choices."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UserError
from .rules import Choice, Point, Rule, parse_rule, points_from_rows, select_run

IDENTITY_ORDER = ("idloss_facenet", "idloss_lpips", "idloss_proxy")


def default_identity_metric(names: Iterable[str]) -> str | None:
    """Face-embedding loss if scored, else LPIPS, else the offline proxy; None when the run has none."""
    names = set(names)
    return next((n for n in IDENTITY_ORDER if n in names), None)


@dataclass
class Selection:
    rule: Rule
    style_metric: str
    identity_metric: str
    points: list[Point]
    per_epoch: list[Choice]
    overall: Choice
    style_scale: float

    def front_cells(self) -> set[tuple[int, str]]:
        """(epoch, cell) of the overall front and of every per-epoch front."""
        return {(p.epoch, p.cell) for c in [self.overall, *self.per_epoch] for p in c.front}

    def header(self) -> str:
        return (f"selection rule {self.rule}: {self.rule.describe()}; axes: style = {self.style_metric}, "
                f"identity = {self.identity_metric}")


def saved_selection(run_dir) -> dict | None:
    """The `selection:` node of a run's .hydra/config.yaml (None when absent or unreadable)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    saved = Path(run_dir) / ".hydra" / "config.yaml"
    try:
        node = OmegaConf.load(saved).get("selection") if saved.is_file() else None
        return OmegaConf.to_container(node, resolve=True) if node is not None else None
    except Exception:  # noqa: BLE001 - an unreadable config falls back to the default rule
        return None


def selection_options(cfg) -> dict:
    """rule / style_metric / identity_metric from a `selection:` config node (dict), a rule string, or None."""
    if isinstance(cfg, (str, Rule)):
        return dict(rule=parse_rule(cfg), style_metric=None, identity_metric=None)
    cfg = dict(cfg or {})
    return dict(rule=parse_rule({"rule": cfg.get("rule", "knee"), "param": cfg.get("param")}),
                style_metric=cfg.get("style_metric"), identity_metric=cfg.get("identity_metric"))


def select_rows(rows, rule="knee", style_metric: str | None = None,
                identity_metric: str | None = None) -> Selection | None:
    """The selection over MetricRow objects; None when the run has no identity scores (scored before
    identity existed): then only one-sided minima can be shown, and they are not called best."""
    from ..reporting.scores import default_metric

    rows = list(rows)
    names = {r.metric for r in rows}
    style_metric = style_metric or default_metric(names)
    identity_metric = identity_metric or default_identity_metric(names)
    if identity_metric is None:
        return None
    for m in (style_metric, identity_metric):
        if m not in names:
            raise UserError(f"selection: metric {m!r} not in the run's metrics; available: {', '.join(sorted(names))}")
    rule = parse_rule(rule)
    points, scale = points_from_rows(rows, style_metric, identity_metric)
    per_epoch, overall = select_run(points, rule, scale)
    return Selection(rule, style_metric, identity_metric, points, per_epoch, overall, scale)
