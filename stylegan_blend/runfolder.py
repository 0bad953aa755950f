"""One run per folder, and resumes that continue exactly where the checkpoint stands.

- A folder that already holds a run is only trained into again when resuming (`ckpt_path=...`) or with
  `overwrite=true`, which moves the old run aside first: old scores never describe new networks.
- On resume from a checkpoint after epoch E, whatever a killed attempt wrote for later epochs (networks,
  metrics and diagnostics rows, logger rows, samples) and any temp file is removed before training goes on,
  so the redone epochs write their rows once and every row describes the file on disk.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
from pathlib import Path

import pytorch_lightning as pl

from .checkpoints.network import file_sha256, write_text_atomic  # noqa: F401  (re-exported)
from .errors import UserError

# Entries Hydra writes before our code runs; anything else means the folder holds (part of) a run.
_HYDRA_ENTRIES = (".hydra", ".eval")
_EPOCH_FILE = re.compile(r"epoch=(\d+)(?:-v\d+)?\.(?:pt|ckpt|png)$")
_TEMP = re.compile(r"(\.tmp$)|(\.tmp\.png$)")


def run_contents(run_dir: Path) -> list[str]:
    """Names of the entries of `run_dir` that belong to a previous run (Hydra's own files excluded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name not in _HYDRA_ENTRIES and p.suffix != ".log")


def claim_run_folder(run_dir: Path, resuming: bool, overwrite: bool, ckpt: str | None = None) -> str:
    """Decide what happens to `run_dir`; returns the one line saying which. Refuses a folder holding a run."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"paths.output_dir={run_dir} is a file; expected a run folder")
    found = run_contents(run_dir)
    if not found:
        return f"new run in {run_dir}"
    if resuming:
        return f"resuming the run in {run_dir}" + (f" from {ckpt}" if ckpt else " from its start (no checkpoint yet)")
    listed = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
    if not overwrite:
        raise UserError(f"{run_dir} already holds a run ({listed}); resume it with ckpt_path=last, or start "
                        f"over with overwrite=true (moves the old run aside)")
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside = aside.with_name(f"{aside.name.split('~')[0]}~{n}")
        n += 1
    aside.mkdir()
    for name in found + [h for h in _HYDRA_ENTRIES if (run_dir / h).exists()]:
        os.replace(run_dir / name, aside / name)
    return f"overwrite=true: moved the previous run in {run_dir} to {aside}; new run in {run_dir}"


def _filter_csv(path: Path, keep) -> int:
    """Rewrite a CSV keeping rows where keep(row) is true; returns how many were dropped."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    if not fields:
        return 0
    kept = [r for r in rows if keep(r)]
    if len(kept) == len(rows):
        return 0
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(kept)
    write_text_atomic(path, buf.getvalue())
    return len(rows) - len(kept)


def _int(value, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def newest_epoch(run_dir: Path) -> int:
    """The highest epoch with a checkpoint in the folder (0 if none)."""
    found = [int(m.group(1)) for p in (Path(run_dir) / "checkpoints").glob("epoch=*.ckpt")
             if (m := _EPOCH_FILE.search(p.name))]
    return max(found, default=0)


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Temp files left by a killed process (ours are `*.tmp` and `*.tmp.png`)."""
    gone = [p for p in Path(run_dir).rglob("*") if p.is_file() and _TEMP.search(p.name) and "wandb" not in p.parts]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def truncate_after(run_dir: Path, epochs_done: int) -> None:
    """Remove what a killed attempt wrote for epochs after `epochs_done` (they are redone), and temp files."""
    run_dir = Path(run_dir)
    remove_temp_files(run_dir)
    for folder in ("networks", "checkpoints", "samples"):
        for p in (run_dir / folder).glob("epoch=*") if (run_dir / folder).is_dir() else ():
            m = _EPOCH_FILE.search(p.name)
            if m and int(m.group(1)) > epochs_done:
                p.unlink()
    blends = run_dir / "samples" / "blends"
    for p in blends.glob("epoch=*") if blends.is_dir() else ():
        if p.is_dir() and _int(p.name.split("=")[1], -1) > epochs_done:
            shutil.rmtree(p)
    _filter_csv(run_dir / "metrics.csv", lambda r: r.get("swap_res") == "base" or _int(r.get("epoch"), 0) <= epochs_done)
    _filter_csv(run_dir / "diagnostics.csv", lambda r: _int(r.get("epoch"), 0) <= epochs_done)
    # Lightning's CSV rows carry the 0-based epoch they were logged in
    _filter_csv(run_dir / "csv" / "metrics.csv", lambda r: _int(r.get("epoch"), -1) < epochs_done)


class RunFolder(pl.Callback):
    """Cleans the run folder once the checkpoint is restored (the epoch count is known only then)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        if trainer.global_rank == 0:
            truncate_after(self.run_dir, trainer.current_epoch)


def resumable_csv_logger(run_dir: Path):
    """Lightning's CSVLogger, except that it keeps the rows already in csv/metrics.csv (it deletes them on start)."""
    from lightning_fabric.loggers.logger import rank_zero_experiment
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    class _Writer(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:  # the stock one deletes the previous rows
            pass

        def save(self) -> None:
            if not self.metrics_keys and os.path.isfile(self.metrics_file_path):
                with open(self.metrics_file_path, newline="") as f:
                    self.metrics_keys = list(csv.DictReader(f).fieldnames or [])
            super().save()

    class _Logger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _Writer(log_dir=self.log_dir)
            return self._experiment

    return _Logger(save_dir=str(run_dir), name="csv", version="", flush_logs_every_n_steps=1)
