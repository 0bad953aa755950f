"""Selection over a run's metrics.csv rows: which metrics form the two axes, per-epoch and overall choices."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UserError
from .rules import TIE_BREAK, Choice, Point, Rule, parse_rule, points_from_rows, select_run
from .uncertainty import DEFAULT_RESAMPLES, Bootstrap, Uncertainty, assess, seed_counts

IDENTITY_NETWORKS = ("dlib", "facenet", "lpips", "proxy")  # preference order: a face-recognition network first
IDENTITY_ORDER = tuple(f"idnorm_{n}" for n in IDENTITY_NETWORKS) + tuple(f"idloss_{n}" for n in IDENTITY_NETWORKS)
SELECTION_FILE = "selection.json"


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
    """rule / style_metric / identity_metric / bootstrap (resamples, 0 = none) / bootstrap_seed from a
    `selection:` config node (dict), a rule string, or None."""
    if isinstance(cfg, (str, Rule)):
        return dict(rule=parse_rule(cfg), style_metric=None, identity_metric=None)
    cfg = dict(cfg or {})
    out = dict(rule=parse_rule({"rule": cfg.get("rule", "knee"), "param": cfg.get("param")}),
               style_metric=cfg.get("style_metric"), identity_metric=cfg.get("identity_metric"))
    for k in ("bootstrap", "bootstrap_seed"):
        if cfg.get(k) is not None:
            if not isinstance(cfg[k], int) or cfg[k] < 0:
                raise UserError(f"selection.{k}={cfg[k]!r}: expected a whole number >= 0")
            out[k] = cfg[k]
    return out


def select_rows(rows, rule="knee", style_metric: str | None = None, identity_metric: str | None = None,
                seeds=None, bootstrap: int = DEFAULT_RESAMPLES, bootstrap_seed: int = 0,
                resolution: int | None = None) -> Selection | None:
    """The selection over MetricRow objects; None when the run has no identity scores (scored before
    identity existed): then only one-sided minima can be shown, and they are not called best.

    `seeds` (evaluation.per_seed.RunSeedData or alike) resamples each cell's scores over seeds: with it, every
    choice gets a `bootstrap` of that many paired resamples (seeded by `bootstrap_seed`: the same every time)."""
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


def run_selection(run_dir, selection=None, rows=None, write: bool = False) -> Selection | None:
    """The run's selection with its bootstrap, under `selection` (a `selection:` node, a rule string; default the
    run's own config, else knee); None when the run has no metrics.csv or no identity scores. `write`: also
    write <run>/selection.json (atomically) — what every run leaves behind."""
    from pathlib import Path

    from ..evaluation.per_seed import RunSeedData
    from ..reporting import read_metrics

    run_dir = Path(run_dir)
    if rows is None:
        if not (run_dir / "metrics.csv").is_file():
            return None
        rows = read_metrics(run_dir / "metrics.csv")
    if selection is None:
        selection = saved_selection(run_dir)
    options = selection_options(selection)
    sel = select_rows(rows, **options, seeds=RunSeedData(run_dir, rows), resolution=run_resolution(run_dir))
    if write:
        write_selection_json(run_dir, sel, options["rule"])
    return sel


def run_resolution(run_dir) -> int | None:
    """data.resolution of the run's saved config (for the tie-break's count of fine-tuned layers)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
        value = OmegaConf.select(cfg, "data.resolution", default=None, throw_on_resolution_failure=False)
        return int(value) if value is not None else None
    except Exception:  # noqa: BLE001 - unknown resolution: the tie-break infers it from the swap points
        return None


def write_selection_json(run_dir, sel: Selection | None, rule=None) -> None:
    """<run>/selection.json, atomically; a run without identity scores says that nothing was chosen, and why."""
    import json
    from pathlib import Path

    from ..checkpoints.network import atomic_write

    record = sel.to_json() if sel is not None else dict(
        rule=str(parse_rule(rule or "knee")), chosen=None, summary="no identity scores: nothing chosen",
        why="the run has no identity scores, so only one-sided style minima exist, and they are not a choice")
    note = Path(run_dir) / "scores" / "style_reference.json"
    try:
        record["style_reference"] = json.loads(note.read_text()) if note.is_file() else None
    except (OSError, ValueError):
        record["style_reference"] = None
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    atomic_write(Path(run_dir) / SELECTION_FILE, lambda f: f.write(text.encode()))


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
    from dataclasses import replace

    from .rules import select
    from .uncertainty import key

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
