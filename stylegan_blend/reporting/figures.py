"""Matplotlib figures of the report: score heatmap, score-vs-epoch curves, overfitting diagnostics.

Uses the object-oriented API (`Figure` + Agg canvas), so nothing touches pyplot's global backend or state.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..run.tables import DiagnosticRow
from ..selection import Choice
from .scores import ScoreGrid, is_blend

CMAP = "viridis_r"  # low (good) = bright yellow, high (bad) = dark
R_T_TARGET = 0.6  # ADA's target for r_t = E[sign(D(real))] (Karras et al. 2020)

# Diagnostics panels: title, metrics on the main axis; anything else logged goes to an "other" panel.
DIAGNOSTIC_PANELS = (
    ("ADA overfitting heuristic r_t (target 0.6)", ("r_t",)),
    ("D output: real train vs real val vs fake", ("d_real_train", "d_real_val", "d_real", "d_fake", "d_gap")),
    ("memorisation (NN-distance ratio, < 1: copying)", ("memorisation",)),
    ("losses and regularisers", ("loss_G", "loss_D", "r1_penalty", "pl_penalty")),
)
STYLE_GAP_PANEL = ("style gap: distance to held-out val − to train (fine-tuned G; > 0: nearer its training "
                   "images, memorising)", ("style_gap",))  # only for runs whose style is scored against val
SECONDARY = {"r_t": "ada_p"}  # plotted on a twin axis of the same panel
SERIES_LABELS = {"d_gap": "d_gap (train − val)", "d_real": "d_real (training batches, augmented)",
                 "d_fake": "d_fake (training batches)"}


def cell_label(cell: str) -> str:
    """swap32_low_base -> 'swap 32\\nlow_base' so heatmap columns stay narrow."""
    if not is_blend(cell):
        return cell
    res, _, direction = cell.removeprefix("swap").partition("_")
    return f"swap {res}\n{direction}"


def _format(value: float) -> str:
    return "0" if abs(value) < 1e-12 else f"{value:.3g}"  # the base against itself: 0 up to rounding


def value_range(grids: list[ScoreGrid]) -> tuple[float, float]:
    """Colour range over the blend cells of all grids (shared between runs); base/none may fall outside it
    (they are references, often far away) and are then drawn in the end colour with their value printed."""
    values = [g.values[:, [i for i, c in enumerate(g.cells) if is_blend(c)]] for g in grids]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size == 0:
        finite = np.concatenate([g.values[np.isfinite(g.values)] for g in grids] + [np.array([0.0, 1.0])])
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 0.5 * abs(low or 1), high + 0.5 * abs(high or 1))


def curve_range(grids: list[ScoreGrid]) -> tuple[float, float] | None:
    """Shared y range of the score curves of several runs (all cells, references included)."""
    finite = [v for g in grids for v in g.values.ravel() if math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = 0.05 * (high - low) or 0.5
    return low - pad, high + pad


def heatmap(path: Path, grid: ScoreGrid, title: str, best: Choice | None,
            vrange: tuple[float, float], identity: ScoreGrid | None = None) -> Figure:
    """Epoch × swap heatmap coloured by style with every value printed and the rule's pick boxed; with
    `identity` (the same epochs × cells) each cell prints both axes, style over identity loss, because the
    pick is made on both and the colour alone would suggest the lowest style wins."""
    n_rows, n_cols = grid.values.shape
    fig = Figure(figsize=(max(5.0, 1.05 * n_cols + 2.2), max(3.0, 0.48 * n_rows + 2.0)), dpi=110,
                 layout="constrained")
    ax = fig.add_subplot()
    norm = Normalize(*vrange)
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid.values), cmap=cmap, norm=norm, aspect="auto",
                      interpolation="nearest")
    rgba = image.cmap(norm(np.nan_to_num(grid.values)))
    for i, epoch in enumerate(grid.epochs):
        for j, cell in enumerate(grid.cells):
            value = grid.values[i, j]
            if not math.isfinite(value):
                ax.text(j, i, "–", ha="center", va="center", color="#777777", fontsize=9)
                continue
            r, g, b, _ = rgba[i, j]
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            is_best = best is not None and (epoch, cell) == (best.epoch, best.cell)
            text = ("★ " if is_best else "") + _format(value)
            if identity is not None:
                ident = _lookup(identity, epoch, cell)
                text += "\n" + ("–" if not math.isfinite(ident) else _format(ident))
            ax.text(j, i, text, ha="center", va="center", fontsize=8 if identity is not None else 9,
                    fontweight="bold" if is_best else "normal", color="white" if dark else "black")
    if best is not None:
        i, j = grid.epochs.index(best.epoch), grid.cells.index(best.cell)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#e4002b", linewidth=3))
    for j, cell in enumerate(grid.cells):  # thin separators around the reference columns
        if not is_blend(cell):
            ax.axvline(j - 0.5, color="white", linewidth=2)
            ax.axvline(j + 0.5, color="white", linewidth=2)
    ax.set_xticks(range(n_cols), [cell_label(c) for c in grid.cells], fontsize=8)
    ax.set_yticks(range(n_rows), [f"epoch {e}\n{grid.kimg.get(e, math.nan):g} kimg" for e in grid.epochs],
                  fontsize=8)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    ax.set_title(_wrap_title(title, fig.get_figwidth()), fontsize=9)
    extend = _extend(grid.values, vrange)
    label = f"{grid.metric} (lower is better)"
    if identity is not None:
        label = f"{grid.metric}: colour and top number (lower is better)"
    fig.colorbar(image, ax=ax, shrink=0.9, extend=extend, label=label)
    fig.savefig(path)
    return fig


def _lookup(grid: ScoreGrid, epoch: int, cell: str) -> float:
    if epoch not in grid.epochs or cell not in grid.cells:
        return math.nan
    return float(grid.values[grid.epochs.index(epoch), grid.cells.index(cell)])


def _extend(values: np.ndarray, vrange: tuple[float, float]) -> str:
    finite = values[np.isfinite(values)]
    below, above = bool((finite < vrange[0]).any()), bool((finite > vrange[1]).any())
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (below, above)]


def score_curves(path: Path, grid: ScoreGrid, title: str, best: Choice | None,
                 ylim: tuple[float, float] | None) -> Figure:
    """Score vs epoch, one line per blend; base and none dashed as references."""
    fig = Figure(figsize=(6.4, 5.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for j, cell in enumerate(grid.cells):
        y = grid.values[:, j]
        if not np.isfinite(y).any():
            continue
        style = dict(marker="o", markersize=4) if is_blend(cell) else dict(linestyle="--", color="0.45" if
                                                                           cell == "base" else "0.15")
        ax.plot(grid.epochs, y, label=cell, **style)
    if best is not None:
        ax.plot([best.epoch], [best.point.style], marker="*", markersize=16, color="#e4002b", linestyle="none",
                label=f"{best.how}: {best.cell} @ epoch {best.epoch}")
        ax.axvline(best.epoch, color="#e4002b", linewidth=0.8, alpha=0.5)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{grid.metric} (lower is better)")
    ax.set_title(_wrap_title(title, fig.get_figwidth()), fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=7, ncols=3)
    fig.savefig(path)
    return fig


def _wrap_title(title: str, fig_width_in: float, fontsize: float = 9) -> str:
    """Break a title into lines that fit the figure (matplotlib's wrap=True ignores constrained layout)."""
    import textwrap

    width = max(20, int(fig_width_in * 72 / (0.55 * fontsize)))  # ~0.55 em per character
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def diagnostic_series(rows: list[DiagnosticRow]) -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (epochs, values), finite values only: a metric never logged with a value (pl_penalty
    with pl_weight 0) is absent, and epochs without a value (a lazy regulariser not run) leave no gap."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for r in sorted(rows, key=lambda r: (r.epoch, r.kimg)):
        if not math.isfinite(r.value):
            continue
        xs, ys = series.setdefault(r.metric, ([], []))
        xs.append(r.epoch)
        ys.append(r.value)
    return series


def diagnostic_epochs(series: dict) -> list[int]:
    return sorted({x for xs, _ in series.values() for x in xs})


def panel_layout(series_names) -> list[tuple[str, tuple[str, ...]]]:
    known = {m for _, metrics in DIAGNOSTIC_PANELS + (STYLE_GAP_PANEL,) for m in metrics} | set(SECONDARY.values())
    other = tuple(sorted(set(series_names) - known))
    gap = [STYLE_GAP_PANEL] if "style_gap" in set(series_names) else []
    return list(DIAGNOSTIC_PANELS) + gap + ([(f"other logged values: {', '.join(other)}", other)] if other else [])


def panel_ranges(all_series: list[dict]) -> dict[str, tuple[float, float]]:
    """Per-panel y range over several runs, so side-by-side diagnostics share a scale."""
    ranges = {}
    names = set().union(*(s.keys() for s in all_series)) if all_series else set()
    for title, metrics in panel_layout(names):
        values = [v for s in all_series for m in metrics if m in s for v in s[m][1] if math.isfinite(v)]
        if title.startswith("ADA"):
            values += [R_T_TARGET]
        if title.startswith("memorisation") and values:
            values += [1.0]
        if values:
            low, high = min(values), max(values)
            pad = 0.05 * (high - low) or 0.5
            ranges[title] = (low - pad, high + pad)
    return ranges


def diagnostics(path: Path, series: dict, best: Choice | None, xlim: tuple[float, float],
                ylims: dict[str, tuple[float, float]]) -> Figure:
    """The overfitting panels next to the score curves: where the best blend sits relative to D memorising."""
    panels = panel_layout(series.keys())
    n_cols = 2
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(8.4, 3.0 * n_rows), dpi=110)  # fixed margins: constrained layout costs seconds here
    axes = fig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw=dict(
        left=0.07, right=0.92, bottom=0.6 / (3.0 * n_rows), top=1 - 0.35 / (3.0 * n_rows),
        wspace=0.32, hspace=0.45)).ravel()
    for ax, (title, metrics) in zip(axes, panels):
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xlim(*xlim)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        plotted = [m for m in metrics if m in series]
        for m in plotted:
            style = dict(linestyle=":", color="black") if m == "d_gap" else dict(marker=".")
            ax.plot(*series[m], label=SERIES_LABELS.get(m, m), **style)
        if title.startswith("ADA"):
            ax.axhline(R_T_TARGET, color="#e4002b", linestyle="--", linewidth=1, label="target 0.6")
        if title.startswith("style gap") and plotted:
            ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1, label="no gap")
        if title.startswith("memorisation") and plotted:
            ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1, label="held-out reals (1.0)")
        legend_ax = ax
        for m in (SECONDARY[m] for m in metrics if SECONDARY.get(m) in series):
            legend_ax = ax.twinx()
            legend_ax.plot(*series[m], color="tab:gray", alpha=0.7, label=m)
            legend_ax.set_ylabel(m, fontsize=8)
        if best is not None:
            ax.axvline(best.epoch, color="#e4002b", linewidth=0.8, alpha=0.5)
        if not plotted:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.5")
            continue
        if title in ylims:
            ax.set_ylim(*ylims[title])
        handles = [h for a in dict.fromkeys((ax, legend_ax)) for h in a.get_legend_handles_labels()[0]]
        legend_ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)  # top axis: not hidden
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.savefig(path)
    return fig


def selection_scatter(path: Path, selection, title: str) -> None:
    """Every blend cell in the (style ↓, identity loss ↓) plane, one colour per epoch, labelled `e48·s32`;
    the overall Pareto front as a step line, per-epoch picks ringed, the rule's overall pick starred."""
    points = [p for p in selection.points if math.isfinite(p.style) and math.isfinite(p.identity)]
    fig = Figure(figsize=(7.2, 5.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    epochs = sorted({p.epoch for p in points})
    cmap = matplotlib.colormaps["viridis"]
    colour = {e: cmap(i / max(1, len(epochs) - 1)) for i, e in enumerate(epochs)}
    for e in epochs:
        mine = [p for p in points if p.epoch == e]
        ax.scatter([p.style for p in mine], [p.identity for p in mine], color=colour[e], s=30, zorder=3,
                   label=f"epoch {e}")
    for p in points:
        ax.annotate(p.label, (p.style, p.identity), fontsize=6, xytext=(3, 3), textcoords="offset points",
                    color="0.25")
        ci = selection.ci(p)
        if ci is not None:  # 95 % bootstrap interval on each axis (paired over seeds)
            (s_lo, s_hi), (i_lo, i_hi) = ci
            ax.errorbar([p.style], [p.identity], xerr=[[max(0.0, p.style - s_lo)], [max(0.0, s_hi - p.style)]],
                        yerr=[[max(0.0, p.identity - i_lo)], [max(0.0, i_hi - p.identity)]], fmt="none",
                        ecolor=colour[p.epoch], elinewidth=0.8, alpha=0.6, zorder=2)
    front = list(selection.overall.front)
    if front:
        ax.step([p.style for p in front], [p.identity for p in front], where="post", color="#e4002b",
                linewidth=1.2, alpha=0.8, zorder=2, label="Pareto front (all epochs)")
    picks = [c.point for c in selection.per_epoch if c.point is not None]
    ax.scatter([p.style for p in picks], [p.identity for p in picks], facecolors="none", edgecolors="black",
               s=110, linewidths=1.2, zorder=4, label=f"best of epoch by {selection.rule}")
    chosen = selection.overall.point
    u = selection.uncertainty(selection.overall)
    if u is not None and u.also:
        ax.scatter([p.style for p in u.also], [p.identity for p in u.also], facecolors="none", edgecolors="#e4002b",
                   linestyles="--", s=200, linewidths=1.0, zorder=4, label="indistinguishable from the pick")
    if chosen is not None:
        ax.scatter([chosen.style], [chosen.identity], marker="*", s=320, color="#e4002b", edgecolors="black",
                   zorder=5, label=f"best by {selection.rule}: {selection.summary()}")
    b = selection.bootstrap
    bars = (f"bars: 95 % intervals over {b.resamples} paired bootstrap resamples of the seeds" if b is not None
            else f"no error bars: {selection.uncertainty_note}")
    ax.set_xlabel(f"style: {selection.style_metric} to the target set (lower = more stylised)")
    ax.set_ylabel(f"identity loss: {selection.identity_metric} vs base, same seeds (lower = same face)")
    title = f"{title}\n{bars}"
    ax.set_title(_wrap_title(title, fig.get_figwidth()), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.savefig(path)
