"""Layer-swap blending of two generators that share one architecture (Pinkney & Adler 2020).

Block b{r} of the synthesis network draws coarse structure (small r) or texture and colour (large r).
Taking the low-resolution blocks from one model and the high-resolution ones from another mixes the
two: the seed study keeps the real-face geometry of the base model (LOW) and paints it with the
fine-tuned model's style (HIGH); Pinkney's "toonify" runs the other direction.

Hard swap at s: b4 ... b{s} (each with its toRGB and noise buffers) from LOW, b{2s} ... bR from HIGH.
Soft swap (width w > 0): every tensor of block b{r} is (1 - a) * LOW + a * HIGH with
a(r) = sigmoid((log2 r - log2 s - 0.5) / w), which tends to the hard swap as w -> 0.
The mapping network (and its w_avg) is taken whole from the model named by `mapping`.
"""
from __future__ import annotations

import math
import re

import torch

from ..errors import UserError
from ..networks import Generator

MAPPING_CHOICES = ("low", "high")
DIRECTIONS = ("low_base", "low_tuned")
_BLOCK_KEY = re.compile(r"^synthesis\.b(\d+)\.")


def swap_alpha(res: int, swap_res: int, width: float = 0.0) -> float:
    """HIGH's weight for block b{res}: 0 up to swap_res, 1 above it when width == 0, a sigmoid ramp otherwise."""
    check_width(width)
    x = math.log2(res) - math.log2(swap_res) - 0.5
    if width == 0:
        return 1.0 if x > 0 else 0.0
    t = x / width
    if t >= 0:  # two branches keep exp() from overflowing for tiny widths
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def check_width(width: float) -> None:
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width >= 0):
        raise UserError(f"blend width {width!r}: expected a finite number >= 0 (0 = hard swap)")


def check_mapping(mapping: str) -> None:
    if mapping not in MAPPING_CHOICES:
        raise UserError(f"mapping {mapping!r}: expected one of {', '.join(MAPPING_CHOICES)}")


def swap_points(resolution: int) -> list[int]:
    """The valid swap resolutions of a generator of `resolution` px: the blocks that still have a block above
    them, 4 ... R/2."""
    return [2 ** k for k in range(2, int(resolution).bit_length() - 1)]


def relative_swap_points(resolution: int, count: int, top_divisor: int) -> list[int]:
    """`count` swap points going down from resolution/top_divisor, stopping at 4 px (ascending): a grid that fits
    any model. The seed study's 16/32/64 at 256 px is (3, 4); the same preset at 32 px gives 4/8."""
    res, count, top = int(resolution), int(count), int(top_divisor)
    out, r = [], res // top
    while len(out) < count and r >= 4:
        out.append(r)
        r //= 2
    return sorted(out)


def check_swap_res(swap_res: int, resolution: int) -> None:
    """One UserError line unless `swap_res` is a swap point of a `resolution` px generator (`swap_points`)."""
    valid = swap_points(resolution)
    if not valid:
        raise UserError(f"swap resolution {swap_res}: the generator has only the {resolution} px block, "
                        "nothing to swap")
    if swap_res not in valid:
        raise UserError(f"swap resolution {swap_res!r}: expected a power of two among "
                        f"{', '.join(map(str, valid))} (the generator's blocks below {resolution} px)")


def block_resolutions_of(state_dict: dict) -> list[int]:
    return sorted({int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))})


def check_same_architecture(low_sd: dict, high_sd: dict) -> None:
    """One error naming the first key whose presence or shape differs between LOW and HIGH."""
    for key in list(low_sd) + [k for k in high_sd if k not in low_sd]:
        if key not in high_sd:
            raise UserError(f"architectures differ: key {key} is in LOW but not in HIGH")
        if key not in low_sd:
            raise UserError(f"architectures differ: key {key} is in HIGH but not in LOW")
        a, b = low_sd[key], high_sd[key]
        if tuple(a.shape) != tuple(b.shape):
            raise UserError(f"architectures differ: key {key} has shape {tuple(a.shape)} in LOW "
                            f"and {tuple(b.shape)} in HIGH")
        if a.dtype != b.dtype:
            raise UserError(f"architectures differ: key {key} has dtype {a.dtype} in LOW and {b.dtype} in HIGH")


def _first_kwarg_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return f"{sub} = {a.get(k, '<unset>')!r} in LOW, {b.get(k, '<unset>')!r} in HIGH"
            diff = _first_kwarg_difference(a[k], b[k], sub)
            if diff:
                return diff
        return None
    return None if a == b else f"{path} = {a!r} in LOW, {b!r} in HIGH"


def blend_state_dicts(low_sd: dict, high_sd: dict, swap_res: int, width: float = 0.0,
                      mapping: str = "low") -> dict[str, torch.Tensor]:
    """Blend two generator state dicts (NVIDIA keys); returns new tensors, the inputs are not touched."""
    check_width(width)
    check_mapping(mapping)
    check_same_architecture(low_sd, high_sd)
    check_swap_res(swap_res, max(block_resolutions_of(low_sd)))
    out = {}
    for key, low in low_sd.items():
        high = high_sd[key].to(low.device)
        if key.startswith("mapping."):
            alpha = 0.0 if mapping == "low" else 1.0
        elif m := _BLOCK_KEY.match(key):
            alpha = swap_alpha(int(m.group(1)), swap_res, width)
        else:
            raise UserError(f"state dict key {key!r}: expected a generator key under mapping. or synthesis.b<res>.")
        if alpha in (0.0, 1.0) or not low.is_floating_point():
            out[key] = (high if alpha >= 0.5 else low).detach().clone()
        else:
            out[key] = ((1 - alpha) * low + alpha * high).detach()
    return out


def blend_generators(low: Generator, high: Generator, swap_res: int, width: float = 0.0,
                     mapping: str = "low") -> Generator:
    """A new Generator blended from LOW and HIGH (see the module docstring), on LOW's device and in its mode."""
    diff = _first_kwarg_difference(low.init_kwargs, high.init_kwargs)
    low_sd, high_sd = low.state_dict(), high.state_dict()
    check_same_architecture(low_sd, high_sd)
    if diff:
        raise UserError(f"architectures differ: generator kwargs {diff}")
    blended_sd = blend_state_dicts(low_sd, high_sd, swap_res, width, mapping)
    device = next(low.parameters()).device
    G = Generator(**low.init_kwargs).to(device)
    G.load_state_dict(blended_sd, strict=True)
    return G.train(low.training)


def direction_pair(base, tuned, direction: str):
    """(LOW, HIGH) for a blend direction: `low_base` keeps the base model's coarse blocks (the seed study:
    real-face geometry, fine-tuned style); `low_tuned` keeps the fine-tuned model's (Pinkney's "toonify":
    stylised shapes, base-model textures)."""
    if direction == "low_base":
        return base, tuned
    if direction == "low_tuned":
        return tuned, base
    raise UserError(f"blend direction {direction!r}: expected one of {', '.join(DIRECTIONS)}")
