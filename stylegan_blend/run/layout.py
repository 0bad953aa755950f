"""Where everything in a run folder lives: each name spelled once, here."""

from __future__ import annotations

import re
from pathlib import Path

METRICS_FILE = "metrics.csv"  # long format: the blend scores (tables.METRICS_COLUMNS)
DIAGNOSTICS_FILE = "diagnostics.csv"  # long format: per-epoch training diagnostics (tables.DIAGNOSTICS_COLUMNS)
SELECTION_FILE = "selection.json"  # the declared rule's pick, with its bootstrap
STATS_FILE = "stats.jsonl"  # one JSON line per epoch
OPTIONS_FILE = "training_options.json"  # resolved config, command, versions, git commit of the first launch
RUN_ID_FILE = "wandb_run_id"  # the W&B run this folder logs into (resume and post-hoc scoring continue it)
JOB_FILE = "job.json"  # a sweep job's outcome
FAILED_FILE = "FAILED"  # a failed sweep job's traceback
CONFIG_DIR = ".hydra"  # config.yaml (unresolved), overrides.yaml, hydra.yaml of the first launch
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
OVERRIDES_FILE = f"{CONFIG_DIR}/overrides.yaml"
NETWORKS_DIR = "networks"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINTS_DIR}/last.ckpt"
SAMPLES_DIR = "samples"
BLEND_SAMPLES_DIR = f"{SAMPLES_DIR}/blends"
SELECTION_PLOT_FILE = f"{SAMPLES_DIR}/selection.png"  # the style × identity scatter W&B shows
SCORES_DIR = "scores"
STYLE_REFERENCE_FILE = f"{SCORES_DIR}/style_reference.json"  # which split style was scored against, and why
LOGGER_METRICS_FILE = "csv/metrics.csv"  # Lightning's CSVLogger (logger=csv): its own columns, 0-based epochs
REPORT_DIR = "report"

REFERENCE_CELLS = ("base", "none")  # the unblended base model and fine-tuned G_ema every blend is judged against
EPOCH_FILE = re.compile(r"epoch=(\d+)(?:-v\d+)?\.(?:pt|ckpt|png)$")


def epoch_name(epoch: int) -> str:
    """`epoch=0012`: 1-based, as the checkpoints, networks, samples and scores of that epoch are named."""
    return f"epoch={int(epoch):04d}"


def cell_name(swap_res: str | int, direction: str | None) -> str:
    """The cell id shared by metrics.csv rows, sample and score file names: `base`, `none` or `swap<r>_<direction>`."""
    if str(swap_res) in REFERENCE_CELLS:
        return str(swap_res)
    return f"swap{int(swap_res)}_{direction}"


def network_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / NETWORKS_DIR / f"{epoch_name(epoch)}.pt"


def sample_grid_path(run_dir: str | Path, epoch: int) -> Path:
    """The fixed-z G_ema grid of an epoch."""
    return Path(run_dir) / SAMPLES_DIR / f"{epoch_name(epoch)}.png"


def blend_samples_dir(run_dir: str | Path, epoch: int) -> Path:
    """The sample strips of an epoch's cells."""
    return Path(run_dir) / BLEND_SAMPLES_DIR / epoch_name(epoch)


def blend_sample_path(run_dir: str | Path, epoch: int, cell: str) -> Path:
    """A cell's fixed-seed sample strip."""
    return blend_samples_dir(run_dir, epoch) / f"{cell}.png"


def cell_scores_path(run_dir: str | Path, epoch: int, cell: str) -> Path:
    """A cell's per-seed scores (evaluation.per_seed)."""
    return Path(run_dir) / SCORES_DIR / epoch_name(epoch) / f"{cell}.npz"


def reference_scores_path(run_dir: str | Path, extractor: str) -> Path:
    """The style reference's summary for one feature extractor (evaluation.per_seed)."""
    return Path(run_dir) / SCORES_DIR / f"reference_{extractor}.npz"
