"""Lightning datamodule over a prepared folder: seeded shuffling, optional x-flip, held-out val images."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import UserError
from ..run.files import file_sha256
from .folder import DECODE_ERRORS, MANIFEST_NAME, read_manifest, to_rgb


def per_process_batch(batch_size: int, world_size: int) -> int:
    """Images per step of each of `world_size` processes: `batch_size` is the total over them (NVIDIA's --batch)."""
    if batch_size % world_size:
        raise UserError(f"train.batch_size={batch_size} is the total batch over {world_size} processes and "
                        f"does not divide by {world_size}; use a multiple of {world_size}")
    return batch_size // world_size


def _load_uint8(path: Path) -> np.ndarray:
    """HxWx3 uint8; a file damaged after preparation is the user's to fix, so say which one."""
    try:
        with Image.open(path) as img:
            return np.array(to_rgb(img))
    except DECODE_ERRORS as exc:
        raise UserError(f"{path}: unreadable image ({exc}); re-run `stylegan-blend prepare`") from None


class ImageFolderDataset(Dataset):
    """Item (index, flip) -> float32 CHW in [-1, 1] (NVIDIA's x / 127.5 - 1), mirrored when flip is set."""

    def __init__(self, files: list[Path]):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, bool]) -> torch.Tensor:
        index, flip = item
        img = _load_uint8(self.files[index])
        if flip:
            img = img[:, ::-1]
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 127.5 - 1.0


class ShuffleFlipSampler(Sampler):
    """Seeded permutation plus a seeded x-flip coin per image, re-derived from (seed, epoch) each epoch.

    Lightning calls `set_epoch` before every epoch, so the batches of epoch k are the same whether the run
    got there in one go or was resumed from a checkpoint (no dependence on the global RNG or workers).
    """

    def __init__(self, num_images: int, mirror: bool, seed: int):
        self.num_images = num_images
        self.mirror = mirror
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_images

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_images, generator=g).tolist()
        flips = (torch.rand(self.num_images, generator=g) < 0.5).tolist()
        return iter([(i, self.mirror and f) for i, f in zip(order, flips)])


class ResumableLoader(DataLoader):
    """A DataLoader whose next pass can start some batches in: a run resumed from a checkpoint taken after a
    minibatch (a SLURM requeue) sees the rest of that epoch's batches, not its first ones again. The count rides on
    the dataset object, which survives Lightning re-creating the loader under DDP."""

    def __iter__(self):
        it = super().__iter__()
        n, self.dataset.skip_batches = getattr(self.dataset, "skip_batches", 0), 0
        for _ in range(n):
            next(it)
        return it


class StyleGANDataModule(pl.LightningDataModule):
    """Training batches from a folder made by `stylegan-blend prepare` (train split only).

    `train_dataloader()` yields float32 NCHW batches in [-1, 1]; the val split is never in them and is
    exposed through `val_images()` for overfitting diagnostics. `batch_size` is the total over all processes
    (NVIDIA's --batch): each of the trainer's processes loads `batch_size / world_size` images per step.
    One epoch = one pass over the train images.
    A plain folder of images without a manifest is accepted, all as train, with a warning.
    """

    def __init__(self, path, resolution: int, batch_size: int, mirror: bool = False, num_workers: int = 0,
                 pin_memory: bool | None = None, seed: int = 0):
        super().__init__()
        self.path = Path(path)
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.mirror = bool(mirror)
        self.num_workers = int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.seed = int(seed)
        self._resume: tuple[int, int] | None = None  # (epoch index, batches done) of a mid-epoch checkpoint
        if self.batch_size < 1:
            raise UserError(f"batch size {batch_size}: expected >= 1")
        self.train_files, self.val_files = self._scan()
        self._content_hash: str | None = None
        self.batch_per_process = self.batch_size

    def setup(self, stage: str) -> None:
        self.batch_per_process = per_process_batch(self.batch_size, self.trainer.world_size if self.trainer else 1)

    def _scan(self) -> tuple[list[Path], list[Path]]:
        expected = "a folder made by `stylegan-blend prepare images|video|synthetic`"
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such dataset folder; expected {expected}")
        manifest = read_manifest(self.path)
        if manifest is None:  # also what an interrupted prepare leaves: images, no manifest (written last)
            raise UserError(f"{self.path}: no {MANIFEST_NAME}; expected {expected} (an interrupted prepare leaves "
                            f"none: run it again)")
        train = [self.path / f for f in sorted(manifest.files("train"))]
        val = [self.path / f for f in sorted(manifest.files("val"))]
        if not train:
            raise UserError(f"{self.path}: the manifest lists no train images; expected at least one")
        for f in train + val:
            self._check_image(f)
        return train, val

    def _check_image(self, path: Path) -> None:
        """Header-only size check, so a mismatch fails before training, naming the file."""
        if not path.is_file():
            raise UserError(f"{path}: listed in {MANIFEST_NAME} but missing; re-run `stylegan-blend prepare`")
        try:
            with Image.open(path) as img:
                size = img.size
        except DECODE_ERRORS as exc:
            raise UserError(f"{path}: unreadable image ({exc}); re-run `stylegan-blend prepare`") from None
        if size != (self.resolution, self.resolution):
            raise UserError(f"{path}: image is {size[0]}x{size[1]} but the model resolution is "
                            f"{self.resolution}x{self.resolution}; prepare the data with --res {self.resolution}")

    @property
    def num_train(self) -> int:
        return len(self.train_files)

    @property
    def num_val(self) -> int:
        return len(self.val_files)

    @property
    def content_hash(self) -> str:
        """sha256 over the sorted hashes of the train PNG files: names, order and val split don't matter,
        any changed pixel does. Key for cached reference statistics (FID stats etc.)."""
        if self._content_hash is None:
            digests = sorted(file_sha256(f) for f in self.train_files)
            self._content_hash = hashlib.sha256("\n".join(digests).encode()).hexdigest()
        return self._content_hash

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next train loader continues epoch index `epoch` after its first `batches_done` batches."""
        self._resume = (int(epoch), int(batches_done))

    def train_dataloader(self) -> DataLoader:
        world = self.batch_size // self.batch_per_process
        batch = self.batch_per_process
        drop_last = self.num_train // world >= batch
        if not drop_last:
            warnings.warn(f"{self.path}: only {self.num_train} train images for batch size {self.batch_size}; "
                          f"every batch is the whole (smaller) set", stacklevel=2)
        # kept so the trainer can set its epoch directly: under DDP Lightning wraps it in a
        # DistributedSamplerWrapper whose set_epoch does not reach the inner sampler
        self.sampler = ShuffleFlipSampler(self.num_train, self.mirror, self.seed)
        dataset = ImageFolderDataset(self.train_files)
        if self._resume is not None:  # a mid-epoch checkpoint: Lightning calls no epoch-start hook for that epoch
            self.sampler.set_epoch(self._resume[0])
            dataset.skip_batches, self._resume = self._resume[1], None
        return ResumableLoader(dataset, batch_size=batch, sampler=self.sampler,
                          drop_last=drop_last, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def train_images(self, max_n: int | None = None, as_float: bool = False) -> torch.Tensor:
        """The first `max_n` train images in a fixed order (no flip): uint8 NHWC like
        `sampling.generate_images`, or float32 NCHW in [-1, 1] like the batches when `as_float`."""
        return self._stack(self.train_files[:max_n], as_float)

    def val_images(self, max_n: int | None = None, as_float: bool = False) -> torch.Tensor:
        """Held-out images, same layout as `train_images`; empty (N = 0) when the folder has no val split."""
        return self._stack(self.val_files[:max_n], as_float)

    def _stack(self, files: list[Path], as_float: bool) -> torch.Tensor:
        r = self.resolution
        imgs = torch.from_numpy(np.stack([_load_uint8(f) for f in files])) if files else \
            torch.zeros(0, r, r, 3, dtype=torch.uint8)
        return imgs.permute(0, 3, 1, 2).float() / 127.5 - 1.0 if as_float else imgs
