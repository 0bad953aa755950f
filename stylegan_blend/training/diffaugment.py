"""DiffAugment: Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training".

Always-on, differentiable augmentations applied to every image D sees (reals and fakes, with fresh
randomness per call), so G learns through them. Images are NCHW in [-1, 1]. The 'color' policy is
brightness (+-0.5), saturation (x[0, 2]) and contrast (x[0.5, 1.5]) in that order; 'translation'
shifts by up to 1/8 of the image with zero fill; 'cutout' zeroes one square of half the image size
whose centre is uniform over the image (clipped at the border).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

_GROUPS = {"color": ("brightness", "saturation", "contrast"), "translation": ("translation",),
           "cutout": ("cutout",)}
_OPS = ("brightness", "saturation", "contrast", "translation", "cutout")


class DiffAugment(nn.Module):
    """`policy`: comma-separated 'color', 'translation', 'cutout' (or single colour ops
    'brightness', 'saturation', 'contrast'); '' disables everything."""

    def __init__(self, policy: str = "color,translation,cutout", translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5):
        super().__init__()
        self.policy = policy
        self.ops: list[str] = []
        for item in (s.strip() for s in policy.split(",")):
            if not item:
                continue
            if item not in _GROUPS and item not in _OPS:
                raise UserError(f"DiffAugment policy item {item!r} is unknown; expected color, translation, "
                                f"cutout, brightness, saturation or contrast")
            self.ops += _GROUPS.get(item, (item,))
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"DiffAugment expects NCHW images, got shape {tuple(images.shape)}")
        n = images.shape[0]
        gen_device = generator.device if generator is not None else images.device

        def uniform(*shape):
            return torch.rand((n,) + shape, generator=generator, device=gen_device).to(images.device, images.dtype)

        def integers(low, high, *shape):  # inclusive bounds
            return torch.randint(low, high + 1, (n,) + shape, generator=generator,
                                 device=gen_device).to(images.device)

        x = images
        for op in self.ops:
            if op == "brightness":
                x = x + (uniform(1, 1, 1) - 0.5)
            elif op == "saturation":
                mean = x.mean(dim=1, keepdim=True)
                x = (x - mean) * (uniform(1, 1, 1) * 2) + mean
            elif op == "contrast":
                mean = x.mean(dim=[1, 2, 3], keepdim=True)
                x = (x - mean) * (uniform(1, 1, 1) + 0.5) + mean
            elif op == "translation":
                h, w = x.shape[2:]
                max_shift = [int(h * self.translation_ratio + 0.5), int(w * self.translation_ratio + 0.5)]
                shift = torch.stack([integers(-max_shift[0], max_shift[0]),
                                     integers(-max_shift[1], max_shift[1])], dim=1)
                x = translate(x, shift)
            elif op == "cutout":
                h, w = x.shape[2:]
                size = [int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)]
                # Top-left corner so that the square's centre ranges over the whole image.
                top_left = torch.stack([integers(-(size[0] // 2), h - (size[0] + 1) // 2),
                                        integers(-(size[1] // 2), w - (size[1] + 1) // 2)], dim=1)
                x = cutout(x, top_left, size)
        return x


def translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move each image by integer `shift` [N, 2] = (dy, dx) pixels, filling with zeros."""
    n, c, h, w = images.shape
    pad_y, pad_x = int(shift[:, 0].abs().max()), int(shift[:, 1].abs().max())
    padded = F.pad(images, [pad_x, pad_x, pad_y, pad_y])
    rows = torch.arange(h, device=images.device)[None, :, None] - shift[:, 0, None, None] + pad_y
    cols = torch.arange(w, device=images.device)[None, None, :] - shift[:, 1, None, None] + pad_x
    index = (rows * padded.shape[3] + cols).reshape(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).reshape(n, c, h, w)


def cutout(images: torch.Tensor, top_left: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Zero a size[0] x size[1] box per image with corner `top_left` [N, 2] = (y, x), clipped."""
    h, w = images.shape[2:]
    rows = torch.arange(h, device=images.device)[None, :, None] - top_left[:, 0, None, None]
    cols = torch.arange(w, device=images.device)[None, None, :] - top_left[:, 1, None, None]
    inside = (rows >= 0) & (rows < size[0]) & (cols >= 0) & (cols < size[1])
    return images * (~inside).to(images.dtype)[:, None]
