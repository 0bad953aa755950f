"""Export G_ema (with G and D) as a native network file at every checkpoint epoch.

Works from the in-memory networks rather than the Lightning file: ModelCheckpoint runs after the
other callbacks' epoch hooks, so its file for this epoch does not exist yet. Also: Lightning checkpoints on the
same epochs, written atomically, and the run folder cleaned of a killed attempt's later epochs on resume.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from ...checkpoints import save_network
from ...run.files import atomic_write
from ...run.layout import network_path
from ...run.lifecycle import truncate_after


def is_checkpoint_epoch(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """True after epochs K, 2K, ... and after the final epoch."""
    epoch = trainer.current_epoch + 1
    last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
    return (every_n_epochs > 0 and epoch % every_n_epochs == 0) or last


def bad_state(module) -> str | None:
    """Why this epoch's state must not be exported, scored or checkpointed (None when it is good)."""
    phases = sorted(getattr(module, "nonfinite_phases", ()) or ())
    if phases:
        return f"non-finite losses in {', '.join(phases)}"
    for name, net in (("G_ema", module.G_ema), ("G", module.G), ("D", module.D)):
        for key, t in net.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"non-finite values in {name}.{key}"
    return None


def skip_bad_epoch(trainer: pl.Trainer, module) -> bool:
    """True (and one warning per epoch) when the epoch went non-finite."""
    reason = bad_state(module)
    if reason is None:
        return False
    epoch = trainer.current_epoch + 1
    if getattr(module, "_warned_bad_epoch", None) != epoch and trainer.global_rank == 0:
        module._warned_bad_epoch = epoch
        print(f"warning: epoch {epoch}: {reason}; not exported, scored or checkpointed "
              f"(last good checkpoint: {getattr(trainer.checkpoint_callback, 'last_model_path', '') or 'none'})",
              file=sys.stderr)
    return True


class NetworkExport(pl.Callback):
    def __init__(self, run_dir: str | Path, every_n_epochs: int, source: str | None = None):
        self.run_dir, self.every_n_epochs, self.source = Path(run_dir), int(every_n_epochs), source

    def on_train_epoch_end(self, trainer: pl.Trainer, module) -> None:
        if trainer.global_rank != 0 or not is_checkpoint_epoch(trainer, self.every_n_epochs):
            return
        if skip_bad_epoch(trainer, module):
            return
        epoch = trainer.current_epoch + 1
        save_network(network_path(self.run_dir, epoch), module.G_ema, G=module.G, D=module.D,
                     meta={"source": self.source, "kimg": module.kimg, "epoch": epoch})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temp file then renamed: a killed run never leaves half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))  # temp removed and one error line on failure


class EpochCheckpoint(ModelCheckpoint):
    """Lightning checkpoints on the same epochs as the exported networks (every K and the final one);
    `last.ckpt` after every epoch so a killed run loses at most one epoch."""

    def __init__(self, every_n_epochs: int, **kwargs):
        # no version counter: last.ckpt is always the newest state, a redone epoch replaces its file
        super().__init__(every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True,
                         enable_version_counter=False, **kwargs)
        self.every = int(every_n_epochs)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        if bad_state(pl_module) is None:  # Lightning saves a missing last.ckpt here: never a non-finite state
            super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        if bad_state(pl_module) is None:
            super().on_exception(trainer, pl_module, exception)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if skip_bad_epoch(trainer, pl_module):
            return
        if is_checkpoint_epoch(trainer, self.every):
            super().on_train_epoch_end(trainer, pl_module)
        elif self.save_last and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RunFolder(pl.Callback):
    """Cleans the run folder once the checkpoint is restored (the epoch count is known only then)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        if trainer.global_rank == 0:
            truncate_after(self.run_dir, trainer.current_epoch)
