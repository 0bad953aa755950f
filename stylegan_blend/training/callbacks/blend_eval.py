"""Blend the base model with the current G_ema at every checkpoint and score every cell (evaluation.BlendScorer).

Rows go to metrics.csv, scalars, a table and sample strips to the loggers, and the selection so far to
selection.json. The work runs inside an isolated RNG so training is bit-for-bit the same with or without this
callback. Under DDP every rank scores its share of the cells (each cell's seeds are fixed, so the split does not
change a value) and rank 0 writes the gathered rows.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

from ...errors import UserError
from ...evaluation.blend_scorer import BlendScorer, isolated_rng, style_gaps
from ...evaluation.run_selection import run_selection
from ...run.files import atomic_write, file_sha256
from ...run.layout import METRICS_FILE, SELECTION_PLOT_FILE, blend_samples_dir, cell_name, network_path
from ...run.tables import append_metrics_rows, read_metrics_rows, scored_cells
from ...selection import Selection
from .export import is_checkpoint_epoch, skip_bad_epoch

PlotSelection = Callable[[object, Selection, str], None]  # (file, selection, title): draws the scatter as PNG


class BlendEvalCallback(pl.Callback):
    """`selection`: the run's `selection:` config; `plot_selection` draws the style × identity scatter that the
    loggers get (the app passes the report's figure: training does not import reporting)."""

    def __init__(self, scorer: BlendScorer, every_n_epochs: int, selection: dict | None = None,
                 plot_selection: PlotSelection | None = None):
        self.scorer, self.every_n_epochs, self.selection = scorer, int(every_n_epochs), selection
        self.plot_selection = plot_selection
        self._table: list[list] = []  # all epochs so far: each logged table is the whole epoch x swap grid

    @classmethod
    def from_config(cls, cfg: dict, run_dir: Path, every_n_epochs: int,
                    plot_selection: PlotSelection | None = None) -> BlendEvalCallback:
        return cls(BlendScorer.from_config(cfg, run_dir), every_n_epochs, cfg.get("selection"), plot_selection)

    def on_fit_start(self, trainer, pl_module) -> None:
        # here the module is on its final device; fail before training on a bad grid or a damaged metrics.csv,
        # without shifting the seed. Rank 0 checks and loads; every rank raises the same error (one rank alone
        # would hang the others)
        self.scorer.device = str(pl_module.device)
        error = None
        if trainer.global_rank == 0:
            with isolated_rng():
                try:
                    read_metrics_rows(self.scorer.run_dir / METRICS_FILE)
                    self.scorer.prepare()
                except UserError as e:
                    error = str(e)
        error = trainer.strategy.broadcast(error, src=0)
        if error:
            raise UserError(error)

    def on_train_epoch_end(self, trainer: pl.Trainer, module) -> None:
        if not is_checkpoint_epoch(trainer, self.every_n_epochs):
            return
        if skip_bad_epoch(trainer, module):
            return
        epoch = trainer.current_epoch + 1
        skip = None
        if trainer.global_rank == 0:
            done = scored_cells(self.scorer.run_dir / METRICS_FILE, self.scorer.extractor.name)
            skip = set(done.get(epoch, set())) | (done.get(-1, set()))
        skip = trainer.strategy.broadcast(skip, src=0)
        cells = self.scorer.pending_cells(skip)
        world, rank = trainer.world_size, trainer.global_rank
        if world > 1:  # the same G_ema everywhere (its w_avg buffer follows each rank's last batch)
            for t in module.G_ema.state_dict().values():
                torch.distributed.broadcast(t, src=0)
        exported = network_path(self.scorer.run_dir, epoch)  # NetworkExport ran first: the npz get its hash
        with isolated_rng():
            rows = self.scorer.score_cells(module.G_ema, epoch, module.kimg, cells[rank::world],
                                           network_file=exported if exported.is_file() else None)
        if world > 1:
            parts = [None] * world
            torch.distributed.all_gather_object(parts, rows)
            rows = [r for part in parts for r in part]
            order = {(str(c[0]), c[1]): i for i, c in enumerate(cells)}
            rows.sort(key=lambda r: order[(str(r["swap_res"]), r["direction"])])  # stable: metric order kept
        if trainer.global_rank == 0:
            exported = network_path(self.scorer.run_dir, epoch)  # written by rank 0's NetworkExport
            sha = file_sha256(exported) if exported.is_file() else ""
            for r in rows:
                if r["swap_res"] != "base":
                    r["network_sha256"] = sha
            append_metrics_rows(self.scorer.run_dir / METRICS_FILE, rows)
            self._log(trainer, epoch, rows)
            with isolated_rng():
                self._log_selection(trainer)

    def _log(self, trainer, epoch: int, rows: list[dict]) -> None:
        if not trainer.loggers:
            return
        scalars = {f"blend/{r['metric']}/{cell_name(r['swap_res'], r['direction'])}": float(r["value"]) for r in rows}
        scalars.update(style_gaps(rows))
        metrics = sorted({r["metric"] for r in rows})
        values = {(cell_name(r["swap_res"], r["direction"]), r["metric"]): float(r["value"]) for r in rows}
        self._table += [[epoch, c] + [values.get((c, m)) for m in metrics] for c in sorted({c for c, _ in values})]
        paths = sorted(blend_samples_dir(self.scorer.run_dir, epoch).glob("*.png"))
        for lg in trainer.loggers:
            lg.log_metrics(scalars, step=trainer.global_step)
            if hasattr(lg, "log_table") and hasattr(lg, "log_image"):  # W&B: epoch x swap table + image strips
                lg.log_table(key="blend/table", columns=["epoch", "cell"] + metrics, data=list(self._table))
                lg.log_image(key="blend/samples", images=[str(p) for p in paths], caption=[p.stem for p in paths])

    def _log_selection(self, trainer) -> None:
        """The rule's pick so far with its bootstrap (selection.json), and (W&B) the summary line, the
        style-vs-identity scatter with error bars and the cell table behind it."""
        sel = run_selection(self.scorer.run_dir, self.selection, write=True)
        if sel is None or sel.overall.point is None:
            return
        front, chosen = sel.front_cells(), (sel.overall.point.epoch, sel.overall.point.cell)

        def ci(p, axis):
            got = sel.ci(p)
            return list(got[axis]) if got else [None, None]

        table = [[p.epoch, p.cell, p.label, p.style, *ci(p, 0), p.identity, *ci(p, 1), (p.epoch, p.cell) in front,
                  (p.epoch, p.cell) == chosen] for p in sel.points]
        summary = f"best by {sel.rule}: {sel.summary()}"
        path = self.scorer.run_dir / SELECTION_PLOT_FILE
        if self.plot_selection is not None:
            atomic_write(path, lambda f: self.plot_selection(f, sel, summary))
        u = sel.uncertainty(sel.overall)
        for lg in trainer.loggers:
            values = {f"blend/best_by_{sel.rule.kind}/value": sel.overall.value}
            if u is not None:
                values[f"blend/best_by_{sel.rule.kind}/stability"] = u.stability
            lg.log_metrics(values, step=trainer.global_step)
            run_summary = getattr(getattr(lg, "experiment", None), "summary", None)
            if run_summary is not None and hasattr(run_summary, "__setitem__"):  # W&B: the run's headline
                run_summary["best"] = summary
            if hasattr(lg, "log_table") and hasattr(lg, "log_image"):
                lg.log_table(key="blend/selection", columns=[
                    "epoch", "cell", "label", sel.style_metric, "style_ci_lo", "style_ci_hi", sel.identity_metric,
                    "identity_ci_lo", "identity_ci_hi", "on_front", "chosen"], data=table)
                if path.is_file():
                    lg.log_image(key="blend/selection_scatter", images=[str(path)], caption=[summary])
