"""Compact storage for the NVIDIA parity fixtures, shared by their maker (tools/make_nvidia_fixtures.py) and the tests.

The project keeps its fixtures under 2 MB. Most of their bytes were random float32 weights and inputs that the maker
itself invents, so the maker draws them on a coarse grid instead (`on_grid`: k * 2**e, k an int8, one exponent per
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


def grid_exponent(t: torch.Tensor) -> int:
    """The smallest e with max |t| <= 127 * 2**e: the finest int8 grid k * 2**e that spans t (0 for all zeros)."""
    peak = float(t.detach().abs().max()) if t.numel() else 0.0
    if peak == 0:
        return 0
    mantissa, e = math.frexp(peak / CODE_MAX)  # peak / 127 = mantissa * 2**e, 0.5 <= mantissa < 1
    return e - 1 if mantissa == 0.5 else e


def on_grid(t: torch.Tensor) -> torch.Tensor:
    """t rounded to its int8 grid: 255 levels over +-max |t| (about 2**-6 of a unit-normal draw's spread), exact in
    float32, so what NVIDIA's code was fed is what the fixture stores."""
    step = 2.0 ** grid_exponent(t)
    return (t.float() / step).round() * step


def pack(t: torch.Tensor) -> dict:
    """A float32 tensor whose values are on its int8 grid (see `on_grid`) as int8 codes and the grid's exponent."""
    e = grid_exponent(t)
    codes = t.float() / 2.0 ** e
    if not (torch.equal(codes, codes.round()) and bool((codes.abs() <= CODE_MAX).all())):
        raise ValueError(f"tensor of shape {list(t.shape)} is not on its int8 grid; round it with on_grid() "
                         "before NVIDIA's code sees it")
    return dict(packed="grid", codes=codes.to(torch.int8), exponent=e)


def unpack(p: dict) -> torch.Tensor:
    return p["codes"].to(torch.float32) * 2.0 ** p["exponent"]


def pack_state(sd: dict, grid: bool) -> dict:
    """A state dict as names, shapes and one flat vector: int8 codes with one exponent per tensor when `grid` (every
    tensor must be on its grid), float32 values otherwise (NVIDIA's outputs)."""
    tensors = [t.detach() for t in sd.values()]
    assert all(t.dtype == torch.float32 for t in tensors), "float32 tensors only"
    out = dict(packed="state", names=list(sd), shapes=[list(t.shape) for t in tensors])
    if not grid:
        return dict(out, values=torch.cat([t.flatten() for t in tensors]))
    packed = [pack(t) for t in tensors]
    return dict(out, codes=torch.cat([p["codes"].flatten() for p in packed]),
                exponents=[p["exponent"] for p in packed])


def unpack_state(p: dict) -> dict[str, torch.Tensor]:
    sizes = [math.prod(s) for s in p["shapes"]]
    if "values" in p:
        flat = p["values"].split(sizes)
    else:
        flat = [unpack(dict(codes=c, exponent=e)) for c, e in zip(p["codes"].split(sizes), p["exponents"])]
    return {n: v.reshape(s) for n, v, s in zip(p["names"], flat, p["shapes"])}


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
