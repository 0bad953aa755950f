"""`build_report`: one self-contained folder (index.html + PNGs) that turns the seed study's eyeballed
epoch × swap image grid into a measured choice of (epoch, swap_res, direction), with the command that
exports that blend.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
import uuid
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress

from ..blending.config import BlendConfig
from ..blending.swap import direction_pair
from ..errors import UserError
from ..evaluation.per_seed import RunSeedData
from ..run.layout import REPORT_DIR
from ..run.reader import STYLIZED_DIR, Run, load_run, run_resolution, sample_seeds, saved_selection
from ..selection import Choice, select_rows, selection_options
from ..selection.config import DEFAULT_RULE
from ..selection.run import default_style_metric, select_across
from . import figures, page, sheet
from .model import CellImage, RunSection
from .page import THUMB_HEIGHT
from .scores import best_cells, latest_scores, metric_label, score_grid

GRID_SEEDS = 3  # seeds shown per grid cell (each sample PNG is a row of square fixed-seed images)
STYLIZED = STYLIZED_DIR  # written into report/stylized/ by `stylegan-blend stylize`; kept across rebuilds


def choose_metric(run: Run, metric: str | None) -> str:
    names = {r.metric for r in run.metrics}
    if metric is None:
        try:
            return default_style_metric(names)
        except UserError as exc:
            raise UserError(f"{run.path / 'metrics.csv'}: {exc}") from None
    if metric not in names:
        raise UserError(f"{run.path / 'metrics.csv'}: no metric {metric!r}; available: {', '.join(sorted(names))}")
    return metric


def blend_command(run: Run, best: Choice) -> tuple[str | None, str]:
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


def cell_title(cell: str) -> str:
    """Row label of a sheet: what the generator is."""
    if cell == "base":
        return "base (starting model)"
    if cell == "none":
        return "fine-tuned (no blend)"
    res, _, direction = cell.removeprefix("swap").partition("_")
    return f"swap {res} ({direction})"


def _tiles(section: RunSection, epoch: int, cell: str):
    source = section.run.sample(epoch, cell)
    if source is None:
        return None
    try:
        with Image.open(source) as im:
            return sheet.split_strip(im)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _sheet_rows(section: RunSection, rows: list[tuple[int, str, str]], marked_rows: set[int], title: str):
    """rows: (epoch, cell, label) -> a sheet with one row per generator and one column per seed."""
    tiles, labels, marked = [], [], []
    for epoch, cell, label in rows:
        row = _tiles(section, epoch, cell)
        if not row:
            continue
        if (epoch, cell, label) in marked_rows:
            marked += [(len(tiles), c) for c in range(len(row))]
        tiles.append(row)
        labels.append(label)
    if not tiles:
        return None
    seeds = sample_seeds(section.run.path, default=BlendConfig().sample_seeds)
    n = max(len(r) for r in tiles)
    cols = [f"seed {seeds[i]}" if i < len(seeds) else f"image {i + 1}" for i in range(n)]
    return sheet.comparison_sheet(tiles, labels, cols, title=title, marked=marked)


def _score_text(section: RunSection, epoch: int, cell: str) -> str:
    """Both axes of a sheet row: the style distance and (with identity scores) the identity loss."""
    i, j = section.grid.epochs.index(epoch), section.grid.cells.index(cell)
    value = section.grid.values[i, j]
    text = f"{section.metric} {value:.3g}" if math.isfinite(value) else "no score"
    if section.selection is not None:
        ident = section.identity_grid
        k = (ident.epochs.index(epoch), ident.cells.index(cell)) if (
            epoch in ident.epochs and cell in ident.cells) else None
        v = ident.values[k] if k is not None else math.nan
        text += f" · {section.selection.identity_metric} " + (figures._format(v) if math.isfinite(v) else "–")
    return text


def _make_sheets(section: RunSection, folder: Path) -> None:
    """One labelled PNG per checkpoint (rows = base, swaps, fine-tuned; columns = seeds) and a "best
    cells" sheet (the best blend of every epoch between the base and the last fine-tuned model)."""
    out = folder / "sheets"
    out.mkdir(exist_ok=True)
    best_of_epoch = {b.epoch: b.cell for b in section.per_epoch}
    overall = (section.overall.epoch, section.overall.cell) if section.overall else None
    per_epoch = []
    for epoch in section.grid.epochs:
        rows = [(epoch, c, f"{cell_title(c)}\n{_score_text(section, epoch, c)}"
                           + ("  (best)" if best_of_epoch.get(epoch) == c else "")) for c in section.grid.cells]
        marked = {r for r in rows if best_of_epoch.get(epoch) == r[1]}
        kimg = section.grid.kimg.get(epoch)
        title = (f"{section.name}: epoch {epoch}" + (f" ({kimg:g} kimg)" if kimg is not None else "")
                 + f" · rows: generators, columns: seeds · framed = the epoch's blend {section.best_label}")
        im = _sheet_rows(section, rows, marked, title)
        if im is not None:
            rel = f"sheets/{section.slug}_epoch={epoch:04d}.png"
            sheet.save_sheet(folder / rel, im)
            per_epoch.append((rel, f"epoch {epoch}"))
    rows = [(section.grid.epochs[0], "base", f"{cell_title('base')}\n{_score_text(section, section.grid.epochs[0], 'base')}")] \
        if section.grid.epochs and "base" in section.grid.cells else []
    for b in section.per_epoch:
        star = "  (best overall)" if (b.epoch, b.cell) == overall else ""
        rows.append((b.epoch, b.cell, f"epoch {b.epoch}: {cell_title(b.cell)}\n{_score_text(section, b.epoch, b.cell)}"
                                      f"{star}"))
    if section.grid.epochs and "none" in section.grid.cells:
        last = section.grid.epochs[-1]
        rows.append((last, "none", f"epoch {last}: {cell_title('none')}\n{_score_text(section, last, 'none')}"))
    marked = {r for r in rows if overall is not None and (r[0], r[1]) == overall}
    pick = f": {section.selection.summary()}" if section.selection is not None and section.overall else ""
    im = _sheet_rows(section, rows, marked, f"{section.name}: best blend of each epoch (framed: {section.best_label} "
                                            f"over the run{pick}) between the base and the fine-tuned model")
    if im is not None:
        rel = f"sheets/{section.slug}_best.png"
        sheet.save_sheet(folder / rel, im)
        section.sheets.append((rel, "best cells"))
    section.sheets += per_epoch


def _runs_sheet(sections: list[RunSection], folder: Path) -> str | None:
    """Several runs: each run's best blend in one sheet, the best of all runs framed."""
    tiles, labels, marked = [], [], []
    for s in sections:
        if s.overall is None:
            continue
        row = _tiles(s, s.overall.epoch, s.overall.cell)
        if not row:
            continue
        if s.best_of_all:
            marked += [(len(tiles), c) for c in range(len(row))]
        tiles.append(row)
        labels.append(f"{s.name}\nepoch {s.overall.epoch}: {cell_title(s.overall.cell)}, "
                      f"{_score_text(s, s.overall.epoch, s.overall.cell)}" + ("  (best of all)" if s.best_of_all else ""))
    if not tiles:
        return None
    n = max(len(r) for r in tiles)
    seeds = sample_seeds(sections[0].run.path, default=BlendConfig().sample_seeds)
    cols = [f"seed {seeds[i]}" if i < len(seeds) else f"image {i + 1}" for i in range(n)]
    best = next((s.best_of_all_text for s in sections if s.best_of_all), "no run's pick compared")
    im = sheet.comparison_sheet(tiles, labels, cols, marked=marked,
                                title=f"best blend of each run (framed: {best})")
    rel = "sheets/runs_best.png"
    (folder / "sheets").mkdir(exist_ok=True)
    sheet.save_sheet(folder / rel, im)
    return rel


def style_gap_series(section: RunSection) -> dict[str, tuple[list[int], list[float]]]:
    """{"style_gap": (epochs, values)}: the fine-tuned model's style distance to the held-out val split minus to
    the training split (`train_` rows, present when style is scored against val); {} otherwise."""
    val = latest_scores(section.run.metrics, section.metric)
    train = latest_scores(section.run.metrics, f"train_{section.metric}")
    epochs = sorted(e for (e, c) in train if c == "none" and (e, c) in val)
    if not epochs:
        return {}
    return {"style_gap": (epochs, [val[(e, "none")].value - train[(e, "none")].value for e in epochs])}


def _draw_figures(sections: list[RunSection], folder: Path) -> None:
    """Heatmaps and curves; runs scored with the same metric share colour and y scales, all share epochs."""
    (folder / "fig").mkdir()
    series = {s.slug: dict(figures.diagnostic_series(s.run.diagnostics or []), **style_gap_series(s))
              for s in sections}
    epochs = [e for s in sections for e in s.grid.epochs] + [e for v in series.values()
                                                             for e in figures.diagnostic_epochs(v)]
    pad = max(0.5, 0.03 * (max(epochs) - min(epochs)))
    xlim = (min(epochs) - pad, max(epochs) + pad)
    diag_ylims = figures.panel_ranges([series[s.slug] for s in sections if series[s.slug]])
    for metric in sorted({s.metric for s in sections}):
        same = [s for s in sections if s.metric == metric]
        vrange = figures.value_range([s.grid for s in same])
        ylim = figures.curve_range([s.grid for s in same]) if len(same) > 1 else None
        for s in same:
            title = f"{s.name}: {s.label}"
            s.figures["heatmap"] = f"fig/{s.slug}_heatmap.png"
            both = "" if s.selection is None else f" · each cell: {s.metric} over {s.selection.identity_metric}"
            figures.heatmap(folder / s.figures["heatmap"], s.grid, title + f"\nepoch × swap, lower is better{both}"
                            + (f"\n★ {s.best_label}: {s.selection.summary()}" if s.selection is not None else ""),
                            s.overall, vrange, s.identity_grid if s.selection is not None else None)
            s.figures["curves"] = f"fig/{s.slug}_curves.png"
            figures.score_curves(folder / s.figures["curves"], s.grid, title, s.overall, ylim)
            if s.selection is not None:
                s.figures["scatter"] = f"fig/{s.slug}_selection.png"
                figures.selection_scatter(folder / s.figures["scatter"], s.selection,
                                          f"{s.run.name}: every blend cell, style vs identity")
            if series[s.slug]:
                s.figures["diagnostics"] = f"fig/{s.slug}_diagnostics.png"
                figures.diagnostics(folder / s.figures["diagnostics"], series[s.slug], s.overall, xlim,
                                    diag_ylims)


class _Steps:
    """Progress of a report build on stderr (a bar on a terminal; silent otherwise: reports of a few runs
    take seconds, a sweep's can take minutes)."""

    def __init__(self, total: int):
        self.total, self.progress, self.task = total, None, None

    def __enter__(self):
        if sys.stderr.isatty():
            self.progress = Progress(console=Console(stderr=True), transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task("report", total=self.total)
        return self

    def __call__(self, what: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=f"report: {what}")

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False


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
                                              style_metric=chosen),
                          seeds=RunSeedData(run.path, run.metrics), resolution=run_resolution(run.path))
        if sel is not None:
            best = [c for c in sel.per_epoch if c.point is not None]
            best += [sel.overall] if sel.overall.point is not None else []
        overall = best[-1] if best and best[-1].scope == "overall" else None
        section = RunSection(slug=f"run{i}", run=run, metric=chosen, label=metric_label(chosen, run.metrics),
                             grid=grid, per_epoch=[b for b in best if b.scope == "epoch"], overall=overall,
                             selection=sel, lowest=lowest)
        if sel is not None:
            section.identity_grid = score_grid(run.metrics, sel.identity_metric)
        if overall is not None:
            section.command, section.command_note = blend_command(run, overall)
        sections.append(section)
    for section, name in zip(sections, run_labels([s.run for s in sections])):
        section.name = name
    mark_best_of_all(sections)
    return sections


def run_labels(runs: list[Run]) -> list[str]:
    """Short names: the Hydra overrides whose values differ between the runs (the swept keys), else the
    folder name. `train.r1_gamma=10 data=anime` vs `... data=disney` -> `data=anime`, `data=disney`."""
    parsed = [dict(o.split("=", 1) if "=" in o else (o, "") for o in r.overrides) for r in runs]
    keys = sorted({k for p in parsed for k in p})
    swept = [k for k in keys if len({p.get(k) for p in parsed}) > 1] if len(runs) > 1 else []
    labels = [", ".join(f"{k}={p[k]}" for k in swept if k in p) or r.name for r, p in zip(runs, parsed)]
    if len(set(labels)) < len(labels):  # not told apart by overrides: fall back to the folder names
        labels = [f"{label} ({r.name})" if labels.count(label) > 1 else label for label, r in zip(labels, runs)]
    return labels


def mark_best_of_all(sections: list[RunSection]) -> None:
    """Among runs scored on the same two axes, flag the one whose pick the selection rule prefers, with the
    bootstrap's stability (the same rule and logic as within a run; the runs' own rule when they share one,
    else knee). Runs without identity scores have no pick to compare and are never "best"."""
    if len(sections) < 2:
        return
    groups: dict[tuple, list[RunSection]] = {}
    for s in sections:
        if s.selection is not None and s.selection.overall.point is not None:
            groups.setdefault((s.metric, s.selection.identity_metric), []).append(s)
    for same in groups.values():
        if len(same) < 2:
            continue
        rules = {str(s.selection.rule) for s in same}
        rule = same[0].selection.rule if len(rules) == 1 else DEFAULT_RULE
        across = select_across([s.selection for s in same], rule)
        if across.winner is not None:
            winner = same[across.winner]
            winner.best_of_all = True
            winner.best_of_all_text = f"best of all runs by {across.rule}: " + across.text(
                [s.name or s.run.name for s in same])


def default_out_dir(run_dirs: list[Path], out_dir: Path | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    if len(run_dirs) != 1:
        raise UserError(f"{len(run_dirs)} run directories given: a report of several runs needs --out DIR")
    return Path(run_dirs[0]) / REPORT_DIR


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
        with _Steps(2 * len(sections) + 2) as step:
            for section in sections:
                step(f"{section.name}: images")
                _copy_images(section, tmp)
                _copy_stylized(section, tmp, kept if kept.is_dir() else None)
                step(f"{section.name}: comparison sheets")
                _make_sheets(section, tmp)
            runs_sheet = _runs_sheet(sections, tmp) if len(sections) > 1 else None
            step("figures")
            _draw_figures(sections, tmp)
            step("page")
        shown = {rel for s in sections for rel, _ in s.stylized}
        shared = [(f"{STYLIZED}/{p.name}", p.name) for p in (sorted(kept.glob("*.png")) if kept.is_dir() else [])
                  if f"{STYLIZED}/{p.name}" not in shown]
        (tmp / "index.html").write_text(page.render(sections, shared, runs_sheet), encoding="utf-8")
        _replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / "index.html"
