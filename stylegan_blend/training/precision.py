"""Supported precision modes (README "Precision") and what they mean for the networks' fp16 blocks.

- `32` / `32-true` (trainer=cpu, trainer=gpu): NVIDIA's scheme. Everything fp32 except the networks' own
  fp16 on the top `num_fp16_res` blocks (with `conv_clamp`); gradients are `nan_to_num`'d before each step.
- `bf16-mixed` (trainer=gpu_bf16): Lightning's bf16 autocast over the whole step, the fp16 blocks off.
- `16-mixed` is refused: one GradScaler for G and D, updated in every phase, with R1/path-length
  gradients taken from unscaled losses, is not a correct GAN step (the scale collapses, Greg is NaN).
"""
from __future__ import annotations

from ..errors import UserError

SUPPORTED = {"32": "fp32 + the networks' fp16 blocks", "32-true": "fp32 + the networks' fp16 blocks",
             "bf16-mixed": "bf16 autocast, fp16 blocks off", "bf16": "bf16 autocast, fp16 blocks off"}


def check_precision(precision) -> str:
    """The Lightning precision string, or a UserError naming the supported modes."""
    p = str(precision)
    if p not in SUPPORTED:
        raise UserError(f"trainer.precision={p} is not supported; expected 32-true (trainer=gpu, NVIDIA's fp16 "
                        f"blocks), bf16-mixed (trainer=gpu_bf16) or 32 (trainer=cpu)")
    return p


def fp16_mode(precision, fp16_on_cpu: bool) -> str:
    """`set_fp16_mode` argument for a run: autocast turns the fp16 blocks off; fp16_on_cpu emulates CUDA."""
    if "bf16" in str(precision):
        return "off"
    return "always" if fp16_on_cpu else "cuda"
