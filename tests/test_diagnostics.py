"""The per-epoch sample grid: tile layout and NVIDIA's pixel mapping, written without torchvision."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from stylegan_blend.training.diagnostics import EpochDiagnostics


class PatternG(torch.nn.Module):
    """Image k of the batch (counted across calls) has pixel (c, y, x) = ((7k + 3c + 2y + x) % 9 - 4) / 4."""

    z_dim = 4

    def __init__(self, channels: int, res: int = 4):
        super().__init__()
        self.channels, self.res, self.count = channels, res, 0

    def forward(self, z, c, noise_mode="const"):
        out = []
        for _ in range(len(z)):
            out.append(torch.from_numpy(pattern(self.count, self.channels, self.res)))
            self.count += 1
        return torch.stack(out)


def pattern(k: int, channels: int, res: int) -> np.ndarray:
    c, y, x = np.meshgrid(np.arange(channels), np.arange(res), np.arange(res), indexing="ij")
    return (((7 * k + 3 * c + 2 * y + x) % 9 - 4) / 4).astype(np.float32)


def nvidia_png(img: np.ndarray) -> np.ndarray:
    """NVIDIA generate.py: (img * 127.5 + 128).clamp(0, 255) as uint8, CHW -> HWC."""
    return np.clip(img * 127.5 + 128, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _grid(tmp_path, monkeypatch, n: int, channels: int) -> np.ndarray:
    for name in ("torchvision", "torchvision.utils"):  # a lab's torch may have no working torchvision
        monkeypatch.setitem(sys.modules, name, None)
    module = SimpleNamespace(G_ema=PatternG(channels), device=torch.device("cpu"))
    diag = EpochDiagnostics({"grid_size": n})
    path = diag.save_grid(tmp_path / "samples" / "epoch=0001.png", module)
    assert [p.name for p in path.parent.iterdir()] == ["epoch=0001.png"], "no temp file left behind"
    with Image.open(path) as im:
        return np.asarray(im)


def test_grid_places_each_sample_row_major_with_nvidia_pixels(tmp_path, monkeypatch):
    grid = _grid(tmp_path, monkeypatch, n=5, channels=3)  # 2 per row, 3 rows, the last cell empty
    assert grid.shape == (12, 8, 3)
    for k in range(5):
        r, c = divmod(k, 2)
        np.testing.assert_array_equal(grid[4 * r:4 * r + 4, 4 * c:4 * c + 4], nvidia_png(pattern(k, 3, 4)))
    assert not grid[8:, 4:].any()


def test_grid_of_single_channel_samples_is_greyscale(tmp_path, monkeypatch):
    grid = _grid(tmp_path, monkeypatch, n=4, channels=1)
    assert grid.shape == (8, 8)
    np.testing.assert_array_equal(grid[4:, :4], nvidia_png(pattern(2, 1, 4))[..., 0])
