"""`load_network`: detect the checkpoint format from the file's bytes and hand it to that format's reader."""
from __future__ import annotations

import argparse
import pickle
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from ..errors import UserError
from .lightning import from_lightning, is_lightning
from .native import from_native, is_native
from .network import Network
from .nvidia_pkl import from_nvidia_pickle, is_nvidia_pickle, read_pickle
from .rosinality import from_rosinality, is_rosinality
from .tf_pkl import from_tf_pickle, is_tf_pickle

# torch.save's pre-1.6 (non-zip) format starts with this pickled magic number (old rosinality files use it).
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_EXPECTED = ("expected a stylegan-blend network file, a Lightning .ckpt from our training, "
             "an NVIDIA stylegan2-ada-pytorch .pkl, a TensorFlow StyleGAN2(-ADA) .pkl or a rosinality .pt")


def _torch_load(path: Path):
    """weights_only=True always; rosinality's `args` (an argparse.Namespace) is the one extra type allowed."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused is None:
            raise
        raise UserError(f"{path}: holds {refused.group(1)}, which the weights-only loader refuses; only plain "
                        f"tensors and containers are loaded") from None


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UserError(f"{path}: truncated or corrupt checkpoint (zip: {exc})") from None
    if bad is not None:
        raise UserError(f"{path}: corrupt checkpoint (zip member {bad} fails its CRC check); the file was damaged "
                        f"after writing, use another copy")


def check_finite(net: Network, path) -> None:
    """A network with NaN/inf weights renders black or garbage: refuse it instead of using it silently."""
    for name in ("G_ema", "G", "D"):
        module = getattr(net, name)
        if module is None:
            continue
        for key, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise UserError(f"{path}: {name} {key} holds NaN/inf values; the network diverged or the file is "
                                f"damaged (expected finite weights)")


def _read(path: Path):
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if not head:
        raise UserError(f"{path}: file is empty; {_EXPECTED}")
    if head.startswith(b"PK\x03\x04"):  # torch.save zip: check the CRCs, which torch.load does not
        _check_zip(path)
        return _torch_load(path)
    if head.startswith(_LEGACY_TORCH_MAGIC):  # pre-1.6 torch.save
        return _torch_load(path)
    if head.startswith(_PICKLE_PROTOCOLS):
        return read_pickle(path)
    raise UserError(f"{path}: unknown file format; {_EXPECTED}")


def load_network(path, device="cpu") -> Network:
    """Load any supported checkpoint as a `Network` (G_ema in eval mode on `device`; G and D when present).

    Bad input (missing, truncated, corrupt, unknown or code-carrying files, kwargs that do not match the
    weights) raises `UserError` with one line naming the file and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        data = _read(path)
    except UserError:
        raise
    except (EOFError, pickle.UnpicklingError, RuntimeError, ValueError,
            AttributeError, IndexError, KeyError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: truncated or corrupt checkpoint ({reason})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for accepts, reader in ((is_native, from_native), (is_lightning, from_lightning),
                            (is_nvidia_pickle, from_nvidia_pickle), (is_tf_pickle, from_tf_pickle),
                            (is_rosinality, from_rosinality)):
        if accepts(data):
            net = reader(data, path)
            break
    else:
        raise UserError(f"{path}: loads, but its contents match no known layout; {_EXPECTED}")
    check_finite(net, path)
    net.meta.setdefault("source", str(path))
    for module in (net.G_ema, net.G, net.D):
        if module is not None:
            module.to(device).eval()
    return net
