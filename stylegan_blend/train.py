"""`stylegan-blend-train`: the Hydra entry point. It only composes the config and wires objects."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from . import hydra_callbacks  # registers the job_name resolver
from . import preflight as _preflight  # registers the swap_res resolver
from .errors import UserError

CONF_DIR = str(Path(__file__).resolve().parent / "conf")  # a symlink to ../conf in the checkout; shipped in the wheel


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
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
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


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    if cfg.ckpt_path in (None, ""):
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


def train(cfg: DictConfig) -> Path:
    """Fine-tune per `cfg`; returns the run directory."""
    run_dir = run_dir_of(cfg)
    _preflight.preflight(cfg, run_dir)  # every config check first: before Lightning, logger, data or features

    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar

    from . import tracking
    from .callbacks import AtomicCheckpointIO, EpochCheckpoint, NetworkExport
    from .data.datamodule import StyleGANDataModule
    from .training.module import StyleGAN2Module

    run_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():  # called without @hydra.main (tests, notebooks): keep the same record
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(OmegaConf.to_yaml(plain))
    tracking.write_training_options(run_dir, plain)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = StyleGANDataModule(path=cfg.data.path, resolution=cfg.data.resolution, batch_size=cfg.data.batch_size,
                            mirror=cfg.data.mirror, num_workers=cfg.data.num_workers, seed=cfg.seed)
    module = StyleGAN2Module(plain, run_dir=str(run_dir))
    every = int(cfg.checkpoint.every_n_epochs)
    callbacks = [
        NetworkExport(run_dir, every, source=cfg.model.init_from),
        EpochCheckpoint(every, dirpath=str(run_dir / "checkpoints"), filename="epoch={epochs_done:04.0f}",
                        auto_insert_metric_name=False, save_last=bool(cfg.checkpoint.save_last)),
    ]
    if cfg.callbacks.blend_eval and cfg.blend.base:
        from .callbacks.blend_eval import BlendEvalCallback

        callbacks.insert(1, BlendEvalCallback.from_config(plain, run_dir, every))
    if cfg.callbacks.rich_progress and cfg.trainer.get("enable_progress_bar", True) and sys.stdout.isatty():
        callbacks.append(RichProgressBar())
    logger = _logger(cfg, run_dir, plain, step_values=lambda: {"kimg": module.kimg, "epoch": module.current_epoch + 1})
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()], _convert_="all")
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=_resume_path(cfg, run_dir))
    except BaseException as e:
        if cfg.logger.kind == "wandb":
            if isinstance(e, SystemExit):
                code = e.code if isinstance(e.code, int) else 1
                line = f"error: exited with code {code}"
            else:
                code = 130 if isinstance(e, KeyboardInterrupt) else 1
                line = f"error: {e}" if str(e) else f"error: {type(e).__name__}"
            tracking.finish(code, line.splitlines()[0])
        raise
    if cfg.logger.kind == "wandb":
        tracking.finish(0)
    return run_dir


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def best_blend_value(run_dir: Path) -> float:
    """The lowest score over all blend cells of the run (kid, else fid, else the proxy); inf if none."""
    from .reporting import best_cells

    if not (run_dir / "metrics.csv").is_file():
        return float("inf")
    best = best_cells(run_dir / "metrics.csv")
    return float(best[-1].value) if best else float("inf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Returns the best blend score, which hyper-parameter sweepers (hparams_search=...) minimise."""
    try:
        run_dir = train(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep records a failed job and goes on with the others
        expected = isinstance(e, UserError)
        if not expected:  # imported only here: a config refused by preflight never loads Lightning
            from .training.module import TrainingDiverged

            expected = isinstance(e, TrainingDiverged)
        if _is_multirun():
            import traceback

            out = run_dir_of(cfg)
            out.mkdir(parents=True, exist_ok=True)
            (out / "FAILED").write_text("".join(traceback.format_exception(e)))
            line = f"error: {e}" if expected else f"error: {type(e).__name__}: {e}"
            hydra_callbacks.write_job_record(out, "failed", error=line.splitlines()[0])
            print(f"error: job {out.name} failed: {e}", file=sys.stderr)
            return float("inf")
        if not expected:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if _is_multirun():
        hydra_callbacks.write_job_record(run_dir, "completed", best=hydra_callbacks.best_cell_text(run_dir))
    print(f"run directory: {run_dir}")
    return best_blend_value(run_dir)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
