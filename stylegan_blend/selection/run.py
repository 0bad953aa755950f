"""Selection over a run's metrics rows: which metrics form the two axes, per-epoch and overall choices."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from ..run.files import write_text_atomic
from ..run.layout import SELECTION_FILE, STYLE_REFERENCE_FILE
from ..run.reader import read_json
from .config import DEFAULT_RULE, SelectionConfig
from .rules import TIE_BREAK, Choice, Point, Rule, parse_rule, points_from_rows, select, select_run
from .uncertainty import Bootstrap, Uncertainty, assess, key, seed_counts

IDENTITY_NETWORKS = ("dlib", "facenet", "lpips", "proxy")  # preference order: a face-recognition network first
IDENTITY_ORDER = tuple(f"idnorm_{n}" for n in IDENTITY_NETWORKS) + tuple(f"idloss_{n}" for n in IDENTITY_NETWORKS)


def default_style_metric(names: Iterable[str]) -> str:
    """kid if present (unbiased, the better choice for small sets), else fid, else a proxy kd_*/fd_*."""
    names = set(names)
    for name in ("kid", "fid"):
        if name in names:
            return name
    for prefix in ("kd_", "fd_"):
        proxies = sorted(n for n in names if n.startswith(prefix))
        if proxies:
            return proxies[0]
    raise UserError(f"no target-domain metric (kid, fid, kd_*, fd_*) among {', '.join(sorted(names))}; "
                    f"choose one with --metric")


def default_identity_metric(names: Iterable[str]) -> str | None:
    """The normalised loss (idloss / the "another person" baseline) of the best identity network scored
    (dlib > facenet > lpips > proxy); runs scored before the baseline existed fall back to the raw idloss_*
    (labelled unnormalised); None when the run has no identity scores."""
    names = set(names)
    return next((n for n in IDENTITY_ORDER if n in names), None)


def identity_label(metric: str) -> str:
    if metric.startswith("idnorm_"):
        return f"{metric} (identity loss / another person's, 1 = as far as another person)"
    if metric.startswith("idloss_"):
        return f"{metric} (unnormalised: no another-person baseline in this run)"
    return metric


@dataclass
class Selection:
    rule: Rule
    style_metric: str
    identity_metric: str
    points: list[Point]
    per_epoch: list[Choice]
    overall: Choice
    style_scale: float
    bootstrap: Bootstrap | None = None
    uncertainty_note: str = ""  # why there is no bootstrap, if there is none

    def front_cells(self) -> set[tuple[int, str]]:
        """(epoch, cell) of the overall front and of every per-epoch front."""
        return {(p.epoch, p.cell) for c in [self.overall, *self.per_epoch] for p in c.front}

    def header(self) -> str:
        return (f"selection rule {self.rule}: {self.rule.describe()}; ties: {TIE_BREAK}; axes: style = "
                f"{self.style_metric}, identity = {identity_label(self.identity_metric)}")

    def uncertainty(self, choice: Choice) -> Uncertainty | None:
        if self.bootstrap is None or choice.point is None:
            return None
        if choice.scope == "overall":
            return self.bootstrap.overall
        return self.bootstrap.per_epoch.get(choice.point.epoch)

    def summary(self, choice: Choice | None = None) -> str:
        """`e9·s8 (stable 71 %; also e12·s8, e15·s8)`: the pick with its bootstrap verdict."""
        choice = choice or self.overall
        if choice.point is None:
            return f"no cell ({choice.note})"
        u = self.uncertainty(choice)
        if u is None:
            return f"{choice.point.label} (stability unknown)"  # why: `uncertainty_note`, printed once
        return u.text()

    def line(self, choice: Choice | None = None) -> str:
        """The choice as one printed line: the cell, its scores, its stability, and advice when it is a toss."""
        choice = choice or self.overall
        u = self.uncertainty(choice)
        text = f"{choice}  → {self.summary(choice)}"
        return text + (f"; {u.advice()}" if u is not None and u.advice() else "")

    def ci(self, p: Point):
        """((style lo, hi), (identity lo, hi)) of a cell, None without a bootstrap."""
        return self.bootstrap.ci.get((p.epoch, p.cell)) if self.bootstrap is not None else None

    def to_json(self) -> dict:
        """selection.json: what was chosen, by which rule on which axes, and how sure it is."""
        def cell(p: Point | None, full: bool = False):
            if p is None:
                return None
            out = dict(epoch=p.epoch, swap_res=p.swap_res, direction=p.direction, cell=p.cell, label=p.label)
            if full:
                ci = self.ci(p)
                out.update(kimg=p.kimg, style=p.style, identity=p.identity,
                           style_ci=list(ci[0]) if ci else None, identity_ci=list(ci[1]) if ci else None)
            return out

        def verdict(choice: Choice) -> dict:
            u = self.uncertainty(choice)
            return dict(chosen=cell(choice.point, full=True), summary=self.summary(choice), why=choice.why(),
                        fallback=choice.fallback or None, caveat=choice.caveat or None,
                        stability=u.stability if u else None,
                        indistinguishable=[cell(p) for p in u.also] if u else None,
                        runner_up=cell(u.runner_up) if u else None,
                        seeds_to_separate=u.seeds_to_separate if u else None, advice=(u.advice() or None) if u else None)

        b = self.bootstrap
        return dict(
            rule=str(self.rule), rule_description=self.rule.describe(), tie_break=TIE_BREAK,
            axes=dict(style=self.style_metric, identity=self.identity_metric,
                      identity_normalised=self.identity_metric.startswith("idnorm_")),
            **verdict(self.overall), value=self.overall.value if self.overall.point is not None else None,
            bootstrap=(dict(resamples=b.resamples, seed=b.seed, n_seeds=dict(style=b.n_gen, identity=b.n_id),
                            ci="2.5th-97.5th percentile of the resampled values", paired="same seeds for every cell")
                       if b is not None else None),
            uncertainty_note=self.uncertainty_note or None,
            per_epoch=[dict(epoch=c.point.epoch, **verdict(c)) for c in self.per_epoch if c.point is not None])


def selection_options(cfg) -> dict:
    """The keyword arguments of `select_rows` (rule, style_metric, identity_metric, bootstrap, bootstrap_seed) from
    a `selection:` config node (a dict: a missing or null setting takes SelectionConfig's default), a rule string,
    or None (every default)."""
    if isinstance(cfg, (str, Rule)):
        c, rule = SelectionConfig(), parse_rule(cfg)
    else:
        given = {k: v for k, v in dict(cfg or {}).items() if v is not None}  # null: the default
        unknown = sorted(set(given) - set(SelectionConfig.__dataclass_fields__))
        if unknown:
            raise UserError(f"selection: unknown setting(s) {', '.join(unknown)}; expected some of "
                            f"{', '.join(SelectionConfig.__dataclass_fields__)}")
        c = SelectionConfig(**given)
        rule = parse_rule({"rule": c.rule, "param": c.param})
    for k in ("bootstrap", "bootstrap_seed"):
        value = getattr(c, k)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"selection.{k}={value!r}: expected a whole number >= 0")
    return dict(rule=rule, style_metric=c.style_metric, identity_metric=c.identity_metric, bootstrap=c.bootstrap,
                bootstrap_seed=c.bootstrap_seed)


def select_rows(rows, rule=DEFAULT_RULE, style_metric: str | None = None, identity_metric: str | None = None,
                seeds=None, bootstrap: int = SelectionConfig.bootstrap, bootstrap_seed: int = SelectionConfig.bootstrap_seed,
                resolution: int | None = None) -> Selection | None:
    """The selection over MetricRow objects; None when the run has no identity scores (scored before
    identity existed): then only one-sided minima can be shown, and they are not called best.

    `seeds` (evaluation.per_seed.RunSeedData or alike) resamples each cell's scores over seeds: with it, every
    choice gets a `bootstrap` of that many paired resamples (seeded by `bootstrap_seed`: the same every time)."""
    rows = list(rows)
    names = {r.metric for r in rows}
    style_metric = style_metric or default_style_metric(names)
    identity_metric = identity_metric or default_identity_metric(names)
    if identity_metric is None:
        return None
    for m in (style_metric, identity_metric):
        if m not in names:
            raise UserError(f"selection: metric {m!r} not in the run's metrics; available: {', '.join(sorted(names))}")
    rule = parse_rule(rule)
    points, scale = points_from_rows(rows, style_metric, identity_metric)
    per_epoch, overall = select_run(points, rule, scale, resolution)
    sel = Selection(rule, style_metric, identity_metric, points, per_epoch, overall, scale)
    if overall.point is None and not any(c.point for c in per_epoch):
        return sel
    if seeds is None or bootstrap <= 0:
        sel.uncertainty_note = "no per-seed scores given" if seeds is None else "bootstrap switched off"
        return sel
    finite = [p for p in points if math.isfinite(p.style) and math.isfinite(p.identity)]
    sizes = {(p.epoch, p.cell): seeds.sizes(p.epoch, p.cell, identity_metric) for p in finite}
    missing = [p for p in finite if isinstance(sizes[(p.epoch, p.cell)], str)]
    if missing:
        sel.uncertainty_note = (f"{len(missing)} of {len(finite)} cells have no usable per-seed scores "
                                f"({missing[0].label}: {sizes[(missing[0].epoch, missing[0].cell)]}); re-score the "
                                f"run with stylegan-blend-eval rescore=true")
        return sel
    if len(set(sizes.values())) > 1:
        sel.uncertainty_note = (f"cells were scored on different numbers of seeds {sorted(set(sizes.values()))}: "
                                f"no paired bootstrap; re-score with one metrics.num_gen / identity_num")
        return sel
    n_gen, n_id = next(iter(sizes.values()))
    counts = seed_counts(n_gen, n_id, bootstrap, bootstrap_seed)
    resampled = {}
    for p in finite:
        got = seeds.resample(p.epoch, p.cell, style_metric, identity_metric, counts)
        if isinstance(got, str):
            sel.uncertainty_note = f"{p.label}: {got}; re-score the run with stylegan-blend-eval rescore=true"
            return sel
        resampled[(p.epoch, p.cell)] = got
    sel.bootstrap = assess(points, rule, overall, per_epoch, resampled, scale, resolution, bootstrap,
                           bootstrap_seed, n_gen, n_id)
    return sel


def write_selection_json(run_dir, sel: Selection | None, rule=None) -> None:
    """<run>/selection.json, atomically; a run without identity scores says that nothing was chosen, and why."""
    record = sel.to_json() if sel is not None else dict(
        rule=str(parse_rule(rule or DEFAULT_RULE)), chosen=None, summary="no identity scores: nothing chosen",
        why="the run has no identity scores, so only one-sided style minima exist, and they are not a choice")
    record["style_reference"] = read_json(Path(run_dir) / STYLE_REFERENCE_FILE)
    write_text_atomic(Path(run_dir) / SELECTION_FILE, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


@dataclass
class AcrossRuns:
    """The best of several runs' picks, by the same rule and the same bootstrap as within a run."""
    winner: int | None  # index into the selections
    rule: Rule
    stability: float | None = None
    also: tuple[int, ...] = ()  # runs whose picks are indistinguishable from the winner's
    note: str = ""

    def text(self, names: list[str]) -> str:
        if self.winner is None:
            return f"no run's pick satisfies {self.rule}"
        if self.stability is None:
            return f"{names[self.winner]} (stability unknown: {self.note})"
        also = f"; also {', '.join(names[i] for i in self.also)}" if self.also else ""
        return f"{names[self.winner]} (stable {100 * self.stability:.0f} %{also})"


def select_across(selections: list[Selection], rule) -> AcrossRuns:
    """Apply `rule` to the runs' overall picks (scored on the same axes), and to every paired resample of them
    when all runs drew the same seeds the same way. Weighted sums use each run's style / style(base)."""
    rule = parse_rule(rule)
    picks = [(i, s) for i, s in enumerate(selections) if s.overall.point is not None]
    if not picks:
        return AcrossRuns(None, rule, note="no run has a pick")

    def scaled(sel, style):
        return style / sel.style_scale if rule.kind == "weighted" else style

    points = [replace(s.overall.point, cell=f"run{i}/{s.overall.point.cell}",
                      style=scaled(s, s.overall.point.style)) for i, s in picks]
    run_of = {key(p): i for p, (i, _) in zip(points, picks)}
    choice = select(points, rule)
    if choice.point is None:
        return AcrossRuns(None, rule, note=choice.note)
    winner = run_of[key(choice.point)]
    boots = [s.bootstrap for _, s in picks]
    if any(b is None for b in boots) or len({b.draws() for b in boots}) > 1:
        why = ("a run has no bootstrap" if any(b is None for b in boots)
               else "runs drew different seeds (num_gen, identity_num or bootstrap settings differ)")
        return AcrossRuns(winner, rule, note=why)
    resampled = {}
    for p, (_, s) in zip(points, picks):
        st, ident = s.bootstrap.values[(s.overall.point.epoch, s.overall.point.cell)]
        resampled[key(p)] = (scaled(s, st), ident)
    b = boots[0]
    boot = assess(points, rule, choice, [], resampled, 1.0, None, b.resamples, b.seed, b.n_gen, b.n_id)
    u = boot.overall
    return AcrossRuns(winner, rule, u.stability, tuple(run_of[key(p)] for p in u.also))
