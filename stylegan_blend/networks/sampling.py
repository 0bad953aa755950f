"""Seeds -> latents -> uint8 images, with NVIDIA generate.py's conventions so published seeds reproduce."""
from __future__ import annotations

import re

import numpy as np
import torch

from ..errors import UserError

MAX_SEEDS = 100_000  # one PNG each; more is a typo (0-4294967295 would be a 4.3-billion-item list)
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (inclusive ranges, order kept). Seeds must fit NumPy's 32-bit RandomState."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"seeds {text!r}: expected a list like '0-3,7'")
    seeds: list[int] = []
    total = 0
    for part in text.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UserError(f"seeds {text!r}: bad item {part.strip()!r}; expected N or A-B with 0 <= A <= B")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        if hi < lo:
            raise UserError(f"seeds {text!r}: range {lo}-{hi} is descending; expected A <= B")
        if hi >= 2 ** 32:
            raise UserError(f"seeds {text!r}: seed {hi} is too large; expected < 2**32")
        total += hi - lo + 1
        if total > MAX_SEEDS:
            raise UserError(f"seeds {text!r}: {total} seeds; expected at most {MAX_SEEDS} per call")
        seeds.extend(range(lo, hi + 1))
    return seeds


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """NVIDIA's convention: z = RandomState(seed).randn(1, z_dim) (float64, shape [1, z_dim])."""
    return np.random.RandomState(seed).randn(1, z_dim)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Float NCHW image in ~[-1, 1] -> uint8 NHWC, the mapping NVIDIA uses when writing PNGs."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate_images(G, seeds, truncation_psi: float = 1.0, noise_mode: str = "const",
                    batch_size: int = 8, device="cpu") -> torch.Tensor:
    """Images for `seeds` as a uint8 tensor [N, H, W, C] on the CPU (G must already live on `device`).

    G runs in eval mode (no w_avg update, no grad) and gets its previous mode back.
    """
    if noise_mode not in ("const", "random", "none"):
        raise UserError(f"noise mode {noise_mode!r}: expected const, random or none")
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: expected >= 1")
    seeds = list(seeds)
    device = torch.device(device)
    was_training = G.training
    G.eval()
    try:
        out = []
        for i in range(0, len(seeds), batch_size):
            chunk = seeds[i:i + batch_size]
            z = np.concatenate([z_from_seed(s, G.z_dim) for s in chunk])
            z = torch.from_numpy(z).to(device=device, dtype=torch.float32)
            img = G(z, None, truncation_psi=truncation_psi, noise_mode=noise_mode)
            out.append(to_uint8(img).cpu())
        if not out:
            return torch.zeros(0, G.img_resolution, G.img_resolution, G.img_channels, dtype=torch.uint8)
        return torch.cat(out)
    finally:
        G.train(was_training)
