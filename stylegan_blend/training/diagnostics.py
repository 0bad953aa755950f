"""Overfitting diagnostics measured once per epoch, without touching the training RNG.

- D logits on training reals vs held-out validation reals vs fakes: as D memorises the few hundred
  training images, train logits rise above val logits (the gap grows) — Karras et al. 2020 (ADA), fig. 1.
- Memorisation: distance from each generated image to its nearest training image, relative to the
  same distance for held-out reals. A ratio well below 1 means samples sit closer to the training set
  than unseen real images do, i.e. G copies its training data.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..networks.sampling import to_uint8
from ..run.files import atomic_write
from ..run.layout import DIAGNOSTICS_FILE, sample_grid_path
from ..run.records import append_stats
from ..run.tables import append_diagnostics
from .config import DiagnosticsConfig


class EpochDiagnostics:
    def __init__(self, cfg: Mapping):
        c = DiagnosticsConfig(**cfg)
        self.num_images, self.grid_size, self.seed = int(c.num_images), int(c.grid_size), int(c.seed)
        self.memorisation_res = int(c.memorisation_res)

    @torch.no_grad()
    def _fixed_fakes(self, module, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)  # fixed z, isolated from the global RNG
        z = torch.randn(n, module.G_ema.z_dim, generator=g).to(module.device)
        was_training = module.G_ema.training
        module.G_ema.eval()
        imgs = torch.cat([module.G_ema(zc, None, noise_mode="const") for zc in z.split(16)])
        module.G_ema.train(was_training)
        return imgs.clamp(-1, 1)

    @torch.no_grad()
    def _logits(self, D, images: torch.Tensor) -> float:
        if len(images) == 0:
            return float("nan")
        group = D.b4.mbstd.group_size if D.b4.mbstd is not None and D.b4.mbstd.group_size else 1
        if len(images) > group:
            images = images[: len(images) // group * group]
        return float(torch.cat([D(chunk) for chunk in images.split(group * 4)]).mean())

    def _nn_dist(self, queries: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        r = self.memorisation_res
        q = F.adaptive_avg_pool2d(queries, r).flatten(1)
        k = F.adaptive_avg_pool2d(refs, r).flatten(1)
        return torch.cdist(q, k).min(dim=1).values

    @torch.no_grad()
    def measure(self, module) -> dict:
        dm = getattr(module.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "train_images"):
            return {}
        dev = module.device
        train = dm.train_images(max_n=self.num_images, as_float=True).to(dev)
        val = dm.val_images(max_n=self.num_images, as_float=True).to(dev)
        fakes = self._fixed_fakes(module, max(self.num_images, 1))
        out = {"d_real_train": self._logits(module.D, train), "d_real_val": self._logits(module.D, val),
               "d_fake": self._logits(module.D, fakes)}
        out["d_gap"] = out["d_real_train"] - out["d_real_val"]
        all_train = dm.train_images(as_float=True).to(dev)
        if len(val):
            out["memorisation"] = float(self._nn_dist(fakes, all_train).mean() / self._nn_dist(val, all_train).mean())
        else:
            out["memorisation"] = float("nan")
        return out

    def write(self, run_dir: Path, epoch: int, kimg: float, row: dict, module) -> None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        append_diagnostics(run_dir / DIAGNOSTICS_FILE, epoch, kimg, row)
        append_stats(run_dir, dict(epoch=epoch, kimg=round(float(kimg), 6), **row))
        grid_path = self.save_grid(sample_grid_path(run_dir, epoch), module)
        log_image = getattr(module.logger, "log_image", None)
        if callable(log_image):
            log_image(key="samples/fixed_z", images=[str(grid_path)], step=module.global_step)

    def save_grid(self, path: Path, module) -> Path:
        """The fixed-z samples as one PNG, int(sqrt(n)) per row, pixels as NVIDIA writes them (`to_uint8`).

        Pillow, not torchvision: training must not import torchvision, whose compiled ops exist only for the
        torch build it was made for (a lab's own torch may lack a matching torchvision)."""
        imgs = to_uint8(self._fixed_fakes(module, self.grid_size)).cpu().numpy()  # [N, H, W, C]
        n, h, w, c = imgs.shape
        cols = int(n ** 0.5) or 1
        rows = -(-n // cols)
        grid = np.zeros((rows * h, cols * w, c), np.uint8)  # a short last row leaves black cells
        for i, img in enumerate(imgs):
            r, col = divmod(i, cols)
            grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = img
        picture = Image.fromarray(grid[..., 0] if c == 1 else grid)
        atomic_write(path, lambda f: picture.save(f, format="PNG"))
        return path
