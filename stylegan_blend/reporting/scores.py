"""Turn metrics rows into the epoch × swap score grid and pick the best blend.

The style metrics the blend callback writes (fid, kid, fd_*, kd_*, and their src_ variants) are
distances and the identity losses (idloss_*) too: lower is better (density/coverage/face_detect_rate:
higher; never ranked here). Only blend cells (`swap<r>_<direction>`) can be "best": `base` and `none` are the
references a blend is judged against, not something to export with `stylegan-blend blend`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from ..errors import UserError
from ..run.layout import REFERENCE_CELLS
from ..run.tables import MetricRow, as_metric_rows
from ..selection.rules import LOWEST, Choice, Point, Rule
from ..selection.run import default_style_metric

DIRECTION_ORDER = ("low_base", "low_tuned")  # the seed study's direction first, then "toonify"


def is_proxy(metric: str) -> bool:
    """fd_*/kd_* use a stand-in feature extractor: never comparable with published FID/KID."""
    return metric.removeprefix("src_").startswith(("fd_", "kd_"))


def extractor_of(rows: Iterable[MetricRow], metric: str) -> str:
    names = sorted({r.extractor for r in rows if r.metric == metric and r.extractor})
    return ", ".join(names) if names else metric.removeprefix("src_")[3:]


def metric_label(metric: str, rows: Iterable[MetricRow] = ()) -> str:
    """`kid`, or `kd_x — proxy (x), not comparable with published FID` for stand-in extractors."""
    if not is_proxy(metric):
        return metric
    return f"{metric} — proxy ({extractor_of(rows, metric)}), not comparable with published FID"


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


def best_cells(rows, metric: str | None = None) -> list[Choice]:
    """The one-sided minima of `metric` (a LOWEST rule's choices, printed `lowest <metric>`, never "best"): per
    epoch the blend cell with the lowest value, then the lowest of those (last element, scope "overall").

    `rows`: MetricRow objects, dicts with metrics.csv keys, or a path to metrics.csv. `metric` defaults as
    in the report (kid, else fid, else a proxy). Epochs without any scored blend are left out.
    """
    rows = as_metric_rows(rows)
    metric = metric or default_style_metric(r.metric for r in rows)
    if metric not in {r.metric for r in rows}:
        raise UserError(f"metric {metric!r} not in the run's metrics; available: "
                        f"{', '.join(sorted({r.metric for r in rows}))}")
    by_epoch: dict[int, list[MetricRow]] = {}
    for r in latest_scores(rows, metric).values():
        if is_blend(r.cell) and not math.isnan(r.value):
            by_epoch.setdefault(r.epoch, []).append(r)
    rule = Rule(LOWEST, metric=metric)

    def choice(scope: str, r: MetricRow) -> Choice:
        point = Point(r.epoch, r.kimg, r.cell, r.swap_res, r.direction, r.value, math.nan)
        return Choice(scope, rule, point, (), r.value)

    result = [choice("epoch", min(by_epoch[e], key=lambda r: (r.value, cell_sort_key(r.cell)))) for e in sorted(by_epoch)]
    if result:
        best = min(result, key=lambda b: (b.value, b.epoch))
        result.append(replace(best, scope="overall"))
    return result
