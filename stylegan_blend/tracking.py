"""W&B bookkeeping that a study can trust.

- the run id lives in the run folder (`wandb_run_id`), so `ckpt_path=last` and post-hoc scoring log into
  the same W&B run;
- `WANDB_MODE` from the environment wins over `logger.mode`;
- every logged row carries `kimg` (the x-axis of all charts) and `epoch`;
- a run is finished with its real exit code and, on failure, the error line in its summary.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

RUN_ID_FILE = "wandb_run_id"


def append_stats(run_dir: Path, row: dict) -> None:
    """One JSON line per epoch in stats.jsonl (NaN as null, so every line is valid JSON)."""
    import json
    import math
    import time

    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    with open(Path(run_dir) / "stats.jsonl", "a") as f:
        f.write(json.dumps({"timestamp": round(time.time(), 3), **clean}) + "\n")


def _git(*args: str) -> str | None:
    import subprocess

    try:
        r = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def write_training_options(run_dir: Path, config: dict) -> Path:
    """training_options.json: the resolved config, versions, git commit and command of the first launch
    (a resume keeps it; atomic write)."""
    import json
    import platform
    import sys
    from datetime import datetime, timezone

    path = Path(run_dir) / "training_options.json"
    if path.is_file():
        return path
    import pytorch_lightning
    import torch

    from . import __version__

    status = _git("status", "--porcelain")
    record = {"config": config, "command": sys.argv, "created": datetime.now(timezone.utc).isoformat(),
              "versions": {"stylegan_blend": __version__, "python": platform.python_version(),
                           "torch": torch.__version__, "pytorch_lightning": pytorch_lightning.__version__},
              "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path


def wandb_mode(configured: str | None) -> str:
    return os.environ.get("WANDB_MODE") or configured or "offline"


def run_id(run_dir: Path, create: bool = True) -> str | None:
    """The W&B run id stored in the run folder; a new one is written (atomically) when none is there."""
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip() or None
    if not create:
        return None
    import secrets

    rid = secrets.token_hex(6)  # W&B ids: lowercase letters and digits
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(rid + "\n")
    os.replace(tmp, path)
    return rid


def wandb_logger(project: str, run_dir: Path, group: str | None, name: str, config: dict, mode: str | None,
                 step_values: Callable[[], dict] | None = None):
    """A Lightning WandbLogger resuming the run folder's W&B run, with kimg as the one x-axis."""
    from pytorch_lightning.loggers import WandbLogger

    class _KimgLogger(WandbLogger):
        def log_metrics(self, metrics, step=None):
            row = dict(metrics)
            if self.step_values is not None:
                values = self.step_values()
                row.setdefault("kimg", values["kimg"])
                row["epoch"] = values["epoch"]  # 1-based as checkpoint names, not Lightning's 0-based counter
            super().log_metrics(row, step=None)  # no trainer/global_step: kimg is the x-axis

    logger = _KimgLogger(project=project, save_dir=str(run_dir), group=group, name=name, config=config,
                         mode=wandb_mode(mode), id=run_id(run_dir), resume="allow")
    logger.step_values = step_values
    run = logger.experiment
    if hasattr(run, "define_metric"):
        run.define_metric("kimg")
        run.define_metric("*", step_metric="kimg")
    return logger


def finish(exit_code: int, error: str | None = None) -> None:
    """Close the active W&B run (if any) with the job's real outcome."""
    import wandb

    if wandb.run is None:
        return
    if error:
        wandb.run.summary["error"] = error
    wandb.run.summary["exit_code"] = exit_code
    wandb.finish(exit_code=exit_code)


def log_posthoc(run_dir: Path, rows: list[dict], mode: str | None = None, summary: dict | None = None) -> bool:
    """Log post-hoc metric rows into the run they score (same W&B run id), and `summary` into its summary
    (the re-made pick); False if the run used no W&B."""
    rid = run_id(run_dir, create=False)
    if rid is None or not rows:
        return False
    import wandb

    from .callbacks.blend_eval import cell_name

    cfg_file = Path(run_dir) / ".hydra" / "config.yaml"
    project = "stylegan-blend"
    if cfg_file.is_file():
        from omegaconf import OmegaConf

        lg = OmegaConf.load(cfg_file).get("logger") or {}
        project, mode = lg.get("project", project), mode or lg.get("mode")
    run = wandb.init(project=project, dir=str(run_dir), id=rid, resume="allow", mode=wandb_mode(mode),
                     reinit="create_new")
    run.define_metric("kimg")
    run.define_metric("*", step_metric="kimg")
    by_epoch: dict[tuple, dict] = {}
    for r in rows:
        row = by_epoch.setdefault((int(r["epoch"]), float(r["kimg"])), {})
        row[f"blend/{r['metric']}/{cell_name(r['swap_res'], r['direction'])}"] = float(r["value"])
    for (epoch, kimg), row in sorted(by_epoch.items()):
        run.log({"kimg": kimg, "epoch": epoch, **row})
    for k, v in (summary or {}).items():
        run.summary[k] = v
    run.finish(exit_code=0)
    return True
