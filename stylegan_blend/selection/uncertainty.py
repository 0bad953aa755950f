"""How sure a pick is: a paired bootstrap over seeds, with the rule applied to every resample.

Every cell is scored on the same seeds (style: seeds 0 … n_gen − 1, identity: the first n_id of them), so one
resample of the seeds is drawn and used for every cell (paired): a seed that is hard for one cell is drawn for
all of them, and the differences between cells, which decide the pick, are what the resamples vary. The draw is
stratified: the n_id identity seeds are resampled among themselves and the other style seeds among themselves,
so both axes of a resample come from the same seeds.

- `stability`: the share of resamples in which the rule picks the chosen cell again;
- confidence interval (CI) of a cell on an axis: the 2.5th–97.5th percentile of its resampled values;
- `indistinguishable`: the cells whose CIs overlap the chosen cell's on both axes;
- when stability < 50 %, how many seeds would separate the chosen cell from the runner-up (the cell that
  wins most of the other resamples): their difference on the rule's own scale has a bootstrap standard error
  that shrinks as 1/√n, so n' = n · (1.96 · SE / |difference|)² seeds would put it at 95 % confidence.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .rules import Choice, Point, Rule, _scale, front_ranges, select_run

CI = (2.5, 97.5)  # percentile interval


def key(p: Point) -> tuple[int, str]:
    return (p.epoch, p.cell)


_COUNTS: dict[tuple, np.ndarray] = {}


def seed_counts(n_gen: int, n_id: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_gen] draw counts per seed (rows sum to n_gen): seeds 0 … n_id − 1 resampled n_id times among
    themselves, the rest among themselves. Deterministic in its arguments, so every cell of the same size gets
    the same draws (the pairing)."""
    k = (int(n_gen), int(n_id), int(resamples), int(seed))
    if k not in _COUNTS:
        rng = np.random.default_rng([int(seed), int(n_gen), int(n_id)])
        counts = np.zeros((resamples, n_gen), np.int64)
        for lo, hi in ((0, n_id), (n_id, n_gen)):
            if hi > lo:
                draws = rng.integers(lo, hi, size=(resamples, hi - lo))
                for b in range(resamples):
                    counts[b] += np.bincount(draws[b], minlength=n_gen)
        _COUNTS[k] = counts
    return _COUNTS[k]


@dataclass
class Uncertainty:
    """The bootstrap verdict on one choice (overall, or one epoch's)."""
    chosen: Point
    stability: float  # share of resamples in which the rule picks `chosen`
    also: tuple[Point, ...]  # indistinguishable: CIs overlap the chosen cell's on both axes
    runner_up: Point | None = None  # the cell winning most of the other resamples
    seeds_to_separate: int | None = None  # only when stability < 0.5
    n_seeds: int = 0  # identity seeds (style used n_gen ≥ this)

    def text(self) -> str:
        """`e9·s8 (stable 71 %; also e12·s8, e15·s8)`."""
        also = f"; also {', '.join(p.label for p in self.also)}" if self.also else ""
        return f"{self.chosen.label} (stable {100 * self.stability:.0f} %{also})"

    def advice(self) -> str:
        """When the pick is a coin toss: how many seeds would settle it."""
        if self.stability >= 0.5 or self.runner_up is None:
            return ""
        if self.seeds_to_separate is None:
            return (f"{self.chosen.label} and {self.runner_up.label} are equal on the rule's scale: more seeds will "
                    f"not separate them")
        factor = self.seeds_to_separate / max(1, self.n_seeds)
        return (f"about {self.seeds_to_separate} seeds (now {self.n_seeds}; metrics.identity_num and "
                f"metrics.num_gen ×{factor:.1f}) would separate {self.chosen.label} from {self.runner_up.label} "
                f"at 95 %")


@dataclass
class Bootstrap:
    """Resampled (style, identity) of every cell and the verdicts on the run's choices."""
    resamples: int
    seed: int
    n_gen: int
    n_id: int
    ci: dict[tuple[int, str], tuple[tuple[float, float], tuple[float, float]]]
    overall: Uncertainty | None
    per_epoch: dict[int, Uncertainty] = field(default_factory=dict)
    values: dict = field(default_factory=dict, repr=False)  # (epoch, cell) -> (style [B], identity [B])

    def draws(self) -> tuple:
        """What makes two bootstraps paired with each other: the same seeds drawn the same way."""
        return (self.resamples, self.seed, self.n_gen, self.n_id)


def _decision_scale(rule: Rule, points: Sequence[Point], style_scale: float) -> Callable[[float, float], float]:
    """The number the rule ranks by (lower wins), for the seeds-to-separate estimate: the normalised sum on the
    run front's axes (knee and its fallback), the weighted sum, or style (min_identity)."""
    if rule.kind == "weighted":
        return lambda s, i: rule.param * s / style_scale + (1 - rule.param) * i
    if rule.kind == "min_identity":
        return lambda s, i: s
    xr, yr = front_ranges(points)
    return lambda s, i: _scale(s, xr) + _scale(i, yr)


def _verdict(chosen: Point, candidates: Sequence[Point], winners: list, values: dict, ci: dict, n_id: int,
             decision: Callable) -> Uncertainty:
    k = key(chosen)
    wins = Counter(w for w in winners if w is not None)
    stability = wins[k] / len(winners)
    (s_lo, s_hi), (i_lo, i_hi) = ci[k]

    def overlaps(p):
        (a, b), (c, d) = ci[key(p)]
        return a <= s_hi and s_lo <= b and c <= i_hi and i_lo <= d

    also = sorted((p for p in candidates if key(p) != k and overlaps(p)), key=lambda p: (-wins[key(p)], p.epoch, p.cell))
    others = [w for w, _ in wins.most_common() if w != k]
    runner = {key(p): p for p in candidates}.get(others[0]) if others else None
    needed = None
    if stability < 0.5 and runner is not None:
        # the observed difference on the rule's scale, and its standard error from the paired resamples
        mean = decision(runner.style, runner.identity) - decision(chosen.style, chosen.identity)
        se = float(np.std(decision(*values[key(runner)]) - decision(*values[k]), ddof=1))
        if abs(mean) > 1e-12 and se > 0:
            needed = max(n_id + 1, math.ceil(n_id * (1.96 * se / abs(mean)) ** 2))
    return Uncertainty(chosen, stability, tuple(also), runner, needed, n_id)


def assess(points: Sequence[Point], rule: Rule, overall: Choice, per_epoch: Sequence[Choice],
           resampled: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]], style_scale: float,
           resolution: int | None, resamples: int, seed: int, n_gen: int, n_id: int) -> Bootstrap:
    """Apply the rule to every resample; `resampled[(epoch, cell)]` = (style [B], identity [B]) for every finite
    point (the same resampled seeds for all)."""
    finite = [p for p in points if key(p) in resampled]
    values = {k: (np.asarray(s, np.float64), np.asarray(i, np.float64)) for k, (s, i) in resampled.items()}
    ci = {k: (tuple(np.percentile(s, CI)), tuple(np.percentile(i, CI))) for k, (s, i) in values.items()}
    win_all, win_epoch = [], {c.point.epoch: [] for c in per_epoch if c.point is not None}
    for b in range(resamples):
        pts = [replace(p, style=float(values[key(p)][0][b]), identity=float(values[key(p)][1][b])) for p in finite]
        epochs_b, overall_b = select_run(pts, rule, style_scale, resolution)
        win_all.append(key(overall_b.point) if overall_b.point is not None else None)
        for c in epochs_b:
            if c.point is not None and c.point.epoch in win_epoch:
                win_epoch[c.point.epoch].append(key(c.point))
    decision = _decision_scale(rule, finite, style_scale)
    boot = Bootstrap(resamples, seed, n_gen, n_id, ci, None, values=values)
    if overall.point is not None:
        boot.overall = _verdict(overall.point, finite, win_all, values, ci, n_id, decision)
    for c in per_epoch:
        if c.point is not None:
            winners = win_epoch[c.point.epoch] + [None] * (resamples - len(win_epoch[c.point.epoch]))
            mine = [p for p in finite if p.epoch == c.point.epoch]
            boot.per_epoch[c.point.epoch] = _verdict(c.point, mine, winners, values, ci, n_id, decision)
    return boot
