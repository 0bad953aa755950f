"""Selection rules (`knee`, `min_identity=<x>`, `weighted=<α>`) over (style, identity loss) points."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import UserError
from .pareto import pareto_front

RULES = ("knee", "min_identity=<x>", "weighted=<alpha>")


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
    kind: str  # knee | min_identity | weighted
    param: float | None = None

    def __str__(self) -> str:
        return self.kind if self.param is None else f"{self.kind}={self.param:g}"

    def describe(self) -> str:
        if self.kind == "knee":
            return ("knee of the Pareto front: the front cell farthest from the line through the front's ends, "
                    "both axes scaled to [0, 1] over the run")
        if self.kind == "min_identity":
            return f"most stylised cell whose identity score (1 − identity loss) is ≥ {self.param:g}"
        return (f"lowest {self.param:g}·style/style(base) + {1 - self.param:g}·identity loss "
                f"(style relative to the base model's)")


def parse_rule(text) -> Rule:
    """`knee`, `min_identity=0.7`, `weighted=0.5`, or a dict {rule: ..., param: ...} from the config group."""
    if isinstance(text, Rule):
        return text
    if isinstance(text, dict):
        text = text.get("rule", "knee") + ("" if text.get("param") is None else f"={text['param']}")
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


@dataclass(frozen=True)
class Choice:
    """The cell a rule picked within a scope (one epoch, or the whole run), and why."""
    scope: str  # "epoch" | "overall"
    rule: Rule
    point: Point | None  # None: no cell satisfies the rule
    front: tuple[Point, ...]
    value: float  # what hparams_search minimises (see `rule_value`)
    note: str = ""

    def why(self) -> str:
        """One sentence: why the rule picked this cell, in terms of the front."""
        if self.point is None:
            return self.note
        p, front = self.point, self.front
        n = f"{len(front)} cell(s) on the Pareto front"
        if self.rule.kind == "knee":
            if len(front) < 3:
                return f"{n}; with no interior point the one nearest the ideal corner (both axes scaled) is {p.label}"
            return (f"{n}, from {front[0].label} (most stylised) to {front[-1].label} (closest to the base); "
                    f"{p.label} is farthest from the line joining them, where more identity starts costing "
                    f"much more style")
        if self.rule.kind == "min_identity":
            return (f"{p.label} is the most stylised cell keeping identity score {1 - p.identity:.3g} "
                    f"≥ {self.rule.param:g}")
        return f"{p.label} has the lowest weighted sum ({self.value:.4g}) among the {n}"

    def __str__(self) -> str:
        where = f"epoch {self.point.epoch:4d}" if self.scope == "epoch" and self.point else "overall   "
        if self.point is None:
            return f"{where}  best by {self.rule}: no cell ({self.note})"
        p = self.point
        text = (f"{where}  best by {self.rule}: {p.cell:<16s} style={p.style:.4g} identity_loss={p.identity:.4g}"
                f"  ({p.label}, {p.kimg:g} kimg)")
        return text + (f"  [{self.note}]" if self.note else "")


def _ranges(points: Sequence[Point]) -> tuple[tuple[float, float], tuple[float, float]]:
    xs = [p.style for p in points if math.isfinite(p.style)]
    ys = [p.identity for p in points if math.isfinite(p.identity)]
    return (min(xs, default=0.0), max(xs, default=1.0)), (min(ys, default=0.0), max(ys, default=1.0))


def _scale(v: float, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return 0.0 if hi <= lo else (v - lo) / (hi - lo)


def _knee(front: list[Point], ranges) -> Point:
    xy = [(_scale(p.style, ranges[0]), _scale(p.identity, ranges[1])) for p in front]
    (x0, y0), (x1, y1) = xy[0], xy[-1]  # front is sorted by style: its two ends
    length = math.hypot(x1 - x0, y1 - y0)

    def key(i):
        x, y = xy[i]
        dist = abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / length if length > 0 else 0.0
        return (-dist, x + y, x)  # ties (2-point fronts): closest to the ideal corner, then more stylised

    return front[min(range(len(front)), key=key)]


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
           style_scale: float = 1.0) -> Choice:
    """Apply `rule` to `points` (blend cells). `ranges` ((x_lo, x_hi), (y_lo, y_hi)) normalise the axes for
    the knee (default: these points); pass the run's ranges when selecting within one epoch."""
    rule = parse_rule(rule)
    pts = [p for p in points if math.isfinite(p.style) and math.isfinite(p.identity)]
    if not pts:
        return Choice(scope, rule, None, (), math.inf, "no cell has both a style and an identity score")
    ranges = ranges or _ranges(pts)
    front = [pts[i] for i in pareto_front([(p.style, p.identity) for p in pts])]
    note = ""
    if rule.kind == "knee":
        chosen = _knee(front, ranges)
    elif rule.kind == "weighted":
        chosen = min(front, key=lambda p: (rule.param * p.style / style_scale + (1 - rule.param) * p.identity,
                                           p.style))
    else:
        ok = [p for p in front if 1 - p.identity >= rule.param - 1e-12]
        chosen = min(ok, key=lambda p: p.style) if ok else None
        if chosen is None:
            note = f"no cell keeps identity ≥ {rule.param:g}; highest is {1 - min(p.identity for p in pts):.3g}"
    return Choice(scope, rule, chosen, tuple(front), rule_value(rule, chosen, style_scale), note)


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


def select_run(points: Sequence[Point], rule, style_scale: float = 1.0) -> tuple[list[Choice], Choice]:
    """Per-epoch choices (axes normalised over the whole run) and the overall choice."""
    rule = parse_rule(rule)
    finite = [p for p in points if math.isfinite(p.style) and math.isfinite(p.identity)]
    ranges = _ranges(finite)
    per_epoch = [select([p for p in finite if p.epoch == e], rule, "epoch", ranges, style_scale)
                 for e in sorted({p.epoch for p in finite})]
    return per_epoch, select(finite, rule, "overall", ranges, style_scale)
