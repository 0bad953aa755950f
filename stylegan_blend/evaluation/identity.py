"""Identity (content) loss of a blend cell, paired by seed: for each z, compare cell(z) with base(z).

Extractors behind one interface, each named for what it measures (the `extractor` column of metrics.csv):
- `identity_dlib`: Euclidean distance of dlib's 128-D face descriptors (dlib_face.py; weights from the PyPI
  package face-recognition-models, no download at run time) of a fixed face chip of the FFHQ-aligned image.
  A face-recognition network: same person below ~0.6 on photos; trained on photos only, so on stylised faces
  it ranks, it does not decide; it saturates at 32 px. The default (`auto`) from 64 px up.
- `identity_facenet`: 1 − cosine of facenet-pytorch InceptionResnetV1 face embeddings (a face-recognition
  network; local weights file only, never downloaded); the whole frame, resized, without a face crop;
- `lpips`: LPIPS distance with local backbone weights (the lpips wheel ships only its linear heads);
- `proxy` (offline, no weights; `auto` below 64 px): (1 − Pearson correlation of the 16×16 RGB thumbnails) / 2,
  the same formula for every seed. A proxy: it sees layout, pose and colour at a coarse scale, not who
  someone is. (It replaced MTCNN landmarks averaged with an 8×8 luminance term: at 32 px MTCNN lost two
  thirds of the base's own faces and most stylised ones, a lost face scored 1, and the per-seed loss mixed
  two formulas.)

Per cell, for the main metric `idloss_<x>` (the mean over seeds of the paired distance) and its spread
`idloss_<x>_std`: `idbase_<x>`, the "another person" baseline = mean distance between base(z_i) and
base(z_j), i ≠ j, over the same seeds; `idnorm_<x>` = idloss / idbase (0 = the base face itself, 1.0 = as
far as another person); `idretr_<x>` = the retrieval rate, the share of seeds whose base(z_i) is cell(z_i)'s
nearest base face among the N seeds (strictly nearer than every other; chance = 1/N). docs/identity.md
says how to read them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .dlib_face import dlib_model_path, ffhq_chips, load_dlib_face_net

log = logging.getLogger(__name__)

IDENTITY_EXTRACTORS = ("auto", "identity_dlib", "proxy", "identity_facenet", "lpips")
FACENET_ENV = "STYLEGAN_BLEND_FACENET"
LPIPS_ENV = "STYLEGAN_BLEND_LPIPS"
DLIB_MIN_RESOLUTION = 64  # below, dlib's descriptors saturate (every face looks alike): auto picks the proxy


class IdentityExtractor:
    """uint8 NHWC images -> per-image features (dict of arrays); pairs of features -> per-seed losses."""

    name: str  # the extractor column
    metric: str  # the main loss metric, idloss_<x>

    def __init__(self, device="cpu", batch_size: int = 32):
        self.device, self.batch_size = torch.device(device), batch_size

    @torch.no_grad()
    def features(self, images) -> dict[str, np.ndarray]:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: expected uint8 images [N, H, W, 3], got {images.dtype} "
                             f"{tuple(images.shape)}")
        parts = [self._features(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def _features(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def per_seed(self, base: dict, cell: dict) -> dict[str, np.ndarray]:
        """{metric: loss per seed (NaN where undefined)}; the main metric first."""
        raise NotImplementedError

    def pairwise(self, a: dict, b: dict) -> np.ndarray:
        """The main metric between every image of `a` and every image of `b`: [len(a), len(b)]; its diagonal is
        `per_seed(a, b)[metric]` when a and b are paired."""
        raise NotImplementedError

    def _as_float(self, batch: torch.Tensor, size: int) -> torch.Tensor:
        x = batch.to(self.device).permute(0, 3, 1, 2).float() / 255
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _suffix(extractor: IdentityExtractor) -> str:
    return extractor.metric.removeprefix("idloss_")


def identity_baseline(extractor: IdentityExtractor, base: dict) -> float:
    """The "another person" distance: mean over i ≠ j of the main metric between base(z_i) and base(z_j)."""
    d = extractor.pairwise(base, base)
    off = d[~np.eye(len(d), dtype=bool)]
    off = off[np.isfinite(off)]
    if not len(off):
        raise ValueError(f"{extractor.name}: the baseline needs at least 2 base images")
    return float(off.mean())


def retrieval_rate(extractor: IdentityExtractor, base: dict, cell: dict) -> float:
    """Share of seeds i whose base(z_i) is strictly the nearest of the N base faces to cell(z_i)."""
    d = extractor.pairwise(cell, base)
    n = len(d)
    if n < 2:
        return float("nan")
    own = np.diag(d).copy()
    others = np.where(np.eye(n, dtype=bool), np.inf, d).min(axis=1)
    return float((own < others).mean())


def identity_scores(extractor: IdentityExtractor, base: dict, cell: dict) -> dict[str, tuple[float, int]]:
    """{metric: (value, number of seeds it is averaged over)} for one cell: mean of every per-seed loss, the
    spread (std) of the main one, and its baseline, normalised loss and retrieval rate."""
    n = len(next(iter(cell.values())))
    if len(next(iter(base.values()))) != n:
        raise ValueError(f"identity: {n} cell images but {len(next(iter(base.values())))} base images")
    out = {}
    for metric, losses in extractor.per_seed(base, cell).items():
        ok = losses[np.isfinite(losses)]
        if len(ok):
            out[metric] = (float(ok.mean()), len(ok))
            if metric == extractor.metric:
                out[metric + "_std"] = (float(ok.std()), len(ok))
    if n >= 2 and extractor.metric in out:
        x = _suffix(extractor)
        idbase = identity_baseline(extractor, base)
        out[f"idbase_{x}"] = (idbase, n)
        out[f"idnorm_{x}"] = (out[extractor.metric][0] / idbase if idbase > 0 else float("nan"),
                              out[extractor.metric][1])
        out[f"idretr_{x}"] = (retrieval_rate(extractor, base, cell), n)
    return out


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


class ProxyIdentity(IdentityExtractor):
    """Offline proxy: (1 − Pearson correlation of the 16×16 RGB thumbnails) / 2 (see the module docstring).

    Pearson correlation over all 3 × 16 × 16 values: a change of brightness or contrast costs nothing, a colour
    cast a little, a different layout or palette a lot; 0 = same thumbnail, 0.5 = unrelated, 1 = inverted.
    Measured on the demo (committed base, a `make demo` fine-tune, seeds 0-99; docs/identity.md): a mild blur,
    noise or colour cast scores ≤ 0.04 of the another-person baseline, swap 16 0.15, swap 8 0.52, swap 4 0.88,
    the fine-tuned model 1.27 (epoch 18); base(z) is retrieved from a swap-8 / swap-4 blend for 99 / 88 % of
    the seeds at epoch 9 and 81 / 51 % at epoch 18. The 8×8 luminance term it replaces: 71 / 28 % and
    49 / 21 %."""

    name, metric = "proxy", "idloss_proxy"
    thumb_res = 16

    def _features(self, batch):
        x = batch.to(self.device).permute(0, 3, 1, 2).double() / 255
        thumb = F.adaptive_avg_pool2d(x, self.thumb_res).flatten(1)
        return {"thumb": _unit_rows(thumb - thumb.mean(dim=1, keepdim=True)).cpu().numpy()}

    def per_seed(self, base, cell):
        return {self.metric: (1 - (base["thumb"] * cell["thumb"]).sum(axis=1)).clip(0, 2) / 2}

    def pairwise(self, a, b):
        return (1 - a["thumb"] @ b["thumb"].T).clip(0, 2) / 2


class DlibIdentity(IdentityExtractor):
    """Euclidean distance of dlib's face descriptors of FFHQ-framed faces (generated ones as they are; photos
    aligned by projection/align.py first), cropped to dlib's face chip by the fixed box dlib_face.FFHQ_CHIP_BOX."""

    name, metric = "identity_dlib", "idloss_dlib"

    def __init__(self, path=None, device="cpu", batch_size: int = 32):
        super().__init__(device, batch_size)
        self.net = load_dlib_face_net(path).to(self.device)
        self._warned = False

    def _features(self, batch):
        if batch.shape[1] < DLIB_MIN_RESOLUTION and not self._warned:
            log.warning("identity_dlib on %d px faces: dlib's descriptors saturate below %d px; rank with "
                        "care", batch.shape[1], DLIB_MIN_RESOLUTION)
            self._warned = True
        x = batch.to(self.device).permute(0, 3, 1, 2).float()
        return {"embedding": self.net(ffhq_chips(x)).double().cpu().numpy()}

    def per_seed(self, base, cell):
        return {self.metric: np.linalg.norm(base["embedding"] - cell["embedding"], axis=1)}

    def pairwise(self, a, b):
        return np.linalg.norm(a["embedding"][:, None] - b["embedding"][None], axis=2)


def _weights_file(path, env: str, what: str, option: str) -> Path:
    how = option
    if path in (None, "") and os.environ.get(env):
        path, how = os.environ[env], f"${env}"
    if path in (None, ""):
        raise UserError(f"identity extractor needs {what}: set {option}=FILE or {env}=FILE (never downloaded; "
                        f"the default metrics.identity=auto needs no file)")
    if not Path(path).is_file():
        raise UserError(f"{what} {path} (from {how}) not found: expected a local file")
    return Path(path)


def _load_state_dict(path: Path, what: str) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise UserError(f"{what} {path}: not a readable PyTorch state dict ({type(exc).__name__})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UserError(f"{what} {path}: expected a state dict, got {type(sd).__name__}")
    return sd


class FacenetIdentity(IdentityExtractor):
    """1 − cosine similarity of InceptionResnetV1 embeddings (facenet-pytorch's format, e.g. its
    20180402-114759-vggface2.pt); images resized to 160 px and standardised as facenet-pytorch does."""

    name, metric = "identity_facenet", "idloss_facenet"

    def __init__(self, path=None, device="cpu", batch_size: int = 32):
        super().__init__(device, batch_size)
        from facenet_pytorch import InceptionResnetV1

        file = _weights_file(path, FACENET_ENV, "face-recognition weights (InceptionResnetV1)",
                             "metrics.identity_weights")
        net = InceptionResnetV1(pretrained=None, classify=False)
        sd = {k: v for k, v in _load_state_dict(file, "face-recognition weights").items()
              if not k.startswith("logits.")}  # the classifier head of the released files is unused
        missing, unexpected = net.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise UserError(f"face-recognition weights {file}: not InceptionResnetV1's ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})")
        self.net = net.to(self.device).eval()

    def _features(self, batch):
        x = self._as_float(batch, 160) * 255
        emb = self.net((x - 127.5) / 128.0)  # fixed_image_standardization
        return {"embedding": F.normalize(emb.double(), dim=1).cpu().numpy()}

    def per_seed(self, base, cell):
        return {self.metric: 1 - (base["embedding"] * cell["embedding"]).sum(axis=1)}

    def pairwise(self, a, b):
        return 1 - a["embedding"] @ b["embedding"].T


class LPIPSIdentity(IdentityExtractor):
    """LPIPS distance (Zhang et al. 2018) between cell(z) and base(z): the lpips wheel's linear heads over
    a local torchvision AlexNet or VGG16 state dict (e.g. alexnet-owt-7be5be79.pth).

    LPIPS = sum over layers of the spatial mean of sum_c w_c (f0 - f1)^2 on unit-normalised activations, with
    w_c >= 0. So each image's activations scaled by sqrt(w_c / (H * W)) are a feature vector whose squared
    Euclidean distance is exactly LPIPS: the pairwise distances (baseline, retrieval) cost matrix products
    instead of N^2 network passes. ~0.6 MB of features per image with AlexNet at 128 px."""

    name, metric = "lpips", "idloss_lpips"
    size = 128

    def __init__(self, path=None, device="cpu", batch_size: int = 32, net: str = "alex"):
        super().__init__(device, batch_size)
        import warnings

        import lpips
        import torchvision

        file = _weights_file(path, LPIPS_ENV, f"LPIPS backbone weights (torchvision {net})",
                             "metrics.identity_weights")
        if net not in ("alex", "vgg"):
            raise UserError(f"LPIPS backbone {net!r}: expected alex or vgg")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # trunk from our file, not the web
        trunk = (torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16())
        try:
            trunk.load_state_dict(_load_state_dict(file, "LPIPS backbone weights"))
        except RuntimeError as exc:
            raise UserError(f"LPIPS backbone weights {file}: not torchvision {net}'s state dict "
                            f"({str(exc).splitlines()[0]})") from None
        for sl in (getattr(model.net, f"slice{i}") for i in range(1, model.net.N_slices + 1)):
            for idx, layer in sl.named_children():
                layer.load_state_dict(trunk.features[int(idx)].state_dict())
        self.model = model.to(self.device).eval()
        self.head_weights = [lin.model[-1].weight.detach().flatten() for lin in self.model.lins]
        if any((w < 0).any() for w in self.head_weights):
            raise UserError("LPIPS linear heads with negative weights: not the released lpips heads")

    def _features(self, batch):
        import lpips

        x = self._as_float(batch, self.size) * 2 - 1
        parts = []
        for f, w in zip(self.model.net(self.model.scaling_layer(x)), self.head_weights):
            scale = (w / (f.shape[2] * f.shape[3])).sqrt()[None, :, None, None]
            parts.append((lpips.normalize_tensor(f) * scale).flatten(1))
        return {"lpips_features": torch.cat(parts, dim=1).cpu().numpy()}

    def per_seed(self, base, cell):
        diff = base["lpips_features"].astype(np.float64) - cell["lpips_features"]
        return {self.metric: (diff * diff).sum(axis=1)}

    def pairwise(self, a, b):
        fa, fb = a["lpips_features"].astype(np.float64), b["lpips_features"].astype(np.float64)
        d = (fa * fa).sum(1)[:, None] + (fb * fb).sum(1)[None] - 2 * fa @ fb.T
        return d.clip(min=0)


def auto_identity(resolution: int | None) -> str:
    """What `auto` means: dlib's face network from 64 px up when face-recognition-models is installed, else
    the proxy (dlib saturates on smaller faces; the proxy needs nothing)."""
    if resolution is not None and resolution >= DLIB_MIN_RESOLUTION and dlib_model_path() is not None:
        return "identity_dlib"
    return "proxy"


def make_identity(name: str, device="cpu", weights: str | None = None, batch_size: int = 32,
                  resolution: int | None = None) -> IdentityExtractor:
    """The extractor called `name`; `auto` picks by the faces' `resolution` (see `auto_identity`)."""
    if name == "auto":
        name = auto_identity(resolution)
    if name == "identity_dlib":
        return DlibIdentity(weights, device=device, batch_size=batch_size)
    if name == "proxy":
        return ProxyIdentity(device=device, batch_size=batch_size)
    if name == "identity_facenet":
        return FacenetIdentity(weights, device=device, batch_size=batch_size)
    if name == "lpips":
        return LPIPSIdentity(weights, device=device, batch_size=batch_size)
    raise UserError(f"identity extractor {name!r}: expected one of {', '.join(IDENTITY_EXTRACTORS)}")
