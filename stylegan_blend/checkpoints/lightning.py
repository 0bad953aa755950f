"""Checkpoints written by our trainer (Lightning `.ckpt`): networks under `G.`, `G_ema.`, `D.` in `state_dict`."""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import UserError
from ..networks import Discriminator, Generator
from .network import Network, build

PREFIXES = {"G_ema": Generator, "G": Generator, "D": Discriminator}


def is_lightning(data) -> bool:
    return isinstance(data, Mapping) and "pytorch-lightning_version" in data


def from_lightning(data: Mapping, source) -> Network:
    info = data.get("stylegan_blend")
    if not isinstance(info, Mapping) or "G_kwargs" not in info:
        raise UserError(f"{source}: Lightning checkpoint without a 'stylegan_blend' entry holding G_kwargs; "
                        f"expected one written by stylegan-blend-train")
    state = data.get("state_dict")
    if not isinstance(state, Mapping):
        raise UserError(f"{source}: Lightning checkpoint without a state_dict")
    parts = {}
    for name, cls in PREFIXES.items():
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        if not sub:
            parts[name] = None
            continue
        kwargs = info.get("D_kwargs" if name == "D" else "G_kwargs")
        if kwargs is None:
            raise UserError(f"{source}: state_dict has {name}.* weights but 'stylegan_blend' has no "
                            f"{'D_kwargs' if name == 'D' else 'G_kwargs'}")
        parts[name] = build(cls, kwargs, sub, name, source)
    if parts["G_ema"] is None:
        raise UserError(f"{source}: Lightning checkpoint has no G_ema.* weights")
    meta = {k: info[k] for k in ("kimg", "epoch") if k in info}
    meta["lightning_version"] = data["pytorch-lightning_version"]
    if "global_step" in data:
        meta["global_step"] = data["global_step"]
    return Network("lightning", G_ema=parts["G_ema"], G=parts["G"], D=parts["D"], meta=meta)
