"""The loaded-network record and the step every format shares: rebuild the networks from kwargs + state dict."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..networks import Discriminator, Generator


@dataclass
class Network:
    """What `load_network` returns: G_ema always; G and D when the file has them; meta (source, kimg, epoch...)."""

    format: str
    G_ema: Generator
    G: Generator | None = None
    D: Discriminator | None = None
    meta: dict = field(default_factory=dict)


def plain(obj: Any) -> Any:
    """Deep copy into containers `torch.load(weights_only=True)` accepts (EasyDict/OmegaConf-free, numpy-free)."""
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a network file; expected plain containers")


def _shape(t) -> list[int]:
    return list(t.shape) if hasattr(t, "shape") else []


def check_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, source) -> None:
    """Raise one UserError line naming the first key whose presence or shape differs between file and kwargs."""
    expected = module.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise UserError(f"{source}: {what} built from its kwargs needs {key} {_shape(ref)}, "
                            f"which the file does not have")
        if not isinstance(state[key], torch.Tensor):
            raise UserError(f"{source}: {what} entry {key} is {type(state[key]).__name__}; expected a tensor")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise UserError(f"{source}: {what} {key} has shape {_shape(state[key])} in the file but "
                            f"{_shape(ref)} in the network built from its kwargs")
    for key, value in state.items():
        if key not in expected:
            raise UserError(f"{source}: {what} file has {key} {_shape(value)}, "
                            f"which the network built from its kwargs does not")


def build(cls: Callable[..., nn.Module], kwargs: Mapping,
          state: Mapping[str, torch.Tensor] | Callable[[list[str]], Mapping[str, torch.Tensor]], what: str,
          source, derived: tuple[str, ...] = ()) -> nn.Module:
    """Instantiate `cls(**kwargs)` and load `state` with strict=True; bad kwargs or state -> one UserError line.

    Keys ending in one of `derived` may be absent from `state`: formats that do not store them (rosinality
    has no FIR filter buffers for non-resampling layers) get the values the kwargs define. `state` may be a
    function of the network's key names, for formats whose names are derived from ours (TF pickles).
    """
    if not isinstance(kwargs, Mapping):
        raise UserError(f"{source}: {what} kwargs are {type(kwargs).__name__}; expected a dict")
    if not isinstance(state, Mapping) and not callable(state):
        raise UserError(f"{source}: {what} state is {type(state).__name__}; expected a dict of tensors")
    try:
        module = cls(**plain(kwargs))
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{source}: {what} kwargs do not build a {cls.__name__}: {exc}") from None
    if callable(state):
        state = state(list(module.state_dict()))
    if derived:
        state = dict(state)
        for key, value in module.state_dict().items():
            if key not in state and key.endswith(derived):
                state[key] = value
    check_state(module, state, what, source)
    with torch.no_grad():
        module.load_state_dict(dict(state), strict=True)
    return module.eval()
