"""Compact storage for the NVIDIA parity fixtures, shared by their maker (tools/make_nvidia_fixtures.py) and the tests.

The project keeps its fixtures under 2 MB. Most of their bytes were random float32 weights and inputs that the maker
itself invents, so the maker draws them on a coarse grid instead (`on_grid`: k * step, k an int8, one step per
tensor), feeds exactly those values to NVIDIA's code, and stores one byte per value, decoded bit-exactly. What
NVIDIA's code computes (images, logits, gradients, trained weights) stays float32: the tests' tolerances are far below
float16 rounding. State dicts are stored flat (names, shapes, one vector): a file of many tiny tensors is mostly
per-tensor overhead.

Packed values are dicts tagged `packed` ("grid" tensor, "state" dict); `load` decodes every one of them, so a test
reads a fixture as plain tensors and state dicts.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

CODE_MAX = 127  # int8 codes
# The grid step's mantissa, 0b1.0101010101010101: 17 significant bits, so k * step (|k| <= 127) is exact in float32
# but, for k != 0, never exact in float16 or bfloat16: a bug that keeps weights or inputs in 16 bits still changes
# them (a power-of-two step would hide it).
STEP_MANTISSA = 0x15555 / 2 ** 16


def grid_step(t: torch.Tensor) -> float:
    """The finest step STEP_MANTISSA * 2**e with max |t| <= 127 steps: the int8 grid that spans t (1 for all zeros)."""
    peak = float(t.detach().abs().max()) if t.numel() else 0.0
    if peak == 0:
        return 1.0
    e = math.ceil(math.log2(peak / (CODE_MAX * STEP_MANTISSA)))
    while peak > CODE_MAX * STEP_MANTISSA * 2.0 ** e:  # exact comparisons in float64: settle log2's rounding
        e += 1
    while peak <= CODE_MAX * STEP_MANTISSA * 2.0 ** (e - 1):
        e -= 1
    return STEP_MANTISSA * 2.0 ** e


def on_grid(t: torch.Tensor) -> torch.Tensor:
    """t rounded to its int8 grid: 255 levels over +-max |t|, exact in float32, so what NVIDIA's code was fed is what
    the fixture stores."""
    step = grid_step(t)
    return (t.float() / step).round() * step


def pack(t: torch.Tensor) -> dict:
    """A float32 tensor whose values are on its int8 grid (see `on_grid`) as int8 codes and the grid's step."""
    step = grid_step(t)
    codes = t.float() / step
    if not (torch.equal(codes, codes.round()) and bool((codes.abs() <= CODE_MAX).all())
            and torch.equal(codes.round() * step, t.float())):
        raise ValueError(f"tensor of shape {list(t.shape)} is not on its int8 grid; round it with on_grid() "
                         "before NVIDIA's code sees it")
    return dict(packed="grid", codes=codes.round().to(torch.int8), step=step)


def unpack(p: dict) -> torch.Tensor:
    return p["codes"].to(torch.float32) * p["step"]


def pack_state(sd: dict, grid: bool) -> dict:
    """A state dict as names, shapes and flat vectors. `grid`: every tensor the maker drew is on its int8 grid and
    stored as codes with one step per tensor; NVIDIA's fixed `resample_filter` buffers (outer([1, 3, 3, 1]) / 64,
    not drawn) stay float32. Otherwise (NVIDIA's outputs) all float32. `steps` has None for a float32 tensor."""
    assert all(t.dtype == torch.float32 for t in sd.values()), "float32 tensors only"
    steps, codes, values = [], [], []
    for name, t in sd.items():
        t = t.detach()
        if grid and not name.endswith("resample_filter"):
            p = pack(t)
            steps.append(p["step"])
            codes.append(p["codes"].flatten())
        else:
            steps.append(None)
            values.append(t.flatten())
    return dict(packed="state", names=list(sd), shapes=[list(t.shape) for t in sd.values()], steps=steps,
                codes=torch.cat(codes) if codes else torch.zeros([0], dtype=torch.int8),
                values=torch.cat(values) if values else torch.zeros([0]))


def unpack_state(p: dict) -> dict[str, torch.Tensor]:
    out, at = {}, {"codes": 0, "values": 0}
    for name, shape, step in zip(p["names"], p["shapes"], p["steps"]):
        n, kind = math.prod(shape), "values" if step is None else "codes"
        flat = p[kind][at[kind]: at[kind] + n]
        at[kind] += n
        out[name] = (flat if step is None else unpack(dict(codes=flat, step=step))).reshape(shape)
    assert at == {"codes": len(p["codes"]), "values": len(p["values"])}, "packed state: sizes do not add up"
    return out


def decode(obj):
    """obj with every packed tensor and state dict in it (at any depth of dicts and lists) decoded."""
    if isinstance(obj, dict):
        kind = obj.get("packed")
        if kind == "grid":
            return unpack(obj)
        if kind == "state":
            return unpack_state(obj)
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def load(path: str | Path) -> dict:
    """A fixture file, decoded (plain tensors only: weights_only)."""
    return decode(torch.load(path, weights_only=True))
