"""Export a network to NVIDIA stylegan2-ada-pytorch's `.pkl` and to rosinality/stylegan2-pytorch's `.pt`.

NVIDIA `.pkl`: NVIDIA's own snapshots embed the source of its networks.py; we embed none. Each network
is pickled as a call of NVIDIA's class, resolved when loading inside NVIDIA's checkout (or any tree with
its `training/networks.py` importable):

    net = functools.partial(getattr(importlib.import_module("training.networks"), "Generator"), **init_kwargs)()
    torch.nn.Module.load_state_dict(net, state_dict)

so `legacy.load_network_pkl` there returns real NVIDIA modules (`G`, `D`, `G_ema`, with their
`init_kwargs`) that NVIDIA's tools (projector.py, generate.py, training resume) use and re-pickle as
their own. Our state dicts use NVIDIA's keys, so the load is strict. `load_network` reads these files
back without importing anything (see nvidia_pkl.py).
"""
from __future__ import annotations

import argparse
import copy
import functools
import importlib
import pickle

import torch

from ..errors import UserError
from ..networks import Discriminator, Generator
from ..run.files import atomic_write
from .network import Network
from .rosinality import nvidia_to_rosinality_D, nvidia_to_rosinality_G

NVIDIA_MODULE = "training.networks"


class _ModuleRef:
    """Pickles as `importlib.import_module(name)`."""

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        return importlib.import_module, (self.name,)


class _ClassRef:
    """Pickles as `getattr(<module>, name)`: NVIDIA's class, looked up when the file is loaded."""

    def __init__(self, module: str, name: str):
        self.module, self.name = _ModuleRef(module), name

    def __reduce__(self):
        return getattr, (self.module, self.name)

    def __call__(self, *args, **kwargs):  # partial() wants a callable; only the loader's class is ever called
        raise TypeError(f"{NVIDIA_MODULE}.{self.name} is resolved when the file is loaded")


class _Construct:
    """Pickles as `partial(cls, **init_kwargs)()` followed by `Module.load_state_dict(obj, state_dict)`."""

    def __init__(self, class_name: str, init_kwargs: dict, state_dict: dict):
        self.cls = _ClassRef(NVIDIA_MODULE, class_name)
        self.init_kwargs, self.state_dict = init_kwargs, state_dict

    def __reduce__(self):
        return (functools.partial(self.cls, **self.init_kwargs), (), self.state_dict, None, None,
                torch.nn.Module.load_state_dict)


def _plain_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def complete(net: Network) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, list[str]]:
    """(G, D, G_ema, notes): NVIDIA's loader needs all three; a missing G is G_ema's copy, a missing D a
    freshly initialised one of the same resolution."""
    notes = []
    G = net.G
    if G is None:
        G = copy.deepcopy(net.G_ema)
        notes.append("G: a copy of G_ema (the source has no G)")
    D = net.D
    if D is None:
        kw = net.G_ema.init_kwargs
        sk = kw.get("synthesis_kwargs", {})
        D = Discriminator(c_dim=kw.get("c_dim", 0), img_resolution=kw["img_resolution"],
                          img_channels=kw["img_channels"], channel_base=sk.get("channel_base", 32768),
                          channel_max=sk.get("channel_max", 512))
        notes.append("D: freshly initialised (the source has no D)")
    return G, D, net.G_ema, notes


def write_nvidia_pkl(net: Network, path) -> list[str]:
    G, D, G_ema, notes = complete(net)
    data = {"G": _Construct("Generator", copy.deepcopy(G.init_kwargs), _plain_state(G)),
            "D": _Construct("Discriminator", copy.deepcopy(D.init_kwargs), _plain_state(D)),
            "G_ema": _Construct("Generator", copy.deepcopy(G_ema.init_kwargs), _plain_state(G_ema)),
            "training_set_kwargs": None, "augment_pipe": None}
    atomic_write(path, lambda f: pickle.dump(data, f, protocol=4))
    return notes


# rosinality's Generator(size, style_dim, n_mlp, channel_multiplier): channels 512 up to 32 px, then
# 256, 128, 64, 32, 16 times the multiplier at 64 ... 1024 px
def _rosinality_channels(multiplier: int) -> dict[int, int]:
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier, 256: 64 * multiplier,
            512: 32 * multiplier, 1024: 16 * multiplier}


def write_rosinality(net: Network, path) -> list[str]:
    G, D, G_ema, notes = complete(net)
    kw = G_ema.init_kwargs
    channels = {b.resolution: b.out_channels for b in G_ema.synthesis.blocks()}
    multiplier = next((m for m in (1, 2) if all(_rosinality_channels(m)[r] == c for r, c in channels.items())), None)
    if multiplier is None or kw["z_dim"] != kw["w_dim"]:
        notes.append("the channels / z_dim of this network are not ones rosinality's Generator(size, style_dim, "
                     "n_mlp, channel_multiplier) builds: the file holds the weights, but its model.py cannot "
                     "construct a matching network")
    args = argparse.Namespace(size=kw["img_resolution"], latent=kw["w_dim"],
                              n_mlp=kw.get("mapping_kwargs", {}).get("num_layers", 8),
                              channel_multiplier=multiplier or 2)
    data = {"g": nvidia_to_rosinality_G(_plain_state(G)), "d": nvidia_to_rosinality_D(_plain_state(D)),
            "g_ema": nvidia_to_rosinality_G(_plain_state(G_ema)),
            "latent_avg": G_ema.mapping.w_avg.detach().cpu().clone(), "args": args}
    atomic_write(path, lambda f: torch.save(data, f))
    return notes


WRITERS = {"nvidia-pkl": write_nvidia_pkl, "rosinality": write_rosinality}


def export(net: Network, to: str, path) -> list[str]:
    if to not in WRITERS:
        raise UserError(f"--to {to}: expected one of native, {', '.join(WRITERS)}")
    for m in (net.G_ema, net.G, net.D):
        if m is not None and not isinstance(m, (Generator, Discriminator)):
            raise UserError(f"cannot export {type(m).__name__}")
    return WRITERS[to](net, path)
