"""`stylegan-blend-train`: the Hydra entry point. It only composes the config and wires objects."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from . import hydra_callbacks  # registers the job_name resolver
from . import preflight as _preflight  # registers the swap_res resolver
from .errors import Terminated, UserError, failure_line, report_failure

CONF_DIR = str(Path(__file__).resolve().parent / "conf")  # a symlink to ../conf in the checkout; shipped in the wheel


def slurm_or(under_slurm, otherwise):
    """`${slurm_or:a,b}`: a inside a SLURM task (srun/sbatch, as Lightning detects it), else b."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return under_slurm if SLURMEnvironment.detect() else otherwise


OmegaConf.register_new_resolver("slurm_or", slurm_or, replace=True)


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def _logger(cfg: DictConfig, run_dir: Path, plain: dict, step_values=None):
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        from .runfolder import resumable_csv_logger

        return resumable_csv_logger(run_dir)
    if kind == "wandb":
        from .tracking import wandb_logger

        return wandb_logger(cfg.logger.project, run_dir, group=_wandb_group(cfg), name=_wandb_name(cfg, run_dir),
                            config=plain, mode=cfg.logger.mode, step_values=step_values)
    raise UserError(f"logger.kind={kind!r}; expected csv, wandb or none")


def _wandb_group(cfg: DictConfig) -> str:
    """The sweep folder (its last two parts) under multirun, else logger.group or the experiment name."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.logger.get("group"):
        return str(cfg.logger.group)
    if _is_multirun():
        parts = Path(HydraConfig.get().sweep.dir).parts
        return "/".join(parts[-2:])
    return str(cfg.name)


def _wandb_name(cfg: DictConfig, run_dir: Path) -> str:
    """A sweep job: its folder name (job number + swept keys); a single run: <experiment>/<run folder>."""
    return hydra_callbacks.current_job_name() or f"{cfg.name}/{run_dir.name}"


def slurm_restart_count() -> int:
    """How many times SLURM has requeued this job (preemption, timeout, `scontrol requeue`); 0 outside SLURM."""
    import os

    from lightning_fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return 0
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def requeued_checkpoint(run_dir: Path) -> str | None:
    """A requeued SLURM job re-runs its command unchanged: continue from the newest state it left, Lightning's
    `hpc_ckpt_N.ckpt` (written when SLURM sent the requeue signal) or `checkpoints/last.ckpt` (an epoch finished
    in the grace period after the signal is newer)."""
    found = [p for p in [*Path(run_dir).glob("hpc_ckpt_*.ckpt"), Path(run_dir) / "checkpoints" / "last.ckpt"]
             if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path in (None, ""):
        if slurm_restart_count() > 0:
            found = requeued_checkpoint(run_dir)
            print(f"SLURM requeue {slurm_restart_count()}: " + (f"resuming from {found}" if found else
                                                                 "no checkpoint yet, starting over"), file=sys.stderr)
            return found
        return None
    if cfg.ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
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
    from hydra.core.hydra_config import HydraConfig

    from .runfolder import write_text_atomic

    folder = run_dir / ".hydra"
    if HydraConfig.initialized() and HydraConfig.get().output_subdir is not None:
        return  # a resume: Hydra writes its own record to .hydra/resume-*, the first launch's stays
    write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        write_text_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(hc.overrides.task))
        write_text_atomic(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": hc}))


def _same_setting(ours, theirs) -> bool:
    """Equal, where nested settings compare only the keys both sides name (a key added since has its default)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return all(_same_setting(ours[k], theirs[k]) for k in ours.keys() & theirs.keys())
    return ours == theirs


def check_resume_checkpoint(path: str, module) -> int:
    """Before Lightning loads it: refuse a corrupt, code-carrying or non-finite checkpoint, or one of another
    architecture, in one line (Lightning would answer each with a traceback)."""
    from .checkpoints import load_network

    net = load_network(path)
    for name in ("G_ema", "G", "D"):
        ours, theirs = getattr(module, name), getattr(net, name)
        if theirs is None:
            continue
        for key, value in theirs.init_kwargs.items():
            if not _same_setting(ours.init_kwargs.get(key), value):
                raise UserError(f"ckpt_path={path}: {name} was trained with {key}={value!r} but this config builds "
                                f"{key}={ours.init_kwargs.get(key)!r}; resume with the run's own model settings")
    return int(net.meta.get("epoch") or 0)


def _launch_rank() -> int:
    """This process's global rank as the launcher (SLURM, torchrun) set it; 0 when launched alone."""
    from lightning_fabric.utilities.rank_zero import _get_rank

    return int(_get_rank() or 0)


def train(cfg: DictConfig) -> Path:
    """Fine-tune per `cfg`; returns the run directory."""
    run_dir = run_dir_of(cfg)
    _preflight.preflight(cfg, run_dir)  # every config check first: before Lightning, logger, data or features

    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from . import tracking
    from .callbacks import AtomicCheckpointIO, EpochCheckpoint, NetworkExport
    from .data.datamodule import StyleGANDataModule
    from .runfolder import RunFolder, claim_run_folder, newest_epoch
    from .training.module import StyleGAN2Module, TrainingDiverged
    from .training.precision import check_precision

    check_precision(cfg.trainer.precision)
    ckpt_path = _resume_path(cfg, run_dir)
    # one process owns the folder: under SLURM/torchrun every task runs this, with its rank in the environment
    first = _launch_rank() == 0
    if first:
        resuming = cfg.ckpt_path not in (None, "") or slurm_restart_count() > 0
        print(claim_run_folder(run_dir, resuming, bool(cfg.get("overwrite", False)), ckpt_path))
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = StyleGANDataModule(path=cfg.data.path, resolution=cfg.data.resolution, batch_size=cfg.data.batch_size,
                            mirror=cfg.data.mirror, num_workers=cfg.data.num_workers, seed=cfg.seed)
    module = StyleGAN2Module(plain, run_dir=str(run_dir))
    if ckpt_path is not None:
        epoch = check_resume_checkpoint(ckpt_path, module)
        newest = newest_epoch(run_dir)
        if newest > epoch and Path(ckpt_path).resolve() != (run_dir / "checkpoints" / "last.ckpt").resolve():
            raise UserError(f"ckpt_path={ckpt_path} is epoch {epoch} but {run_dir} already holds epochs up to "
                            f"{newest}, which resuming here would replace; resume with ckpt_path=last, or branch "
                            f"into a new paths.output_dir")
    if first:  # only once the run is accepted: a refused start leaves the folder's record as it was
        _save_config(cfg, run_dir)
        tracking.write_training_options(run_dir, plain)
    every = int(cfg.checkpoint.every_n_epochs)
    callbacks = [
        RunFolder(run_dir),
        NetworkExport(run_dir, every, source=cfg.model.init_from),
        EpochCheckpoint(every, dirpath=str(run_dir / "checkpoints"), filename="epoch={epochs_done:04.0f}",
                        auto_insert_metric_name=False, save_last=bool(cfg.checkpoint.save_last)),
    ]
    if slurm_or(True, False):
        from .callbacks.requeue import SlurmRequeue

        callbacks.append(SlurmRequeue())
    if cfg.callbacks.blend_eval and cfg.blend.base:
        from .callbacks.blend_eval import BlendEvalCallback

        callbacks.insert(2, BlendEvalCallback.from_config(plain, run_dir, every))
    if cfg.callbacks.rich_progress and cfg.trainer.get("enable_progress_bar", True) and sys.stdout.isatty():
        callbacks.append(RichProgressBar())
    logger = _logger(cfg, run_dir, plain, step_values=lambda: {"kimg": module.kimg, "epoch": module.current_epoch + 1})
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
            if isinstance(e, SystemExit):
                code = e.code if isinstance(e.code, int) else 1
                line = f"error: exited with code {code}"
            else:
                code = 130 if isinstance(e, KeyboardInterrupt) else getattr(e, "exit_code", 1)
                line = f"error: {e}" if str(e) else f"error: {type(e).__name__}"
            tracking.finish(code, line.splitlines()[0])
        raise
    if cfg.logger.kind == "wandb":
        tracking.finish(0)
    return run_dir


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def run_selection(run_dir: Path, selection=None, write: bool = False):
    """The run's blend selection with its bootstrap under `selection` (a `selection:` config node; default: the
    run's own, else knee), or None when metrics.csv is missing or has no identity scores; `write`: also write
    <run>/selection.json."""
    from .selection.run import run_selection as select_run_dir

    if selection is not None and not isinstance(selection, (dict, str)):
        selection = OmegaConf.to_container(selection, resolve=True)
    return select_run_dir(Path(run_dir), selection, write=write)


def best_blend_value(run_dir: Path, selection=None) -> float:
    """The selection rule's value of the run's chosen blend (what hparams_search minimises); inf if none."""
    chosen = run_selection(Path(run_dir), selection)
    return chosen.overall.value if chosen is not None else float("inf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Returns the selection rule's value of the chosen blend, which hparams_search minimises."""
    try:
        run_dir = train(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep records a failed job and goes on with the others
        if _is_multirun() and not isinstance(e, Terminated):  # SIGTERM stops the sweep too, with its exit code
            import traceback

            out = run_dir_of(cfg)
            out.mkdir(parents=True, exist_ok=True)
            (out / "FAILED").write_text("".join(traceback.format_exception(e)))
            found = failure_line(e)
            line = f"error: {found[0]}" if found else f"error: {type(e).__name__}: {e}"
            hydra_callbacks.write_job_record(out, "failed", error=line.splitlines()[0])
            print(f"error: job {out.name} failed: {found[0] if found else e}", file=sys.stderr)
            return float("inf")
        code = report_failure(e)
        if code is None:
            raise
        sys.exit(code)
    chosen = run_selection(run_dir, cfg.get("selection"), write=True)
    if _is_multirun():
        hydra_callbacks.write_job_record(run_dir, "completed", best=hydra_callbacks.choice_text(chosen))
    print(f"run directory: {run_dir}")
    if chosen is None:
        return float("inf")
    print(f"{chosen.header()}\n{chosen.line()}  (value {chosen.overall.value:.4g})")
    return chosen.overall.value


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
