"""`build_report`: one self-contained folder (index.html + PNGs) that turns the seed study's eyeballed
epoch × swap image grid into a measured choice of (epoch, swap_res, direction), with the command that
exports that blend.
"""
from __future__ import annotations

import os
import shlex
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..blending import direction_pair
from ..errors import UserError
from . import figures, page
from .page import THUMB_HEIGHT
from .rundir import Run, load_run
from ..selection import select_rows, selection_options
from ..selection.run import saved_selection
from .scores import BestCell, ScoreGrid, best_cells, default_metric, metric_label, score_grid

GRID_SEEDS = 3  # seeds shown per grid cell (each sample PNG is a row of square fixed-seed images)
STYLIZED = "stylized"  # written into report/stylized/ by `stylegan-blend stylize`; kept across rebuilds


@dataclass
class CellImage:
    thumb: str | None  # relative to the report folder; None when there is no usable image
    full: str | None
    problem: str = ""  # "no image" / "unreadable image"


@dataclass
class RunSection:
    """One run, fully resolved for the page."""
    slug: str
    run: Run
    metric: str
    label: str
    grid: ScoreGrid
    per_epoch: list[BestCell]
    overall: BestCell | None
    command: str | None = None
    command_note: str = ""
    images: dict[tuple[int, str], CellImage] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    stylized: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)
    selection: object = None  # selection.Selection: the declared rule's picks; None without identity scores
    lowest: BestCell | None = None  # the one-sided minimum of `metric`, shown next to the rule's pick

    @property
    def best_label(self) -> str:
        """How `overall` / `per_epoch` were chosen, printed next to every "best"."""
        return f"best by {self.selection.rule}" if self.selection is not None else f"lowest {self.metric}"


def choose_metric(run: Run, metric: str | None) -> str:
    names = {r.metric for r in run.metrics}
    if metric is None:
        try:
            return default_metric(names)
        except UserError as exc:
            raise UserError(f"{run.path / 'metrics.csv'}: {exc}") from None
    if metric not in names:
        raise UserError(f"{run.path / 'metrics.csv'}: no metric {metric!r}; available: {', '.join(sorted(names))}")
    return metric


def blend_command(run: Run, best: BestCell) -> tuple[str | None, str]:
    """`stylegan-blend blend ...` that rebuilds the scored blend, and a note on anything the user must check."""
    tuned = str(run.network_path(best.epoch).resolve())
    base = run.base_network or "<BASE>"
    try:
        low, high = direction_pair(base, tuned, best.direction)
    except UserError as exc:
        return None, str(exc)
    options = [token for k, v in run.blend_options.items() for token in (f"--{k}", str(v))]
    command = shlex.join(["stylegan-blend", "blend", "--low", low, "--high", high,
                          "--swap-res", str(best.swap_res), *options, "--out", "best_blend.pt"])
    notes = [run.config_note] if run.config_note else []
    if not run.network_path(best.epoch).is_file():
        notes.append(f"{run.network_path(best.epoch)} does not exist (yet)")
    return command, "; ".join(notes)


def _thumbnail(source: Path, dest: Path) -> None:
    """First GRID_SEEDS square tiles of a sample row, downscaled: enough to compare cells at a glance."""
    with Image.open(source) as im:
        im = im.convert("RGB")
        width, height = im.size
        if width % height == 0 and width // height > GRID_SEEDS:
            im = im.crop((0, 0, GRID_SEEDS * height, height))
        if im.height > THUMB_HEIGHT:
            im = im.resize((max(1, round(im.width * THUMB_HEIGHT / im.height)), THUMB_HEIGHT), Image.LANCZOS)
        im.save(dest)


def _copy_images(section: RunSection, folder: Path) -> None:
    img_dir = folder / "img" / section.slug
    (img_dir / "full").mkdir(parents=True, exist_ok=True)
    for epoch in section.grid.epochs:
        for cell in section.grid.cells:
            source = section.run.sample(epoch, cell)
            if source is None:
                section.images[(epoch, cell)] = CellImage(None, None, "no image")
                continue
            name = f"e{epoch:04d}_{cell}.png"
            try:
                _thumbnail(source, img_dir / name)
            except (UnidentifiedImageError, OSError, ValueError):
                section.images[(epoch, cell)] = CellImage(None, None, "unreadable image")
                continue
            shutil.copyfile(source, img_dir / "full" / name)
            section.images[(epoch, cell)] = CellImage(f"img/{section.slug}/{name}",
                                                      f"img/{section.slug}/full/{name}")


def _copy_stylized(section: RunSection, folder: Path, kept: Path | None) -> None:
    """Show `stylize` outputs; those already in the report's own stylized/ are kept, others copied in."""
    for source_dir in section.run.stylized_dirs:
        for png in sorted(source_dir.glob("*.png")):
            if kept is not None and source_dir.resolve() == kept.resolve():
                section.stylized.append((f"{STYLIZED}/{png.name}", png.name))
            else:
                dest = folder / "img" / section.slug / STYLIZED / png.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, dest)
                section.stylized.append((f"img/{section.slug}/{STYLIZED}/{png.name}", png.name))


def _draw_figures(sections: list[RunSection], folder: Path) -> None:
    """Heatmaps and curves; runs scored with the same metric share colour and y scales, all share epochs."""
    (folder / "fig").mkdir()
    series = {s.slug: figures.diagnostic_series(s.run.diagnostics or []) for s in sections}
    epochs = [e for s in sections for e in s.grid.epochs]
    pad = max(0.5, 0.03 * (max(epochs) - min(epochs)))
    xlim = (min(epochs) - pad, max(epochs) + pad)
    diag_ylims = figures.panel_ranges([series[s.slug] for s in sections if s.run.diagnostics])
    for metric in sorted({s.metric for s in sections}):
        same = [s for s in sections if s.metric == metric]
        vrange = figures.value_range([s.grid for s in same])
        ylim = figures.curve_range([s.grid for s in same]) if len(same) > 1 else None
        for s in same:
            title = f"{s.run.name}: {s.label}"
            s.figures["heatmap"] = f"fig/{s.slug}_heatmap.png"
            figures.heatmap(folder / s.figures["heatmap"], s.grid, title + "\nepoch × swap, lower is better",
                            s.overall, vrange)
            s.figures["curves"] = f"fig/{s.slug}_curves.png"
            figures.score_curves(folder / s.figures["curves"], s.grid, title, s.overall, ylim)
            if s.selection is not None:
                s.figures["scatter"] = f"fig/{s.slug}_selection.png"
                figures.selection_scatter(folder / s.figures["scatter"], s.selection,
                                          f"{s.run.name}: every blend cell, style vs identity")
            if s.run.diagnostics:
                s.figures["diagnostics"] = f"fig/{s.slug}_diagnostics.png"
                figures.diagnostics(folder / s.figures["diagnostics"], series[s.slug], s.overall, xlim,
                                    diag_ylims)


def _check_target(target: Path) -> None:
    """Only ever replace a folder this function wrote (or one holding nothing but stylize outputs)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder; expected a report folder to (re)write")
    entries = {p.name for p in target.iterdir()}
    index = target / "index.html"
    ours = index.is_file() and page.GENERATOR_MARK in index.read_text(errors="replace")
    if not ours and not entries <= {STYLIZED}:
        raise UserError(f"{target}: refusing to replace a folder that is not a stylegan-blend report "
                        f"(no index.html written by `stylegan-blend report`); choose another --out")


def _replace_folder(tmp: Path, target: Path) -> None:
    """Swap the finished folder in: readers see the old report or the new one, never a half-written one."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _as_best(choice, metric: str) -> BestCell:
    p = choice.point
    return BestCell(choice.scope, p.epoch, p.kimg, p.cell, p.swap_res, p.direction, metric, p.style, str(choice.rule))


def load_sections(run_dirs: list[Path], metric: str | None = None, rule=None) -> list[RunSection]:
    """Read and score every run (no files written): what the page and the CLI summary are made from.
    `rule` (a selection rule or `selection:` node; default each run's own, else knee) picks the cells."""
    sections = []
    for i, run_dir in enumerate(run_dirs):
        run = load_run(Path(run_dir))
        chosen = choose_metric(run, metric)
        grid = score_grid(run.metrics, chosen, extra_epochs={e for e, _ in run.samples},
                          extra_cells={c for _, c in run.samples})
        best = best_cells(run.metrics, chosen)
        lowest = best[-1] if best else None
        sel = select_rows(run.metrics, **dict(selection_options(rule or saved_selection(run.path)),
                                              style_metric=chosen))
        if sel is not None:
            best = [_as_best(c, chosen) for c in sel.per_epoch if c.point is not None]
            best += [_as_best(sel.overall, chosen)] if sel.overall.point is not None else []
        overall = best[-1] if best and best[-1].scope == "overall" else None
        section = RunSection(slug=f"run{i}", run=run, metric=chosen, label=metric_label(chosen, run.metrics),
                             grid=grid, per_epoch=[b for b in best if b.scope == "epoch"], overall=overall,
                             selection=sel, lowest=lowest)
        if overall is not None:
            section.command, section.command_note = blend_command(run, overall)
        sections.append(section)
    return sections


def default_out_dir(run_dirs: list[Path], out_dir: Path | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    if len(run_dirs) != 1:
        raise UserError(f"{len(run_dirs)} run directories given: a report of several runs needs --out DIR")
    return Path(run_dirs[0]) / "report"


def build_report(run_dirs: list[Path], out_dir: Path | None = None, metric: str | None = None,
                 rule=None) -> Path:
    """Write the report folder (default `<run_dir>/report/` for one run) and return its index.html.

    `metric` defaults per run to kid, else fid, else a proxy kd_*/fd_*; lower is better.
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise UserError("no run directory given; expected outputs/<experiment>/<run>/ with metrics.csv")
    target = default_out_dir(run_dirs, out_dir)
    return write_report(load_sections(run_dirs, metric, rule), target)


def write_report(sections: list[RunSection], target: Path) -> Path:
    """Build the folder next to `target` and swap it in when complete; an existing report's `stylized/`
    (written there by `stylegan-blend stylize`) is carried over."""
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        kept = target / STYLIZED
        if kept.is_dir():
            shutil.copytree(kept, tmp / STYLIZED)
        for section in sections:
            _copy_images(section, tmp)
            _copy_stylized(section, tmp, kept if kept.is_dir() else None)
        _draw_figures(sections, tmp)
        shown = {rel for s in sections for rel, _ in s.stylized}
        shared = [(f"{STYLIZED}/{p.name}", p.name) for p in (sorted(kept.glob("*.png")) if kept.is_dir() else [])
                  if f"{STYLIZED}/{p.name}" not in shown]
        (tmp / "index.html").write_text(page.render(sections, shared), encoding="utf-8")
        _replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / "index.html"
