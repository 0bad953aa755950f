"""Export G_ema (with G and D) as a native network file at every checkpoint epoch.

Works from the in-memory networks rather than the Lightning file: ModelCheckpoint runs after the
other callbacks' epoch hooks, so its file for this epoch does not exist yet (DESIGN §4).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint


def is_checkpoint_epoch(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """True after epochs K, 2K, ... and after the final epoch."""
    epoch = trainer.current_epoch + 1
    last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
    return (every_n_epochs > 0 and epoch % every_n_epochs == 0) or last


def network_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "networks" / f"epoch={epoch:04d}.pt"


class NetworkExport(pl.Callback):
    def __init__(self, run_dir: str | Path, every_n_epochs: int, source: str | None = None):
        self.run_dir, self.every_n_epochs, self.source = Path(run_dir), int(every_n_epochs), source

    def on_train_epoch_end(self, trainer: pl.Trainer, module) -> None:
        if trainer.global_rank != 0 or not is_checkpoint_epoch(trainer, self.every_n_epochs):
            return
        from ..checkpoints import save_network

        epoch = trainer.current_epoch + 1
        save_network(network_path(self.run_dir, epoch), module.G_ema, G=module.G, D=module.D,
                     meta={"source": self.source, "kimg": module.kimg, "epoch": epoch})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temp file then renamed: a killed run never leaves half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class EpochCheckpoint(ModelCheckpoint):
    """Lightning checkpoints on the same epochs as the exported networks (every K and the final one);
    `last.ckpt` after every epoch so a killed run loses at most one epoch."""

    def __init__(self, every_n_epochs: int, **kwargs):
        super().__init__(every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True, **kwargs)
        self.every = int(every_n_epochs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if is_checkpoint_epoch(trainer, self.every):
            super().on_train_epoch_end(trainer, pl_module)
        elif self.save_last and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
