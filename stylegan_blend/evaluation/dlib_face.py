"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`, 128-D, CC0) in plain PyTorch.

The PyPI package `face-recognition-models` ships the weights file; dlib itself is not needed at run time (it is
used only to make the test fixture, tools/make_dlib_fixtures.py). Reading the file follows dlib's own
serialisation (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h):

- integers: a control byte (low 4 bits = number of little-endian value bytes, 0x80 = negative), then the bytes;
  floats: mantissa then exponent, both such integers (value = mantissa * 2**exponent); bools: ASCII '0'/'1';
  strings: length then bytes; tensors: version 2, four dimensions, then little-endian float32 data (views
  into a tensor, `alias_tensor`: version 1 and the dimensions);
- a network is written from the loss layer inwards: every wrapper writes its version, then the layers below it,
  then its own settings. So the settings of the layers arrive in input-to-output order, which is how
  `_read_layers` collects them.

The network (dlib's examples/dnn_face_recognition_ex.cpp): a 7x7/2 conv stem + 3x3/2 max-pool, 14 residual
blocks of two 3x3 convs (32 → 64 → 128 → 256 → 256 channels; each widening block strides by 2 and its skip path
is a 2x2/2 average pool, zero-padded in channels and, where the conv output is smaller, in rows and columns —
dlib's `add_prev` adds tensors of different shapes that way), a global average pool and a 256 → 128 linear map.
29 convs, 5.6 M parameters. Inputs are 150x150 RGB face chips, each channel (value − mean) / 256; the
embedding is not normalised: dlib compares faces by Euclidean distance (same person below ~0.6 on photos).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError

DLIB_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# Where dlib's face chip lies in an FFHQ-aligned image (left, top, right, bottom, as fractions of its side).
# FFHQ's alignment recipe is defined on dlib's 68 landmarks (eye centres = means of points 36-41 and 42-47,
# mouth corners = points 48 and 54), and get_face_chip_details(size=150, padding=0.25) maps dlib's mean face
# (its 5-point template: eye corners and nose base) to the chip. Put dlib's mean face through the FFHQ recipe
# (projection/align.py: eye distance 0.529, eye-to-mouth 0.564 in mean-face units, so the crop is 4 x eye
# distance = 2.117 units wide, centred 0.1 x eye-to-mouth below the eyes) and the chip, the mean face's
# [-0.25, 1.25] square, lands at this fixed box. A real face deviates from the mean face by its own
# proportions: on the fixture photos (MTCNN + our aligner at 256 px) the box moves the descriptor by 0.07-0.21
# from dlib's own landmark-fitted chip, against 0.33-0.44 between photos of the same person and 0.77-0.83 to
# another person (tests/test_dlib_face.py); 3 % of the image off in y costs 0.18-0.30.
FFHQ_CHIP_BOX = (0.1504, 0.2532, 0.8589, 0.9618)
DLIB_PACKAGE = "face-recognition-models"
CHIP_SIZE = 150
# residual blocks from the input on: (channels, downsamples), as in dnn_face_recognition_ex.cpp
BLOCKS = ([(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
          + [(256, True)] + [(256, False)] * 2 + [(256, True)])


def dlib_model_path() -> Path | None:
    """The weights file inside the installed `face_recognition_models` package, or None.

    Found without importing the package: its __init__ needs pkg_resources, which new setuptools dropped."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / DLIB_FILE
        if path.is_file():
            return path
    return None


class _Stream:
    """dlib's serialisation primitives over a byte buffer."""

    def __init__(self, data: bytes):
        self.buf, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError(f"file ends at byte {len(self.buf)}, expected {n} more bytes at {self.pos}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self.take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise ValueError(f"bad integer control byte {ctrl:#04x} at byte {self.pos - 1}")
        value = int.from_bytes(self.take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # float_details' markers for inf, -inf, nan
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise ValueError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def str(self) -> str:
        return self.take(self.int()).decode("latin-1")

    def shape(self, version: int = 1) -> tuple[int, int, int, int]:
        """A tensor's dimensions; alone (version 1) they describe a view into a layer's parameters."""
        if (got := self.int()) != version:
            raise ValueError(f"tensor version {got} at byte {self.pos}, expected {version}")
        return tuple(self.int() for _ in range(4))

    def tensor(self) -> np.ndarray:
        shape = self.shape(version=2)
        return np.frombuffer(self.take(4 * int(np.prod(shape))), "<f4").reshape(shape)


def _architecture() -> list[str]:
    """Layer kinds from the loss layer inwards (the order of the version headers in the file)."""
    def block(down: bool) -> list[str]:
        two_convs = ["affine", "con", "relu", "affine", "con", "tag"]
        if down:  # relu(add_prev2(avg_pool(skip1(tag2(block(tag1(x)))))))
            return ["relu", "add_prev", "avg_pool", "skip", "tag"] + two_convs
        return ["relu", "add_prev"] + two_convs  # relu(add_prev1(block(tag1(x))))
    kinds = ["fc", "avg_pool"]
    for _, down in reversed(BLOCKS):
        kinds += block(down)
    return kinds + ["max_pool", "relu", "affine", "con"]


def _read_details(s: _Stream, kind: str) -> dict:
    """One layer's own settings and weights; checks the layer is the kind the architecture expects."""
    tag = s.str()
    if kind == "con" and tag in ("con_4", "con_5", "con_6"):
        params = s.tensor().ravel()
        n, kh, kw, sy, sx, py, px = (s.int() for _ in range(7))
        fshape, _bshape = s.shape(), s.shape()
        for _ in range(4):
            s.float()  # learning-rate and weight-decay multipliers
        use_bias = s.bool() if tag in ("con_5", "con_6") else True
        if tag == "con_6":
            s.bool()  # use_relu: a fused relu that only training-time code sets
        size = int(np.prod(fshape))
        weight = params[:size].reshape(fshape)
        bias = params[size:size + n] if use_bias else np.zeros(n, np.float32)
        return {"weight": weight, "bias": bias, "stride": (sy, sx), "padding": (py, px)}
    if kind == "affine" and tag in ("affine_", "affine_2"):
        params = s.tensor().ravel()
        gshape, _ = s.shape(), s.shape()
        s.int()  # mode: CONV_MODE here (one gamma/beta per channel)
        if tag == "affine_2":
            s.bool()
        n = int(np.prod(gshape))
        return {"gamma": params[:n], "beta": params[n:2 * n]}
    if kind == "affine" and tag == "bn_con2":  # a batch-norm layer, folded as dlib's affine_(bn_) does
        params = s.tensor().ravel()
        gshape, _ = s.shape(), s.shape()
        s.tensor(), s.tensor()  # batch statistics of the last training step
        mean, var = s.tensor().ravel(), s.tensor().ravel()
        s.int(), s.int()
        for _ in range(4):
            s.float()
        eps = s.float()
        n = int(np.prod(gshape))
        gamma = (params[:n] / np.sqrt(var + np.float32(eps))).astype(np.float32)
        return {"gamma": gamma, "beta": (params[n:2 * n] - gamma * mean).astype(np.float32)}
    if kind in ("max_pool", "avg_pool") and tag == f"{kind}_2":
        kh, kw, sy, sx, py, px = (s.int() for _ in range(6))
        return {"kernel": (kh, kw), "stride": (sy, sx), "padding": (py, px)}
    if kind == "relu" and tag in ("relu_", "relu_2"):
        if tag == "relu_2":
            s.bool()
        return {}
    if kind == "add_prev" and tag == "add_prev_":
        return {}
    if kind == "fc" and tag in ("fc_2", "fc_3"):
        n_out, n_in = s.int(), s.int()
        params = s.tensor().ravel()
        s.shape(), s.shape()
        if s.int() != 1:  # FC_NO_BIAS
            raise ValueError("the 128-D output layer has a bias; dlib's face network has none")
        for _ in range(4):
            s.float()
        if tag == "fc_3":
            s.bool()
        return {"weight": params[:n_in * n_out].reshape(n_in, n_out)}
    raise ValueError(f"found layer {tag!r} at byte {s.pos} where dlib's face network has a {kind} layer")


def _read_layers(data: bytes) -> list[tuple[str, dict]]:
    """(kind, details) of every layer, input to output."""
    s = _Stream(data)
    s.int()  # loss layer version
    if not s.str().startswith("loss_metric_"):
        raise ValueError("not a metric-learning network (expected dlib's loss_metric)")
    s.float(), s.float()  # margin, distance threshold: training settings
    kinds = _architecture()
    versions = [s.int() for _ in kinds]  # every wrapper's version, outermost first
    if s.str() != "input_rgb_image_sized":
        raise ValueError("expected the 150x150 RGB input layer")
    means = [s.float() for _ in range(3)]
    if (s.int(), s.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise ValueError(f"expected a {CHIP_SIZE}x{CHIP_SIZE} input")
    layers = [("input", {"mean": means})]
    for i in reversed(range(len(kinds))):
        if kinds[i] in ("tag", "skip"):
            continue  # no settings of their own
        layers.append((kinds[i], _read_details(s, kinds[i])))
        for _ in range(3):
            s.bool()  # setup / gradient flags
        on_input = i == len(kinds) - 1  # the wrapper of the layer on the input writes other fields
        for _ in range(3 if on_input or versions[i] >= 2 else 2):
            s.tensor()  # gradient and output caches (empty in a saved model)
        if on_input and versions[i] >= 3:
            s.int()  # sample expansion factor
    if s.pos != len(data):
        raise ValueError(f"{len(data) - s.pos} bytes left after the network")
    return layers


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride, self.down = (2 if down else 1), down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0 if down else 1)
        self.scale1, self.shift1 = nn.Parameter(torch.ones(cout)), nn.Parameter(torch.zeros(cout))
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.scale2, self.shift2 = nn.Parameter(torch.ones(cout)), nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        y = F.relu(_affine(self.conv1(x), self.scale1, self.shift1))
        y = _affine(self.conv2(y), self.scale2, self.shift2)
        skip = F.avg_pool2d(x, 2) if self.down else x
        return F.relu(_add_padded(y, skip))


def _affine(x, scale, shift):
    return x * scale[:, None, None] + shift[:, None, None]


def _add_padded(a, b):
    """dlib's add_prev: the sum of two tensors of different channels/size, the missing entries taken as 0
    (channels appended, rows and columns at the bottom and right)."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    pad = lambda t: F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))  # noqa: E731
    return pad(a) + pad(b)


class DlibFaceNet(nn.Module):
    """150x150 RGB face chips (float 0-255, [N, 3, 150, 150]) -> 128-D embeddings (dlib's descriptors)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        self.stem_scale, self.stem_shift = nn.Parameter(torch.ones(32)), nn.Parameter(torch.zeros(32))
        chans = [32] + [c for c, _ in BLOCKS]
        self.blocks = nn.ModuleList(_Residual(cin, cout, down) for cin, (cout, down) in zip(chans, BLOCKS))
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean[:, None, None]) / 256
        x = F.max_pool2d(F.relu(_affine(self.stem(x), self.stem_scale, self.stem_shift)), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def load_dlib(self, layers: list[tuple[str, dict]]) -> DlibFaceNet:
        """Copy the layers read from the .dat, checking every shape and stride against this module."""
        convs = [self.stem] + [c for b in self.blocks for c in (b.conv1, b.conv2)]
        affines = ([(self.stem_scale, self.stem_shift)]
                   + [a for b in self.blocks for a in ((b.scale1, b.shift1), (b.scale2, b.shift2))])
        got = {k: [d for kind, d in layers if kind == k] for k in ("input", "con", "affine", "fc", "max_pool")}
        if len(got["con"]) != len(convs) or len(got["affine"]) != len(affines) or len(got["fc"]) != 1:
            raise ValueError(f"{len(got['con'])} convs, {len(got['affine'])} affine layers: expected "
                             f"{len(convs)} and {len(affines)}")
        with torch.no_grad():
            self.mean.copy_(torch.tensor(got["input"][0]["mean"]))
            for conv, d in zip(convs, got["con"]):
                if d["weight"].shape != tuple(conv.weight.shape) or d["stride"] != conv.stride \
                        or d["padding"] != conv.padding:
                    raise ValueError(f"conv {d['weight'].shape} stride {d['stride']} padding {d['padding']}: "
                                     f"expected {tuple(conv.weight.shape)} {conv.stride} {conv.padding}")
                conv.weight.copy_(torch.from_numpy(d["weight"].copy()))
                conv.bias.copy_(torch.from_numpy(d["bias"].copy()))
            for (scale, shift), d in zip(affines, got["affine"]):
                scale.copy_(torch.from_numpy(d["gamma"].copy()))
                shift.copy_(torch.from_numpy(d["beta"].copy()))
            self.fc.weight.copy_(torch.from_numpy(got["fc"][0]["weight"].T.copy()))
        pools = [d for kind, d in layers if kind == "avg_pool"]
        if got["max_pool"][0] != {"kernel": (3, 3), "stride": (2, 2), "padding": (0, 0)} or \
                any(p != {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)} for p in pools[:-1]) or \
                pools[-1]["kernel"] != (0, 0):
            raise ValueError("pooling layers differ from dlib's face network")
        return self


def ffhq_chips(images: torch.Tensor, size: int = CHIP_SIZE) -> torch.Tensor:
    """FFHQ-aligned faces (float [N, 3, R, R], 0-255) -> dlib-style face chips [N, 3, size, size].

    The fixed FFHQ_CHIP_BOX, resampled by roi_align: bilinear, averaging several samples per output pixel when
    the box is larger than the chip (no aliasing at 256 px and up) and interpolating when it is smaller."""
    from torchvision.ops import roi_align

    n, _, h, w = images.shape
    x0, y0, x1, y1 = FFHQ_CHIP_BOX
    box = torch.tensor([x0 * w, y0 * h, x1 * w, y1 * h], dtype=images.dtype, device=images.device)
    boxes = torch.cat([torch.arange(n, dtype=images.dtype, device=images.device)[:, None], box.expand(n, 4)], 1)
    return roi_align(images, boxes, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def load_dlib_face_net(path=None) -> DlibFaceNet:
    """The network from dlib's .dat (default: the file in the installed face-recognition-models package)."""
    if path is None:
        path = dlib_model_path()
        if path is None:
            raise UserError(f"identity_dlib needs dlib's face-recognition weights: pip install {DLIB_PACKAGE} "
                            f"(or pass the {DLIB_FILE} path)")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected dlib's {DLIB_FILE}")
    try:
        layers = _read_layers(path.read_bytes())
    except ValueError as exc:
        raise UserError(f"{path}: not dlib's face-recognition ResNet ({exc})") from None
    try:
        return DlibFaceNet().load_dlib(layers).eval()
    except ValueError as exc:
        raise UserError(f"{path}: not dlib's face-recognition ResNet ({exc})") from None


__all__ = ["CHIP_SIZE", "DLIB_FILE", "DLIB_PACKAGE", "FFHQ_CHIP_BOX", "DlibFaceNet", "dlib_model_path", "ffhq_chips",
           "load_dlib_face_net"]
