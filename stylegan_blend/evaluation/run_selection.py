"""The selection of a scored run folder: its metrics.csv rows, its saved rule, and the per-seed scores behind the
bootstrap (which is why this lives with evaluation: resampling a style distance needs the distances' maths)."""

from __future__ import annotations

from pathlib import Path

from ..run.layout import METRICS_FILE
from ..run.reader import run_resolution, saved_selection
from ..run.tables import MetricRow, read_metrics
from ..selection.run import Selection, select_rows, selection_options, write_selection_json
from .per_seed import RunSeedData


def run_selection(
    run_dir: str | Path, selection=None, rows: list[MetricRow] | None = None, write: bool = False
) -> Selection | None:
    """The run's selection with its bootstrap, under `selection` (a `selection:` config node, a rule string;
    default the run's own saved config, else the default rule); None when the run has no metrics.csv or no
    identity scores. `write`: also write <run>/selection.json (atomically), what every run leaves behind."""
    run_dir = Path(run_dir)
    if rows is None:
        if not (run_dir / METRICS_FILE).is_file():
            return None
        rows = read_metrics(run_dir / METRICS_FILE)
    if selection is None:
        selection = saved_selection(run_dir)
    options = selection_options(selection)
    sel = select_rows(rows, **options, seeds=RunSeedData(run_dir, rows), resolution=run_resolution(run_dir))
    if write:
        write_selection_json(run_dir, sel, options["rule"])
    return sel
