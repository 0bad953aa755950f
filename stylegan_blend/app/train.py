"""`stylegan-blend-train`: compose the config, check it, wire the run's objects, fit, then pick the blend."""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning_fabric.utilities.rank_zero import _get_rank
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..data.datamodule import StyleGANDataModule
from ..errors import Terminated, UserError, failure_line, report_failure
from ..evaluation.run_selection import run_selection
from ..reporting.figures import selection_scatter
from ..run.files import write_text_atomic
from ..run.layout import CHECKPOINTS_DIR, CONFIG_DIR, FAILED_FILE, LAST_CHECKPOINT
from ..run.lifecycle import claim_run_folder, newest_epoch, requeued_checkpoint
from ..run.records import write_job_record, write_training_options
from ..training.callbacks.blend_eval import BlendEvalCallback
from ..training.callbacks.export import AtomicCheckpointIO, EpochCheckpoint, NetworkExport, RunFolder
from ..training.callbacks.requeue import SlurmRequeue
from ..training.module import StyleGAN2Module, TrainingDiverged, check_resume_checkpoint
from ..training.precision import check_precision
from . import tracking
from .config import CONF_DIR, register_config, slurm_or
from .hydra_hooks import choice_text
from .preflight import preflight
from .tracking import is_multirun

register_config()


def run_dir_of(cfg: DictConfig) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def slurm_restart_count() -> int:
    """How many times SLURM has requeued this job (preemption, timeout, `scontrol requeue`); 0 outside SLURM."""
    if not slurm_or(True, False):
        return 0
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path in (None, ""):
        if slurm_restart_count() > 0:
            found = requeued_checkpoint(run_dir)
            print(f"SLURM requeue {slurm_restart_count()}: " + (f"resuming from {found}" if found else
                                                                 "no checkpoint yet, starting over"), file=sys.stderr)
            return found
        return None
    if cfg.ckpt_path == "last":
        last = run_dir / LAST_CHECKPOINT
        if not last.exists():
            print(f"ckpt_path=last: no {last} yet, starting a new run", file=sys.stderr)
            return None
        return str(last)
    if not Path(cfg.ckpt_path).is_file():
        raise UserError(f"ckpt_path={cfg.ckpt_path}: file not found (expected a Lightning .ckpt of this run)")
    return str(cfg.ckpt_path)


def _save_config(cfg: DictConfig, run_dir: Path) -> None:
    """The run's record in .hydra/, written here (hydra.output_subdir is null) so that a refused start
    never replaces the config of the run already in the folder."""
    folder = run_dir / CONFIG_DIR
    if HydraConfig.initialized() and HydraConfig.get().output_subdir is not None:
        return  # a resume: Hydra writes its own record to .hydra/resume-*, the first launch's stays
    write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        write_text_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(hc.overrides.task))
        write_text_atomic(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": hc}))


def train(cfg: DictConfig) -> Path:
    """Fine-tune per `cfg`; returns the run directory."""
    run_dir = run_dir_of(cfg)
    preflight(cfg, run_dir)  # every config check first: before Lightning, logger, data or features
    check_precision(cfg.trainer.precision)
    ckpt_path = _resume_path(cfg, run_dir)
    # one process owns the folder: under SLURM/torchrun every task runs this, with its rank in the environment
    first = int(_get_rank() or 0) == 0
    if first:
        resuming = cfg.ckpt_path not in (None, "") or slurm_restart_count() > 0
        print(claim_run_folder(run_dir, resuming, bool(cfg.get("overwrite", False)), ckpt_path))
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = StyleGANDataModule(path=cfg.data.path, resolution=cfg.data.resolution, batch_size=cfg.train.batch_size,
                            mirror=cfg.data.mirror, num_workers=cfg.data.num_workers, seed=cfg.seed)
    module = StyleGAN2Module(plain, run_dir=str(run_dir))
    if ckpt_path is not None:
        epoch = check_resume_checkpoint(ckpt_path, module)
        newest = newest_epoch(run_dir)
        if newest > epoch and Path(ckpt_path).resolve() != (run_dir / LAST_CHECKPOINT).resolve():
            raise UserError(f"ckpt_path={ckpt_path} is epoch {epoch} but {run_dir} already holds epochs up to "
                            f"{newest}, which resuming here would replace; resume with ckpt_path=last, or branch "
                            f"into a new paths.output_dir")
    if first:  # only once the run is accepted: a refused start leaves the folder's record as it was
        _save_config(cfg, run_dir)
        write_training_options(run_dir, plain)
    every = int(cfg.checkpoint.every_n_epochs)
    callbacks = [
        RunFolder(run_dir),
        NetworkExport(run_dir, every, source=cfg.model.init_from),
        EpochCheckpoint(every, dirpath=str(run_dir / CHECKPOINTS_DIR), filename="epoch={epochs_done:04.0f}",
                        auto_insert_metric_name=False, save_last=bool(cfg.checkpoint.save_last)),
    ]
    if slurm_or(True, False):
        callbacks.append(SlurmRequeue())
    if cfg.callbacks.blend_eval and cfg.blend.base:
        callbacks.insert(2, BlendEvalCallback.from_config(plain, run_dir, every, plot_selection=selection_scatter))
    if cfg.callbacks.rich_progress and cfg.trainer.get("enable_progress_bar", True) and sys.stdout.isatty():
        callbacks.append(RichProgressBar())
    logger = tracking.make_logger(cfg, run_dir, plain,
                                  step_values=lambda: {"kimg": module.kimg, "epoch": module.current_epoch + 1})
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()], _convert_="all")
    try:
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
            if module.nonfinite_phases:  # the run ended in a bad epoch: its result is not a trained network
                last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
                raise TrainingDiverged(f"the final epoch {module.epochs_done} had non-finite losses in "
                                       f"{', '.join(sorted(module.nonfinite_phases))}; last good checkpoint: {last}")
        except SIGTERMException:
            last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "no checkpoint"
            raise Terminated(f"SIGTERM: stopped after epoch {module.epochs_done} (saved: {last}); "
                             f"resume with ckpt_path=last") from None
    except BaseException as e:
        if cfg.logger.kind == "wandb":
            tracking.finish_failed(e)
        raise
    if cfg.logger.kind == "wandb":
        tracking.finish(0)
    return run_dir


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Returns the selection rule's value of the chosen blend, which hparams_search minimises."""
    try:
        run_dir = train(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep records a failed job and goes on with the others
        if is_multirun() and not isinstance(e, Terminated):  # SIGTERM stops the sweep too, with its exit code
            out = run_dir_of(cfg)
            write_text_atomic(out / FAILED_FILE, "".join(traceback.format_exception(e)))
            found = failure_line(e)
            line = f"error: {found[0]}" if found else f"error: {type(e).__name__}: {e}"
            write_job_record(out, "failed", error=line.splitlines()[0])
            print(f"error: job {out.name} failed: {found[0] if found else e}", file=sys.stderr)
            return float("inf")
        code = report_failure(e)
        if code is None:
            raise
        sys.exit(code)
    selection = cfg.get("selection")
    chosen = run_selection(run_dir, OmegaConf.to_container(selection, resolve=True) if selection is not None else None,
                           write=True)
    if is_multirun():
        write_job_record(run_dir, "completed", best=choice_text(chosen))
    print(f"run directory: {run_dir}")
    if chosen is None:
        return float("inf")
    print(f"{chosen.header()}\n{chosen.line()}  (value {chosen.overall.value:.4g})")
    return chosen.overall.value


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
