"""NVIDIA stylegan2-ada-pytorch `.pkl` snapshots, read WITHOUT running the source code they embed.

NVIDIA pickles every network as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, where
`meta.module_src` is the Python source of training/networks.py that plain `pickle.load` would `exec`.
Our Unpickler resolves only an allow-list of globals (tensor/storage/container/numpy-scalar rebuilders)
and swaps that hook for a stub that records `class_name` and the module's `__dict__` (its
`_parameters`, `_buffers`, `_modules`, `_init_kwargs`); the source is never executed. We then walk the
recorded module tree into a state dict with NVIDIA's dotted keys and rebuild our own networks from
the recorded `init_kwargs`. Anything else in the stream is refused by name.
"""
from __future__ import annotations

import _compat_pickle
import collections
import functools
import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..networks import Discriminator, Generator
from .network import Network, build, plain
from .tf_pkl import TFNetworkRecord


class EasyDict(dict):
    """Stand-in for dnnlib.EasyDict: a plain dict, so nothing of NVIDIA's package is needed or imported."""


class PersistentRecord:
    """What the stub keeps of one pickled NVIDIA module: its class name and `__dict__` (never its source)."""

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state


def _record_persistent_obj(meta) -> PersistentRecord:
    """Replacement for `_reconstruct_persistent_obj`: keep class_name + state, drop module_src unexecuted."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("persistent object without a class record")
    return PersistentRecord(str(meta.get("class_name")), meta["state"])


class _StubModule:
    """What `importlib.import_module("training.networks")` gives in a file we exported (export.py)."""


class _StubClass:
    def __init__(self, name: str):
        self.name = name

    def __call__(self, **init_kwargs) -> PersistentRecord:
        return PersistentRecord(self.name, {"_init_kwargs": init_kwargs})


def _stub_import(name: str):
    if name != "training.networks":
        raise UserError(f"refused to import {name!r} while unpickling: only NVIDIA's training.networks is known")
    return _StubModule()


def _stub_getattr(obj, name: str):
    if not isinstance(obj, _StubModule) or name not in ("Generator", "Discriminator"):
        raise UserError(f"refused getattr(..., {name!r}) while unpickling: only NVIDIA's network classes are known")
    return _StubClass(name)


def _stub_load_state_dict(record, state_dict) -> None:
    if not isinstance(record, PersistentRecord) or not isinstance(state_dict, dict):
        raise UserError("load_state_dict in the pickle is not applied to an NVIDIA network")
    record.state["_state_dict"] = state_dict


def _load_storage_from_bytes(data: bytes):
    """Tensor storages are nested torch.save blobs; read them with the weights-only unpickler too."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _numpy_attr(name: str):
    core = getattr(np, "_core", None) or np.core
    return getattr(core.multiarray, name)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): torch._utils._rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent_obj,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    # files written by export.write_nvidia_pkl: NVIDIA's class called with its init_kwargs + a state dict
    ("importlib", "import_module"): _stub_import,
    ("builtins", "getattr"): _stub_getattr,
    ("functools", "partial"): functools.partial,
    ("torch.nn.modules.module", "Module.load_state_dict"): _stub_load_state_dict,
    # TensorFlow-era StyleGAN2 pickles (tf_pkl.py): a record of the network's data, its source never run
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "scalar")] = _numpy_attr("scalar")
    _ALLOWED[(_mod, "_reconstruct")] = _numpy_attr("_reconstruct")
for _name in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _name)] = getattr(torch, _name)  # dtype arguments of _rebuild_tensor_v3


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` globals; refuses every other one (os.system, builtins.eval...) by name."""

    def __init__(self, file, source):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        # protocol <= 2 streams name Python 2 modules (__builtin__, copy_reg); use today's names, as pickle does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(f"refused to unpickle {module}.{name} from {self.source}: not on the allow-list") from None

    def persistent_load(self, pid):
        raise UserError(f"refused to unpickle a persistent id from {self.source}: not on the allow-list")


def read_pickle(path) -> Any:
    """Unpickle `path` with the restricted Unpickler (NVIDIA modules come back as PersistentRecord)."""
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation noise from nested storages
        return RestrictedUnpickler(f, Path(path).name).load()


def record_state_dict(record: PersistentRecord, source, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk `_parameters`, `_buffers` (persistent ones) and `_modules` into NVIDIA's dotted-key state dict.

    Frozen D layers are stored by NVIDIA as buffers, not parameters: same keys, so they land in the same place.
    """
    state, out = record.state, {}
    if "_state_dict" in state:  # exported by us: already a flat NVIDIA-keyed state dict
        return {prefix + k: v.detach() for k, v in state["_state_dict"].items()}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise UserError(f"{source}: {prefix}{name} is {type(tensor).__name__}; expected a tensor")
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise UserError(f"{source}: module {prefix}{name} is {type(child).__name__}; expected an NVIDIA module")
        out.update(record_state_dict(child, source, f"{prefix}{name}."))
    return out


def _network(data: dict, key: str, cls, source):
    record = data.get(key)
    if record is None:
        return None
    if not isinstance(record, PersistentRecord) or record.class_name != cls.__name__:
        found = record.class_name if isinstance(record, PersistentRecord) else type(record).__name__
        raise UserError(f"{source}: {key} is {found}; expected an NVIDIA {cls.__name__}")
    if record.state.get("_init_args"):
        raise UserError(f"{source}: {key} was built with positional args; expected keyword init_kwargs only")
    kwargs = record.state.get("_init_kwargs")
    if kwargs is None:
        raise UserError(f"{source}: {key} has no _init_kwargs; cannot rebuild it")
    return build(cls, kwargs, record_state_dict(record, source), key, source)


def is_nvidia_pickle(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("G_ema"), PersistentRecord)


def from_nvidia_pickle(data: dict, path) -> Network:
    source = Path(path).name
    meta: dict = {}
    if isinstance(data.get("training_set_kwargs"), dict):
        try:
            meta["training_set_kwargs"] = plain(data["training_set_kwargs"])
        except TypeError:
            pass  # informational only; an exotic value should not block loading the weights
    augment = data.get("augment_pipe")
    if isinstance(augment, PersistentRecord):
        p = (augment.state.get("_buffers") or {}).get("p")
        if isinstance(p, torch.Tensor) and p.numel() == 1:
            meta["ada_p"] = float(p)
    snapshot = re.search(r"network-snapshot-(\d+)\.pkl$", Path(path).name)
    if snapshot:  # NVIDIA's training loop names snapshots by kimg
        meta["kimg"] = float(snapshot.group(1))
    return Network("nvidia-pkl", G_ema=_network(data, "G_ema", Generator, source),
                   G=_network(data, "G", Generator, source), D=_network(data, "D", Discriminator, source),
                   meta=meta)
