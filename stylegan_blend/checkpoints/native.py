"""Our network file: torch.save of plain containers only, so `torch.load(weights_only=True)` reads it."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import UserError
from ..networks import Discriminator, Generator
from ..run.files import atomic_write
from .network import Network, build, plain

FORMAT_TAG = "stylegan_blend.network"
VERSION = 1


def _entry(module) -> dict:
    return {"kwargs": plain(module.init_kwargs),
            "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}}


def save_network(path, G_ema, G=None, D=None, meta: Mapping | None = None):
    """Write G_ema (and G, D when given) with their kwargs and `meta` to `path`, atomically (temp + rename)."""
    data = {"format": FORMAT_TAG, "version": VERSION, "G_ema": _entry(G_ema)}
    if G is not None:
        data["G"] = _entry(G)
    if D is not None:
        data["D"] = _entry(D)
    data["meta"] = plain(dict(meta or {}))
    return atomic_write(path, lambda f: torch.save(data, f))


def is_native(data) -> bool:
    return isinstance(data, Mapping) and data.get("format") == FORMAT_TAG


def from_native(data: Mapping, source) -> Network:
    if data.get("version") != VERSION:
        raise UserError(f"{source}: network file version {data.get('version')!r}; this code reads version {VERSION}")

    def part(key, cls):
        entry = data.get(key)
        if entry is None:
            return None
        if not isinstance(entry, Mapping) or "kwargs" not in entry or "state_dict" not in entry:
            raise UserError(f"{source}: entry {key!r} should be {{'kwargs': ..., 'state_dict': ...}}")
        return build(cls, entry["kwargs"], entry["state_dict"], key, source)

    G_ema = part("G_ema", Generator)
    if G_ema is None:
        raise UserError(f"{source}: network file has no G_ema")
    meta = dict(data.get("meta") or {})
    return Network("native", G_ema=G_ema, G=part("G", Generator), D=part("D", Discriminator), meta=meta)
