"""The plain records a run leaves beside its tables: stats.jsonl, training_options.json and a sweep job's job.json."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from .files import write_text_atomic
from .layout import JOB_FILE, OPTIONS_FILE, STATS_FILE


def append_stats(run_dir: str | Path, row: dict) -> None:
    """One JSON line per epoch in stats.jsonl (NaN as null, so every line is valid JSON)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    with open(Path(run_dir) / STATS_FILE, "a") as f:
        f.write(json.dumps({"timestamp": round(time.time(), 3), **clean}) + "\n")


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def write_training_options(run_dir: str | Path, config: dict) -> Path:
    """training_options.json: the resolved config, versions, git commit and command of the first launch
    (a resume keeps it)."""
    path = Path(run_dir) / OPTIONS_FILE
    if path.is_file():
        return path
    status = _git("status", "--porcelain")
    record = {
        "config": config,
        "command": sys.argv,
        "created": datetime.now(UTC).isoformat(),
        "versions": {
            "stylegan_blend": _version("stylegan-blend"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pytorch_lightning": _version("pytorch-lightning"),
        },
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None},
    }
    return write_text_atomic(path, json.dumps(record, indent=1, default=str) + "\n")


def write_job_record(run_dir: str | Path, status: str, error: str | None = None, best: str | None = None) -> Path:
    """job.json: how a sweep job ended (completed / failed with its error line) and its chosen blend."""
    return write_text_atomic(
        Path(run_dir) / JOB_FILE, json.dumps({"status": status, "error": error, "best": best}) + "\n"
    )


def read_job_record(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / JOB_FILE
    return json.loads(path.read_text()) if path.is_file() else None
