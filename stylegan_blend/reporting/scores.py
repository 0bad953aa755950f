"""Turn metrics rows into the epoch × swap score grid and pick the best blend.

The style metrics the blend callback writes (fid, kid, fd_*, kd_*, and their src_ variants) are
distances and the identity losses (idloss_*) too: lower is better (density/coverage/face_detect_rate:
higher; never ranked here). Only blend cells (`swap<r>_<direction>`) can be "best": `base` and `none` are the
references a blend is judged against, not something to export with `stylegan-blend blend`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .rundir import MetricRow, REFERENCE_CELLS, parse_metric_row, read_metrics

DIRECTION_ORDER = ("low_base", "low_tuned")  # the seed study's direction first, then "toonify"


def is_proxy(metric: str) -> bool:
    """fd_*/kd_* use a stand-in feature extractor (DESIGN §3): never comparable with published FID/KID."""
    return metric.removeprefix("src_").startswith(("fd_", "kd_"))


def extractor_of(rows: Iterable[MetricRow], metric: str) -> str:
    names = sorted({r.extractor for r in rows if r.metric == metric and r.extractor})
    return ", ".join(names) if names else metric.removeprefix("src_")[3:]


def metric_label(metric: str, rows: Iterable[MetricRow] = ()) -> str:
    """`kid`, or `kd_x — proxy (x), not comparable with published FID` for stand-in extractors."""
    if not is_proxy(metric):
        return metric
    return f"{metric} — proxy ({extractor_of(rows, metric)}), not comparable with published FID"


def default_metric(metric_names: Iterable[str]) -> str:
    """kid if present (unbiased, the better choice for small sets), else fid, else a proxy kd_*/fd_*."""
    names = set(metric_names)
    for name in ("kid", "fid"):
        if name in names:
            return name
    for prefix in ("kd_", "fd_"):
        proxies = sorted(n for n in names if n.startswith(prefix))
        if proxies:
            return proxies[0]
    raise UserError(f"no target-domain metric (kid, fid, kd_*, fd_*) among {', '.join(sorted(names))}; "
                    f"choose one with --metric")


def cell_sort_key(cell: str) -> tuple:
    """base | swaps by direction then resolution | none: the seed figure's left-to-right order."""
    if cell == "base":
        return (0,)
    if cell == "none":
        return (2,)
    res, _, direction = cell.removeprefix("swap").partition("_")
    rank = DIRECTION_ORDER.index(direction) if direction in DIRECTION_ORDER else len(DIRECTION_ORDER)
    return (1, rank, direction, int(res) if res.isdigit() else 0)


def is_blend(cell: str) -> bool:
    return cell not in REFERENCE_CELLS


@dataclass
class ScoreGrid:
    """One metric over epochs (rows) × cells (columns); NaN where the run has no score."""
    metric: str
    epochs: list[int]
    kimg: dict[int, float]
    cells: list[str]
    values: np.ndarray  # [len(epochs), len(cells)]
    base_epoch: int | None = None  # the epoch the base model was scored at (the callback scores it once)


def latest_scores(rows: Iterable[MetricRow], metric: str) -> dict[tuple[int, str], MetricRow]:
    """(epoch, cell) -> row; a later row replaces an earlier one (a re-scored checkpoint)."""
    return {(r.epoch, r.cell): r for r in rows if r.metric == metric}


def score_grid(rows: list[MetricRow], metric: str, extra_epochs: Iterable[int] = (),
               extra_cells: Iterable[str] = ()) -> ScoreGrid:
    """The grid of `metric`. The base model does not change with the epoch and is scored once, so its
    latest score fills the whole `base` column."""
    scores = latest_scores(rows, metric)
    epochs = sorted({r.epoch for r in rows} | set(extra_epochs))
    cells = sorted({r.cell for r in rows} | set(extra_cells), key=cell_sort_key)
    kimg = {}
    for r in rows:
        kimg.setdefault(r.epoch, r.kimg)
    values = np.full((len(epochs), len(cells)), np.nan)
    for (epoch, cell), r in scores.items():
        values[epochs.index(epoch), cells.index(cell)] = r.value
    base_epoch = max((e for e, c in scores if c == "base"), default=None)
    if base_epoch is not None:
        column = values[:, cells.index("base")]
        column[np.isnan(column)] = scores[(base_epoch, "base")].value
    return ScoreGrid(metric, epochs, kimg, cells, values, base_epoch)


@dataclass(frozen=True)
class BestCell:
    """The lowest-scoring blend of one epoch (scope "epoch") or of the whole run (scope "overall")."""
    scope: str
    epoch: int
    kimg: float
    cell: str
    swap_res: int
    direction: str
    metric: str
    value: float
    rule: str = ""  # the selection rule that chose it; "" = the one-sided minimum of `metric`

    @property
    def how(self) -> str:
        return f"best by {self.rule}" if self.rule else f"lowest {self.metric}"

    def __str__(self) -> str:
        where = f"epoch {self.epoch:4d}" if self.scope == "epoch" else "overall   "
        return (f"{where}  {self.cell:<20s} {self.metric}={self.value:.4g}"
                + (f"  (epoch {self.epoch}, {self.kimg:g} kimg)" if self.scope == "overall" else
                   f"  ({self.kimg:g} kimg)"))


def _as_rows(rows) -> list[MetricRow]:
    if isinstance(rows, (str, Path)):
        return read_metrics(Path(rows))
    return [r if isinstance(r, MetricRow) else parse_metric_row(r, f"row {i}") for i, r in enumerate(rows)]


def best_cells(rows, metric: str | None = None) -> list[BestCell]:
    """Per epoch the blend cell with the lowest `metric`, then the overall best (last element, scope "overall").

    `rows`: MetricRow objects, dicts with metrics.csv keys, or a path to metrics.csv. `metric` defaults as
    in the report (kid, else fid, else a proxy). Epochs without any scored blend are left out.
    """
    rows = _as_rows(rows)
    metric = metric or default_metric(r.metric for r in rows)
    if metric not in {r.metric for r in rows}:
        raise UserError(f"metric {metric!r} not in the run's metrics; available: "
                        f"{', '.join(sorted({r.metric for r in rows}))}")
    by_epoch: dict[int, list[MetricRow]] = {}
    for r in latest_scores(rows, metric).values():
        if is_blend(r.cell) and not math.isnan(r.value):
            by_epoch.setdefault(r.epoch, []).append(r)
    result = []
    for epoch in sorted(by_epoch):
        r = min(by_epoch[epoch], key=lambda r: (r.value, cell_sort_key(r.cell)))
        result.append(BestCell("epoch", r.epoch, r.kimg, r.cell, r.swap_res, r.direction, metric, r.value))
    if result:
        best = min(result, key=lambda b: (b.value, b.epoch))
        result.append(BestCell("overall", best.epoch, best.kimg, best.cell, best.swap_res, best.direction,
                               metric, best.value))
    return result
