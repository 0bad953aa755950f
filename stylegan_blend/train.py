"""`stylegan-blend-train`: the Hydra entry point. It only composes the config and wires objects."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .errors import Terminated, UserError, report_failure

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def job_dirname(overrides: str, limit: int = 96) -> str:
    """A sweep job's folder name: its overrides, with path separators replaced and the length capped."""
    name = overrides.replace("/", "_") or "default"
    return name if len(name) <= limit else name[:limit] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]


OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def _logger(cfg: DictConfig, run_dir: Path, plain: dict):
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        from .runfolder import resumable_csv_logger

        return resumable_csv_logger(run_dir)
    if kind == "wandb":
        import os

        from hydra.core.hydra_config import HydraConfig
        from pytorch_lightning.loggers import WandbLogger

        os.environ.setdefault("WANDB_MODE", cfg.logger.mode)
        group, name = cfg.logger.group, cfg.name
        if HydraConfig.initialized():
            hc = HydraConfig.get()
            if str(hc.mode) == "RunMode.MULTIRUN":
                group = group or hc.sweep.dir
            name = hc.job.override_dirname or name
        return WandbLogger(project=cfg.logger.project, save_dir=str(run_dir), group=group or cfg.name,
                           name=name, config=plain, mode=cfg.logger.mode)
    raise UserError(f"logger.kind={kind!r}; expected csv, wandb or none")


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


def _save_config(cfg: DictConfig, run_dir: Path) -> None:
    """The run's record in .hydra/, written here (hydra.output_subdir is null) so that a refused start
    never replaces the config of the run already in the folder."""
    from hydra.core.hydra_config import HydraConfig

    from .runfolder import write_text_atomic

    folder = run_dir / ".hydra"
    write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        write_text_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(hc.overrides.task))
        write_text_atomic(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": hc}))


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
            if ours.init_kwargs.get(key) != value:
                raise UserError(f"ckpt_path={path}: {name} was trained with {key}={value!r} but this config builds "
                                f"{key}={ours.init_kwargs.get(key)!r}; resume with the run's own model settings")
    return int(net.meta.get("epoch") or 0)


def train(cfg: DictConfig) -> Path:
    """Fine-tune per `cfg`; returns the run directory."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from .callbacks import AtomicCheckpointIO, EpochCheckpoint, NetworkExport
    from .data.datamodule import StyleGANDataModule
    from .runfolder import RunFolder, claim_run_folder, newest_epoch
    from .training.module import StyleGAN2Module, TrainingDiverged

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"missing config value(s): {', '.join(missing)}; set them on the command line "
                        f"(e.g. {missing[0]}=...) or choose an experiment=...")
    run_dir = run_dir_of(cfg)
    ckpt_path = _resume_path(cfg, run_dir)
    print(claim_run_folder(run_dir, cfg.ckpt_path not in (None, ""), bool(cfg.get("overwrite", False)),
                           ckpt_path))
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
    _save_config(cfg, run_dir)  # only once the run is accepted: a refused start leaves the folder's record as it was
    every = int(cfg.checkpoint.every_n_epochs)
    callbacks = [
        RunFolder(run_dir),
        NetworkExport(run_dir, every, source=cfg.model.init_from),
        EpochCheckpoint(every, dirpath=str(run_dir / "checkpoints"), filename="epoch={epochs_done:04.0f}",
                        auto_insert_metric_name=False, save_last=bool(cfg.checkpoint.save_last)),
    ]
    if cfg.callbacks.blend_eval and cfg.blend.base:
        from .callbacks.blend_eval import BlendEvalCallback

        callbacks.insert(2, BlendEvalCallback.from_config(plain, run_dir, every))
    if cfg.callbacks.rich_progress and cfg.trainer.get("enable_progress_bar", True) and sys.stdout.isatty():
        callbacks.append(RichProgressBar())
    logger = _logger(cfg, run_dir, plain)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()], _convert_="all")
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
    finally:
        if cfg.logger.kind == "wandb":
            import wandb

            wandb.finish()
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
        if _is_multirun() and not isinstance(e, Terminated):  # SIGTERM stops the sweep too, with its exit code
            import traceback

            out = run_dir_of(cfg)
            out.mkdir(parents=True, exist_ok=True)
            (out / "FAILED").write_text("".join(traceback.format_exception(e)))
            print(f"error: job {out} failed: {e}", file=sys.stderr)
            return float("inf")
        code = report_failure(e)
        if code is None:
            raise
        sys.exit(code)
    print(f"run directory: {run_dir}")
    return best_blend_value(run_dir)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
