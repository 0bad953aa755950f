"""Selection rules (`knee`, `min_identity=<x>`, `weighted=<α>`) over (style, identity loss) points."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import UserError
from .config import DEFAULT_RULE
from .pareto import pareto_front

RULES = ("knee", "min_identity=<x>", "weighted=<alpha>")
LOWEST = "lowest"  # one metric alone, one-sided: shown beside a rule's pick (and alone in runs without identity)


@dataclass(frozen=True)
class Point:
    """One blend cell in the selection plane; both axes are lower-is-better."""
    epoch: int
    kimg: float
    cell: str
    swap_res: int | None
    direction: str
    style: float
    identity: float

    @property
    def label(self) -> str:
        """`e48·s32` (`·t` for the low_tuned direction), the scatter's label."""
        tail = "" if self.direction in ("", "low_base") else "·t"
        return f"e{self.epoch}·s{self.swap_res}{tail}" if self.swap_res is not None else f"e{self.epoch}·{self.cell}"


@dataclass(frozen=True)
class Rule:
    kind: str  # knee | min_identity | weighted; LOWEST: the minimum of `metric` alone, never called best
    param: float | None = None
    metric: str = ""  # LOWEST only: the metric it ranks by

    def __str__(self) -> str:
        if self.kind == LOWEST:
            return f"lowest {self.metric}"
        return self.kind if self.param is None else f"{self.kind}={self.param:g}"

    def describe(self) -> str:
        if self.kind == LOWEST:
            return (f"lowest {self.metric} alone: one-sided, it ignores identity and always favours the cell with "
                    f"most fine-tuned layers")
        if self.kind == "knee":
            return ("knee of the Pareto front: the front cell farthest from the line through the front's ends on "
                    "the ideal side (low style, low identity loss), axes scaled between the run front's ideal "
                    "and nadir; with no cell on that side, the lowest normalised style + identity sum")
        if self.kind == "min_identity":
            return f"most stylised cell whose identity score (1 − identity loss) is ≥ {self.param:g}"
        return (f"lowest {self.param:g}·style/style(base) + {1 - self.param:g}·identity loss "
                f"(style relative to the base model's)")


def parse_rule(text) -> Rule:
    """`knee`, `min_identity=0.7`, `weighted=0.5`, or a dict {rule: ..., param: ...} from the config group."""
    if isinstance(text, Rule):
        return text
    if isinstance(text, dict):
        text = text.get("rule", DEFAULT_RULE) + ("" if text.get("param") is None else f"={text['param']}")
    name, _, raw = str(text).strip().partition("=")
    expected = f"expected one of {', '.join(RULES)}"
    if name == "knee" and not raw:
        return Rule("knee")
    if name in ("min_identity", "weighted"):
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"selection rule {text!r}: {name} needs a number ({expected})") from None
        if not 0.0 <= value <= 1.0:
            raise UserError(f"selection rule {text!r}: {name} must be in [0, 1]")
        return Rule(name, value)
    raise UserError(f"selection rule {text!r}: {expected}")


TIE_BREAK = "fewest fine-tuned layers, then earliest epoch"
FALLBACK = "normalised-sum minimum"


@dataclass(frozen=True)
class Choice:
    """The cell a rule picked within a scope (one epoch, or the whole run), and why: the one "best" type.

    The cell's coordinates read through (`choice.epoch`, `.cell`, ...). A LOWEST choice is the one-sided minimum
    of one metric; it prints as `lowest <metric>`, never as best."""
    scope: str  # "epoch" | "overall"
    rule: Rule
    point: Point | None  # None: no cell satisfies the rule
    front: tuple[Point, ...]
    value: float  # what hparams_search minimises (see `rule_value`); LOWEST: the metric's value
    note: str = ""
    fallback: str = ""  # knee only: why no knee exists and the declared fallback was used ("" = a real knee)
    caveat: str = ""  # e.g. a per-epoch choice among only 2-3 swap points

    @property
    def epoch(self) -> int:
        return self.point.epoch

    @property
    def kimg(self) -> float:
        return self.point.kimg

    @property
    def cell(self) -> str:
        return self.point.cell

    @property
    def swap_res(self) -> int | None:
        return self.point.swap_res

    @property
    def direction(self) -> str:
        return self.point.direction

    @property
    def metric(self) -> str:
        """The metric a LOWEST choice ranks by ("" for the two-axis rules: their style metric is the Selection's)."""
        return self.rule.metric

    @property
    def how(self) -> str:
        """`best by knee`, or `lowest kid` for the one-sided minimum."""
        return str(self.rule) if self.rule.kind == LOWEST else f"best by {self.rule}"

    def why(self) -> str:
        """One sentence: why the rule picked this cell, in terms of the front."""
        if self.point is None:
            return self.note
        p, front = self.point, self.front
        n = f"{len(front)} cell(s) on the Pareto front"
        tail = f" ({self.caveat})" if self.caveat else ""
        if self.rule.kind == "knee":
            if self.fallback:
                return f"{n}; no knee: {self.fallback}, so the {FALLBACK} is {p.label}{tail}"
            return (f"{n}, from {front[0].label} (most stylised) to {front[-1].label} (closest to the base); "
                    f"{p.label} lies farthest from the line joining them on the ideal side, where more identity "
                    f"starts costing much more style{tail}")
        if self.rule.kind == LOWEST:
            return f"{p.label} has the lowest {self.metric} ({self.value:.4g}); one-sided: identity is ignored"
        if self.rule.kind == "min_identity":
            return (f"{p.label} is the most stylised cell keeping identity score {1 - p.identity:.3g} "
                    f"≥ {self.rule.param:g}{tail}")
        return f"{p.label} has the lowest weighted sum ({self.value:.4g}) among the {n}{tail}"

    def __str__(self) -> str:
        where = f"epoch {self.point.epoch:4d}" if self.scope == "epoch" and self.point else "overall   "
        if self.rule.kind == LOWEST and self.point is not None:
            return (f"{where}  {self.cell:<20s} {self.metric}={self.value:.4g}"
                    + (f"  (epoch {self.epoch}, {self.kimg:g} kimg)" if self.scope == "overall" else
                       f"  ({self.kimg:g} kimg)"))
        if self.point is None:
            return f"{where}  best by {self.rule}: no cell ({self.note})"
        p = self.point
        text = (f"{where}  best by {self.rule}: {p.cell:<16s} style={p.style:.4g} identity_loss={p.identity:.4g}"
                f"  ({p.label}, {p.kimg:g} kimg)")
        notes = [t for t in (self.note, self.fallback and f"no knee, {FALLBACK}", self.caveat) if t]
        return text + (f"  [{'; '.join(notes)}]" if notes else "")


def fine_tuned_blocks(p: Point, resolution: int) -> int:
    """How many synthesis blocks of the cell come from the fine-tuned model: low_base takes b{2s}..bR from it
    (log2 R − log2 s blocks), low_tuned takes b4..b{s} (log2 s − 1)."""
    if p.swap_res is None:
        return math.inf
    s, r = int(math.log2(p.swap_res)), int(math.log2(resolution))
    return s - 1 if p.direction == "low_tuned" else r - s


def tie_key(resolution: int):
    """The declared tie-break: fewest fine-tuned layers (the blend that changes the base least), then the
    earliest epoch (the least trained)."""
    return lambda p: (fine_tuned_blocks(p, resolution), p.epoch, p.cell)


def _resolution(points: Sequence[Point]) -> int:
    """The model resolution when unknown: 4 × the largest swap point (the default grids end at R/4)."""
    return 4 * max((p.swap_res for p in points if p.swap_res), default=4)


def _argmin(points: Sequence[Point], value, key) -> Point:
    """The point with the lowest `value`; values within 1e-9 tie and the tie-break `key` decides."""
    values = [value(p) for p in points]
    low = min(values)
    return min((p for p, v in zip(points, values) if v <= low + 1e-9), key=key)


def front_ranges(points: Sequence[Point]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis ranges for the knee: from the ideal point (lowest style, lowest identity loss) to the nadir of the
    Pareto front of `points` (the style of its identity-best end, the identity loss of its style-best end).
    Cells off the front do not move these ends, so a dominated outlier, however far out, changes nothing."""
    pts = [p for p in points if math.isfinite(p.style) and math.isfinite(p.identity)]
    if not pts:
        return (0.0, 1.0), (0.0, 1.0)
    front = [pts[i] for i in pareto_front([(p.style, p.identity) for p in pts])]
    return (front[0].style, front[-1].style), (front[-1].identity, front[0].identity)


def _scale(v: float, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return 0.0 if hi <= lo else (v - lo) / (hi - lo)


def _knee(front: list[Point], ranges, key) -> tuple[Point, str]:
    """(knee, "") or (fallback pick, why there is no knee).

    The signed distance to the chord is measured toward the ideal corner, so a cell on the concave side (one
    that is worse than the straight trade-off between the ends) never counts as a knee. Note that the order of
    distances to one line is the same in any per-axis scaling: the scaling decides the fallback (a sum) and
    where each epoch's cells sit relative to the run's ends, not the order along one chord."""
    xy = {id(p): (_scale(p.style, ranges[0]), _scale(p.identity, ranges[1])) for p in front}

    def norm_sum(p):
        return sum(xy[id(p)])

    if len(front) == 1:
        return front[0], ""
    (x0, y0), (x1, y1) = xy[id(front[0])], xy[id(front[-1])]  # front is sorted by style: its two ends
    ux, uy = x1 - x0, y1 - y0
    length = math.hypot(ux, uy)
    if len(front) == 2 or length == 0:
        return _argmin(front, norm_sum, key), "2 cells on the front, no interior cell"

    def toward_ideal(p):  # normal (uy, -ux) points to lower style and lower identity loss
        x, y = xy[id(p)]
        return (uy * (x - x0) - ux * (y - y0)) / length

    inside = [p for p in front[1:-1] if toward_ideal(p) > 1e-9]
    if not inside:
        return _argmin(front, norm_sum, key), "no front cell lies on the ideal side of the line between its ends " \
                                              "(a straight or concave front)"
    return _argmin(inside, lambda p: -toward_ideal(p), key), ""


def rule_value(rule: Rule, p: Point | None, style_scale: float) -> float:
    """One number per run for hparams_search (lower is better), on scales fixed across runs:
    style / style(base) and identity loss. knee: their sum at the knee cell; weighted: the weighted sum;
    min_identity: the chosen cell's relative style (inf when no cell meets the bar)."""
    if p is None:
        return math.inf
    s = p.style / style_scale
    if rule.kind == "min_identity":
        return s
    if rule.kind == "weighted":
        return rule.param * s + (1 - rule.param) * p.identity
    return s + p.identity


def select(points: Sequence[Point], rule, scope: str = "overall", ranges=None,
           style_scale: float = 1.0, resolution: int | None = None) -> Choice:
    """Apply `rule` to `points` (blend cells). `ranges` ((x_lo, x_hi), (y_lo, y_hi)) normalise the axes for
    the knee (default: `front_ranges` of these points); pass the run's when selecting within one epoch.
    Exact ties break by `TIE_BREAK` (`resolution`: the model's, default 4 × the largest swap point)."""
    rule = parse_rule(rule)
    pts = [p for p in points if math.isfinite(p.style) and math.isfinite(p.identity)]
    if not pts:
        return Choice(scope, rule, None, (), math.inf, "no cell has both a style and an identity score")
    ranges = ranges or front_ranges(pts)
    key = tie_key(resolution or _resolution(pts))
    front = [pts[i] for i in pareto_front([(p.style, p.identity) for p in pts])]
    note = fallback = ""
    if rule.kind == "knee":
        chosen, fallback = _knee(front, ranges, key)
    elif rule.kind == "weighted":
        chosen = _argmin(front, lambda p: rule.param * p.style / style_scale + (1 - rule.param) * p.identity, key)
    else:
        ok = [p for p in front if 1 - p.identity >= rule.param - 1e-12]
        chosen = _argmin(ok, lambda p: p.style, key) if ok else None
        if chosen is None:
            note = f"no cell keeps identity ≥ {rule.param:g}; highest is {1 - min(p.identity for p in pts):.3g}"
    return Choice(scope, rule, chosen, tuple(front), rule_value(rule, chosen, style_scale), note, fallback)


def points_from_rows(rows: Iterable, style_metric: str, identity_metric: str) -> tuple[list[Point], float]:
    """Blend-cell points from MetricRow-like rows (latest row per (epoch, cell, metric) wins), and the
    style scale: the base model's style score when it is positive, else 1."""
    style, ident, meta = {}, {}, {}
    base_style = None
    for r in rows:
        key = (r.epoch, r.cell)
        if r.metric == style_metric:
            if r.cell == "base":
                base_style = r.value
            style[key] = r.value
        elif r.metric == identity_metric:
            ident[key] = r.value
        if r.cell not in ("base", "none"):
            meta[key] = r
    points = [Point(e, meta[(e, c)].kimg, c, meta[(e, c)].swap_res, meta[(e, c)].direction,
                    style.get((e, c), math.nan), ident.get((e, c), math.nan))
              for (e, c) in sorted(meta)]
    scale = base_style if base_style is not None and math.isfinite(base_style) and base_style > 0 else 1.0
    return points, scale


FEW_SWAP_POINTS = 3


def select_run(points: Sequence[Point], rule, style_scale: float = 1.0,
               resolution: int | None = None) -> tuple[list[Choice], Choice]:
    """Per-epoch choices (axes scaled by the whole run's front, so epochs share one scale) and the overall
    choice. A per-epoch choice among at most FEW_SWAP_POINTS cells says so: with three, the knee can only be
    the middle one or (no knee) an end."""
    from dataclasses import replace

    rule = parse_rule(rule)
    finite = [p for p in points if math.isfinite(p.style) and math.isfinite(p.identity)]
    ranges = front_ranges(finite)
    resolution = resolution or _resolution(finite or [Point(0, 0, "", 4, "", 0, 0)])
    per_epoch = []
    for e in sorted({p.epoch for p in finite}):
        cells = [p for p in finite if p.epoch == e]
        choice = select(cells, rule, "epoch", ranges, style_scale, resolution)
        if len(cells) <= FEW_SWAP_POINTS:
            choice = replace(choice, caveat=f"only {len(cells)} swap point(s) in this epoch: a coarse choice")
        per_epoch.append(choice)
    return per_epoch, select(finite, rule, "overall", ranges, style_scale, resolution)
