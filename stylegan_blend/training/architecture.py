"""Decide the G/D architecture of a run: from a preset, or from the checkpoint we fine-tune.

Why: resuming NVIDIA's FFHQ-256 file with a preset that silently disagrees (e.g. 2 mapping layers
instead of 8) drops weights. The checkpoint's own kwargs win; a preset field that contradicts them
is an error naming the field.
"""
from __future__ import annotations

import copy
from typing import Any

from ..checkpoints import load_network
from ..errors import UserError

# Fields that are training choices rather than architecture; they may differ from the checkpoint.
_TRAINING_ONLY = {"num_fp16_res", "conv_clamp", "fp16_channels_last", "freeze_layers", "mbstd_group_size"}


def _contradictions(preset: Any, actual: Any, prefix: str):
    if preset is None:
        return
    if isinstance(preset, dict):
        actual = actual if isinstance(actual, dict) else {}
        for key, value in preset.items():
            if key in _TRAINING_ONLY:
                continue
            yield from _contradictions(value, actual.get(key), f"{prefix}.{key}")
    elif preset != actual:
        yield prefix, preset, actual


def check_preset(preset_kwargs: dict | None, ckpt_kwargs: dict, field: str, source: str) -> None:
    """Raise UserError on the first non-null preset field that differs from the checkpoint's."""
    for name, want, have in _contradictions(preset_kwargs or {}, ckpt_kwargs, field):
        raise UserError(f"{name}={want!r} contradicts {source} ({have!r}); remove the override "
                        f"or use model=pretrained to take the architecture from the checkpoint")


def resolve(model_cfg: dict, freeze_d: int = 0, mbstd_group_size: int | None = None):
    """Return (G_kwargs, D_kwargs, loaded) where `loaded` is the network we start from (or None)."""
    G_kwargs = copy.deepcopy(model_cfg.get("G_kwargs") or {})
    D_kwargs = copy.deepcopy(model_cfg.get("D_kwargs") or {})
    loaded = None
    init_from = model_cfg.get("init_from")
    if init_from:
        loaded = load_network(init_from)
        src_G = loaded.G if loaded.G is not None else loaded.G_ema
        check_preset(G_kwargs, src_G.init_kwargs, "model.G_kwargs", init_from)
        G_kwargs = copy.deepcopy(src_G.init_kwargs)
        if loaded.D is not None:
            check_preset(D_kwargs, loaded.D.init_kwargs, "model.D_kwargs", init_from)
            D_kwargs = copy.deepcopy(loaded.D.init_kwargs)
        elif not D_kwargs:
            D_kwargs = dict(c_dim=0, img_resolution=G_kwargs["img_resolution"], img_channels=G_kwargs["img_channels"],
                            channel_base=G_kwargs.get("synthesis_kwargs", {}).get("channel_base", 32768),
                            channel_max=G_kwargs.get("synthesis_kwargs", {}).get("channel_max", 512))
    if not G_kwargs:
        raise UserError("model.G_kwargs is empty and model.init_from is not set: choose a preset "
                        "(model=tiny|paper256) or set model.init_from=PATH")
    D_kwargs.setdefault("c_dim", 0)
    D_kwargs.setdefault("img_resolution", G_kwargs["img_resolution"])
    D_kwargs.setdefault("img_channels", G_kwargs["img_channels"])
    if D_kwargs["img_resolution"] != G_kwargs["img_resolution"]:
        raise UserError(f"model: D resolution {D_kwargs['img_resolution']} != G resolution {G_kwargs['img_resolution']}")
    if freeze_d:
        D_kwargs.setdefault("block_kwargs", {})["freeze_layers"] = int(freeze_d)
    if mbstd_group_size is not None:
        D_kwargs.setdefault("epilogue_kwargs", {})["mbstd_group_size"] = int(mbstd_group_size)
    return G_kwargs, D_kwargs, loaded
