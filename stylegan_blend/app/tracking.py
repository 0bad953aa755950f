"""Loggers, and W&B bookkeeping that a study can trust.

- the run id lives in the run folder (`wandb_run_id`), so `ckpt_path=last` and post-hoc scoring log into
  the same W&B run;
- `WANDB_MODE` from the environment wins over `logger.mode`;
- every logged row carries `kimg` (the x-axis of all charts) and `epoch`;
- a run is finished with its real exit code and, on failure, the error line in its summary.

`wandb` itself is imported only where a W&B run is opened or closed: a run with logger=csv does not pay for it.
"""
from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning_fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from ..errors import UserError
from ..run.files import write_text_atomic
from ..run.layout import CONFIG_FILE, RUN_ID_FILE, cell_name

LOGGER_KINDS = ("csv", "wandb", "none")


def is_multirun() -> bool:
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def current_job_name() -> str | None:
    """The job name of the running multirun job (its folder: number + swept keys), None in a single run."""
    return Path(HydraConfig.get().runtime.output_dir).name if is_multirun() else None


def make_logger(cfg: DictConfig, run_dir: Path, plain: dict,
                step_values: Callable[[], dict] | None = None) -> Logger | bool:
    """The logger `logger.kind` names (False for none: Lightning's "no logger")."""
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        return resumable_csv_logger(run_dir)
    if kind == "wandb":
        return wandb_logger(cfg.logger.project, run_dir, group=_wandb_group(cfg), name=_wandb_name(cfg, run_dir),
                            config=plain, mode=cfg.logger.mode, step_values=step_values)
    raise UserError(f"logger.kind={kind!r}; expected {', '.join(LOGGER_KINDS)}")


def _wandb_group(cfg: DictConfig) -> str:
    """The sweep folder (its last two parts) under multirun, else logger.group or the experiment name."""
    if cfg.logger.get("group"):
        return str(cfg.logger.group)
    if is_multirun():
        return "/".join(Path(HydraConfig.get().sweep.dir).parts[-2:])
    return str(cfg.name)


def _wandb_name(cfg: DictConfig, run_dir: Path) -> str:
    """A sweep job: its folder name (job number + swept keys); a single run: <experiment>/<run folder>."""
    return current_job_name() or f"{cfg.name}/{run_dir.name}"


def wandb_mode(configured: str | None) -> str:
    return os.environ.get("WANDB_MODE") or configured or "offline"


def run_id(run_dir: Path, create: bool = True) -> str | None:
    """The W&B run id stored in the run folder; a new one is written (atomically) when none is there."""
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip() or None
    if not create:
        return None
    rid = secrets.token_hex(6)  # W&B ids: lowercase letters and digits
    write_text_atomic(path, rid + "\n")
    return rid


class _KimgLogger(WandbLogger):
    """kimg as the one x-axis, and the 1-based epoch of the checkpoint names (not Lightning's 0-based counter)."""

    step_values: Callable[[], dict] | None = None

    def log_metrics(self, metrics, step=None):
        row = dict(metrics)
        if self.step_values is not None:
            values = self.step_values()
            row.setdefault("kimg", values["kimg"])
            row["epoch"] = values["epoch"]
        super().log_metrics(row, step=None)  # no trainer/global_step: kimg is the x-axis


def wandb_logger(project: str, run_dir: Path, group: str | None, name: str, config: dict, mode: str | None,
                 step_values: Callable[[], dict] | None = None) -> WandbLogger:
    """A Lightning WandbLogger resuming the run folder's W&B run, with kimg as the one x-axis."""
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


def finish_failed(e: BaseException) -> None:
    """Close the W&B run of a training that raised `e`, with the exit code and error line the command gives."""
    if isinstance(e, SystemExit):
        code = e.code if isinstance(e.code, int) else 1
        line = f"error: exited with code {code}"
    else:
        code = 130 if isinstance(e, KeyboardInterrupt) else getattr(e, "exit_code", 1)
        line = f"error: {e}" if str(e) else f"error: {type(e).__name__}"
    finish(code, line.splitlines()[0])


def log_posthoc(run_dir: Path, rows: list[dict], mode: str | None = None, summary: dict | None = None) -> bool:
    """Log post-hoc metric rows into the run they score (same W&B run id), and `summary` into its summary
    (the re-made pick); False if the run used no W&B."""
    rid = run_id(run_dir, create=False)
    if rid is None or not rows:
        return False
    import wandb

    cfg_file = Path(run_dir) / CONFIG_FILE
    project = "stylegan-blend"
    if cfg_file.is_file():
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


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer without deleting the rows already in the file (it does on start)."""

    def _check_log_dir_exists(self) -> None:
        pass

    def save(self) -> None:
        if not self.metrics_keys and os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])
        super().save()


class _ResumableCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def resumable_csv_logger(run_dir: Path) -> CSVLogger:
    """Lightning's CSVLogger (csv/metrics.csv), except that a resumed run keeps the rows already there."""
    return _ResumableCSVLogger(save_dir=str(run_dir), name="csv", version="", flush_logs_every_n_steps=1)
