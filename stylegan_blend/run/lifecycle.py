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
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from .files import TEMP_SUFFIX, write_text_atomic
from .layout import (
    BLEND_SAMPLES_DIR,
    CHECKPOINTS_DIR,
    CONFIG_DIR,
    DIAGNOSTICS_FILE,
    EPOCH_FILE,
    LAST_CHECKPOINT,
    LOGGER_METRICS_FILE,
    METRICS_FILE,
    NETWORKS_DIR,
    SAMPLES_DIR,
)

# Entries Hydra writes before our code runs; anything else means the folder holds (part of) a run.
HYDRA_ENTRIES = (CONFIG_DIR, ".eval")
_TEMP = re.compile(rf"({re.escape(TEMP_SUFFIX)}$)|(\.tmp\.png$)")
_HPC_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")  # Lightning's name for a SLURM requeue checkpoint


def run_contents(run_dir: Path) -> list[str]:
    """Names of the entries of `run_dir` that belong to a previous run (Hydra's own files excluded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name not in HYDRA_ENTRIES and p.suffix != ".log")


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
        raise UserError(
            f"{run_dir} already holds a run ({listed}); resume it with ckpt_path=last, or start "
            f"over with overwrite=true (moves the old run aside)"
        )
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside = aside.with_name(f"{aside.name.split('~')[0]}~{n}")
        n += 1
    aside.mkdir()
    for name in found + [h for h in HYDRA_ENTRIES if (run_dir / h).exists()]:
        os.replace(run_dir / name, aside / name)
    return f"overwrite=true: moved the previous run in {run_dir} to {aside}; new run in {run_dir}"


def _filter_csv(path: Path, keep: Callable[[dict], bool]) -> int:
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
    found = [
        int(m.group(1))
        for p in (Path(run_dir) / CHECKPOINTS_DIR).glob("epoch=*.ckpt")
        if (m := EPOCH_FILE.search(p.name))
    ]
    return max(found, default=0)


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Temp files left by a killed process (ours end in `.tmp`; older versions wrote `*.tmp.png`)."""
    gone = [p for p in Path(run_dir).rglob("*") if p.is_file() and _TEMP.search(p.name) and "wandb" not in p.parts]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def truncate_after(run_dir: Path, epochs_done: int) -> None:
    """Remove what a killed attempt wrote for epochs after `epochs_done` (they are redone), and temp files."""
    run_dir = Path(run_dir)
    remove_temp_files(run_dir)
    for folder in (NETWORKS_DIR, CHECKPOINTS_DIR, SAMPLES_DIR):
        for p in (run_dir / folder).glob("epoch=*") if (run_dir / folder).is_dir() else ():
            m = EPOCH_FILE.search(p.name)
            if m and int(m.group(1)) > epochs_done:
                p.unlink()
    blends = run_dir / BLEND_SAMPLES_DIR
    for p in blends.glob("epoch=*") if blends.is_dir() else ():
        if p.is_dir() and _int(p.name.split("=")[1], -1) > epochs_done:
            shutil.rmtree(p)
    _filter_csv(run_dir / METRICS_FILE, lambda r: r.get("swap_res") == "base" or _int(r.get("epoch"), 0) <= epochs_done)
    _filter_csv(run_dir / DIAGNOSTICS_FILE, lambda r: _int(r.get("epoch"), 0) <= epochs_done)
    # Lightning's CSV rows carry the 0-based epoch they were logged in
    _filter_csv(run_dir / LOGGER_METRICS_FILE, lambda r: _int(r.get("epoch"), -1) < epochs_done)


def requeued_checkpoint(run_dir: Path) -> str | None:
    """A requeued SLURM job re-runs its command unchanged: continue from the newest state it left, Lightning's
    `hpc_ckpt_N.ckpt` (written when SLURM sent the requeue signal) or `checkpoints/last.ckpt` (an epoch finished
    in the grace period after the signal is newer)."""
    found = [p for p in [*Path(run_dir).glob("hpc_ckpt_*.ckpt"), Path(run_dir) / LAST_CHECKPOINT] if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None


def next_hpc_checkpoint(run_dir: Path) -> str:
    """`hpc_ckpt_{N+1}.ckpt` after the existing ones (Lightning's name, which its SLURM resume also looks for)."""
    names = (_HPC_CHECKPOINT.fullmatch(p.name) for p in Path(run_dir).glob("hpc_ckpt_*.ckpt"))
    numbers = [int(m.group(1)) for m in names if m]
    return str(Path(run_dir) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt")


def newest_resumable_run(experiment_root: Path) -> Path | None:
    """The run folder under outputs/<name>/ whose checkpoints/last.ckpt is newest."""
    if not experiment_root.is_dir():
        return None
    lasts = [p for p in experiment_root.glob(f"*/{LAST_CHECKPOINT}") if p.is_file()]
    return max(lasts, key=lambda p: p.stat().st_mtime).parent.parent if lasts else None
