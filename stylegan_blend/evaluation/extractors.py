"""Feature extractors for Fréchet / kernel distances, behind one interface.

`inception` is clean-fid's pipeline (PIL bicubic resize to 299 in float, then the TorchScript
Inception-v3 `inception-2015-12-05.pt`): only its numbers may be called FID/KID. `randcnn` is an
offline proxy that needs no downloaded weights; its numbers are named `fd_randcnn` / `kd_randcnn`.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE
INCEPTION_ENV = "STYLEGAN_BLEND_INCEPTION"
CLEANFID_DIR = Path("/tmp")  # where clean-fid itself looks for (and would download) the weights
EXTRACTORS = ("inception", "randcnn")


class FeatureExtractor:
    """uint8 NHWC images -> float64 features [N, D], computed in batches without gradients."""

    name: str
    comparable: bool  # True only when the numbers can be compared with published FID/KID
    cache_id: str  # identifies weights + preprocessing, part of the reference-feature cache key

    def __init__(self, device="cpu", batch_size: int = 64):
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    def metric_names(self) -> tuple[str, str]:
        """(Fréchet name, kernel name)."""
        return ("fid", "kid") if self.comparable else (f"fd_{self.name}", f"kd_{self.name}")

    @torch.no_grad()
    def __call__(self, images) -> np.ndarray:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"{self.name}: expected uint8 images [N, H, W, 1|3], got {images.dtype} "
                             f"{tuple(images.shape)}")
        if images.shape[-1] == 1:
            images = images.expand(-1, -1, -1, 3)
        feats = [self._features(images[i:i + self.batch_size]).to("cpu", torch.float64)
                 for i in range(0, len(images), self.batch_size)]
        if not feats:
            return np.zeros((0, self.dim), np.float64)
        return torch.cat(feats).numpy()

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class InceptionExtractor(FeatureExtractor):
    """clean-fid's "clean" mode: per-channel PIL bicubic resize to 299 in float32 (no quantisation), then the
    pool3 features (2048-d) of NVIDIA's TorchScript Inception-v3, input scaled as (x - 128) / 128."""

    name, comparable, dim = "inception", True, 2048
    cache_id = "inception-2015-12-05/clean"

    def __init__(self, path: str | os.PathLike, device="cpu", batch_size: int = 32):
        super().__init__(device, batch_size)
        from cleanfid.resize import build_resizer

        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format of these weights
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(str(path), map_location="cpu")
            self.layers = model.layers.to(self.device).eval()
        except (RuntimeError, AttributeError, ValueError) as exc:
            raise UserError(f"Inception weights {path}: not clean-fid's TorchScript {INCEPTION_FILE} "
                            f"({type(exc).__name__}); download it from {INCEPTION_URL}") from None
        self.resize = build_resizer("clean")

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        resized = np.stack([self.resize(img) for img in batch.cpu().numpy()])  # [N, 299, 299, 3] float32
        x = torch.from_numpy(resized).permute(0, 3, 1, 2).to(self.device)
        return self.layers.forward((x - 128) / 128).reshape(len(x), self.dim)


def find_inception(path: str | os.PathLike | None = None) -> Path:
    """The weights file from `path`, else $STYLEGAN_BLEND_INCEPTION, else clean-fid's /tmp; never downloads."""
    how = "put it there"
    if path is None and os.environ.get(INCEPTION_ENV):
        path, how = os.environ[INCEPTION_ENV], f"fix ${INCEPTION_ENV}"
    if path is not None:
        if Path(path).is_file():
            return Path(path)
        raise UserError(f"Inception weights {path} not found ({how}): expected clean-fid's {INCEPTION_FILE} "
                        f"from {INCEPTION_URL}")
    default = CLEANFID_DIR / INCEPTION_FILE
    if default.is_file():
        return default
    raise UserError(f"FID needs clean-fid's Inception weights: download {INCEPTION_FILE} from {INCEPTION_URL} "
                    f"and put it at {default}, or pass --inception-path FILE, or set {INCEPTION_ENV}=FILE "
                    f"(offline: --extractor randcnn gives proxy metrics fd_randcnn/kd_randcnn)")


class RandCNNExtractor(FeatureExtractor):
    """Proxy, not comparable with published FID: an offline feature space for small stylised images.

    Three feature families on the image resized to 64 px:
    - texture: per-channel mean and std of a fixed random ReLU conv net at 64, 32, 16 and 8 px (random conv
      features are a cheap stand-in for learned ones); first-layer filters are zero-mean, so this family sees
      structure, not flat colour;
    - colour: per-channel histograms (the palette);
    - edges: gradient-magnitude statistics at two scales and the share of flat (low local variance) pixels,
      what separates flat, outlined cartoon images from photos.
    The family gains give each a similar share of the total variance on a mix of flat-colour, gradient and
    noise images, so no family swamps the distance. Weights come from NumPy's RandomState(seed), whose stream
    is fixed across versions and machines, and everything runs in float64, so features are reproducible.
    Numbers are logged as fd_randcnn / kd_randcnn.
    """

    name, comparable = "randcnn", False
    work_res = 64
    channels = (16, 32, 48, 64)
    hist_bins = 8
    conv_gain, hist_gain, edge_gain = 3.0, 1.0, 2.5
    cache_id = "randcnn-v2"

    def __init__(self, device="cpu", batch_size: int = 64, seed: int = 0):
        super().__init__(device, batch_size)
        rng = np.random.RandomState(seed)
        self.weights, cin = [], 3
        for cout in self.channels:
            w = rng.standard_normal((cout, cin, 3, 3)) * math.sqrt(2.0 / (cin * 9))  # He init keeps scale ~1
            if cin == 3:
                w -= w.mean(axis=(2, 3), keepdims=True)
            self.weights.append(torch.from_numpy(w).to(self.device))
            cin = cout
        self.dim = 2 * sum(self.channels) + 3 * self.hist_bins + 6 + 2

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device).permute(0, 3, 1, 2).to(torch.float64) / 255
        if x.shape[-1] != self.work_res or x.shape[-2] != self.work_res:
            x = F.interpolate(x, size=(self.work_res, self.work_res), mode="bilinear", antialias=True,
                              align_corners=False)
        return torch.cat([self.conv_gain * self._conv_stats(x * 2 - 1), self.hist_gain * self._colour_hist(x),
                          self.edge_gain * self._edge_stats(x)], dim=1)

    def _conv_stats(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for i, w in enumerate(self.weights):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w))
            out += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(out, dim=1)

    def _colour_hist(self, x: torch.Tensor) -> torch.Tensor:
        idx = (x * self.hist_bins).long().clamp(0, self.hist_bins - 1)
        hist = F.one_hot(idx, self.hist_bins).to(x.dtype).mean(dim=(2, 3))  # [N, 3, bins], rows sum to 1
        return hist.flatten(1)

    def _edge_stats(self, x: torch.Tensor) -> torch.Tensor:
        lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        out = []
        for scale in (lum, F.avg_pool2d(lum, 2)):
            gx = scale[..., :, 1:] - scale[..., :, :-1]
            gy = scale[..., 1:, :] - scale[..., :-1, :]
            mag = (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt()
            out += [mag.mean(dim=(1, 2, 3)), mag.std(dim=(1, 2, 3)), (mag > 0.1).to(x.dtype).mean(dim=(1, 2, 3))]
        local_var = F.avg_pool2d(lum ** 2, 3, stride=1) - F.avg_pool2d(lum, 3, stride=1) ** 2
        local_std = local_var.clamp(min=0).sqrt()
        out += [(local_std < 2 / 255).to(x.dtype).mean(dim=(1, 2, 3)), local_std.mean(dim=(1, 2, 3))]
        return torch.stack(out, dim=1)


def make_extractor(name: str, device="cpu", inception_path: str | os.PathLike | None = None,
                   batch_size: int | None = None) -> FeatureExtractor:
    """`inception` (real FID/KID, needs the weights file) or `randcnn` (offline proxy)."""
    kw = {} if batch_size is None else dict(batch_size=batch_size)
    if name == "inception":
        return InceptionExtractor(find_inception(inception_path), device=device, **kw)
    if name == "randcnn":
        return RandCNNExtractor(device=device, **kw)
    raise UserError(f"feature extractor {name!r}: expected one of {', '.join(EXTRACTORS)}")
