"""`stylegan-blend-train`: the Hydra entry point. It only composes the config and wires objects."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .errors import UserError

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
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
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


def train(cfg: DictConfig) -> Path:
    """Fine-tune per `cfg`; returns the run directory."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import RichProgressBar

    from .callbacks import AtomicCheckpointIO, EpochCheckpoint, NetworkExport
    from .data.datamodule import StyleGANDataModule
    from .training.module import StyleGAN2Module

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"missing config value(s): {', '.join(missing)}; set them on the command line "
                        f"(e.g. {missing[0]}=...) or choose an experiment=...")
    if cfg.get("selection") is not None:  # a bad rule fails now, not after training
        from .selection import selection_options

        selection_options(OmegaConf.to_container(cfg.selection, resolve=True))
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():  # called without @hydra.main (tests, notebooks): keep the same record
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(OmegaConf.to_yaml(plain))
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
    logger = _logger(cfg, run_dir, plain)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()], _convert_="all")
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=_resume_path(cfg, run_dir))
    finally:
        if cfg.logger.kind == "wandb":
            import wandb

            wandb.finish()
    return run_dir


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def run_selection(run_dir: Path, selection=None):
    """The run's blend selection under `selection` (a `selection:` config node; default: the run's own,
    else knee), or None when metrics.csv is missing or has no identity scores."""
    from .reporting import read_metrics
    from .selection import select_rows, selection_options
    from .selection.run import saved_selection

    if not (run_dir / "metrics.csv").is_file():
        return None
    if selection is None:
        selection = saved_selection(run_dir)
    if selection is not None and not isinstance(selection, dict):
        selection = OmegaConf.to_container(selection, resolve=True)
    return select_rows(read_metrics(run_dir / "metrics.csv"), **selection_options(selection))


def best_blend_value(run_dir: Path, selection=None) -> float:
    """The selection rule's value of the run's chosen blend (what hparams_search minimises); inf if none."""
    chosen = run_selection(Path(run_dir), selection)
    return chosen.overall.value if chosen is not None else float("inf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Returns the selection rule's value of the chosen blend, which hparams_search minimises."""
    from .training.module import TrainingDiverged

    try:
        run_dir = train(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep records a failed job and goes on with the others
        expected = isinstance(e, (UserError, TrainingDiverged))
        if _is_multirun():
            import traceback

            out = run_dir_of(cfg)
            out.mkdir(parents=True, exist_ok=True)
            (out / "FAILED").write_text("".join(traceback.format_exception(e)))
            print(f"error: job {out} failed: {e}", file=sys.stderr)
            return float("inf")
        if not expected:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"run directory: {run_dir}")
    chosen = run_selection(run_dir, cfg.get("selection"))
    if chosen is None:
        return float("inf")
    print(f"{chosen.header()}\n{chosen.overall}  (value {chosen.overall.value:.4g})")
    return chosen.overall.value


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
