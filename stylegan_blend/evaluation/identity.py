"""Identity (content) loss of a blend cell, paired by seed: for each z, compare cell(z) with base(z).

Extractors behind one interface, each named for what it measures (the `extractor` column of metrics.csv):
- `identity_facenet`: 1 − cosine of facenet-pytorch InceptionResnetV1 face embeddings (a face-recognition
  network; local weights file only, never downloaded);
- `lpips`: LPIPS distance with local backbone weights (the lpips wheel ships only its linear heads);
- `proxy` (offline default, no downloads: MTCNN's weights ship in the facenet-pytorch wheel): MTCNN's 5
  landmarks (displacement normalised by the base face's eye distance; a face the detector loses counts
  as 1) averaged with a low-frequency structure distance ((1 − correlation of 8×8 luminance maps) / 2),
  plus the detection rate. A proxy: stylised/cartoon faces defeat face detectors, and the structure term
  sees layout and pose, not who someone is.
Each loss is 0 for identical images; metric `idloss_<name>` is the mean over seeds, `idloss_<name>_std`
its spread.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

IDENTITY_EXTRACTORS = ("proxy", "identity_facenet", "lpips")
FACENET_ENV = "STYLEGAN_BLEND_FACENET"
LPIPS_ENV = "STYLEGAN_BLEND_LPIPS"


class IdentityExtractor:
    """uint8 NHWC images -> per-image features (dict of arrays); pairs of features -> per-seed losses."""

    name: str  # the extractor column
    metric: str  # the main loss metric

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

    def rates(self, base: dict, cell: dict) -> dict[str, float]:
        """Extra per-cell numbers that are not per-seed losses (e.g. detection rate)."""
        return {}

    def _as_float(self, batch: torch.Tensor, size: int) -> torch.Tensor:
        x = batch.to(self.device).permute(0, 3, 1, 2).float() / 255
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def identity_scores(extractor: IdentityExtractor, base: dict, cell: dict) -> dict[str, tuple[float, int]]:
    """{metric: (value, number of seeds it is averaged over)} for one cell: mean of every per-seed loss,
    the spread (std) of the main one, and the extractor's rates."""
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
    out.update({k: (v, n) for k, v in extractor.rates(base, cell).items()})
    return out


def landmark_loss(base: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Per seed: mean distance of the 5 landmarks [N, 5, 2] over the base face's eye distance, capped at 1;
    1 where the base face is found and the cell's is not, NaN where the base face itself is not found."""
    base, cell = np.asarray(base, np.float64), np.asarray(cell, np.float64)
    found_b = np.isfinite(base).all(axis=(1, 2))
    found_c = np.isfinite(cell).all(axis=(1, 2))
    eye = np.linalg.norm(base[:, 1] - base[:, 0], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.linalg.norm(cell - base, axis=2).mean(axis=1) / eye
    out = np.where(found_c, np.minimum(shift, 1.0), 1.0)
    return np.where(found_b, out, np.nan)


class ProxyIdentity(IdentityExtractor):
    """Offline proxy: MTCNN landmarks + low-frequency structure (see the module docstring)."""

    name, metric = "proxy", "idloss_proxy"
    detect_res, lowfreq_res = 160, 8

    def __init__(self, device="cpu", batch_size: int = 32, detector=None):
        super().__init__(device, batch_size)
        self.detector = detector if detector is not None else self._mtcnn()

    def _mtcnn(self):
        from facenet_pytorch import MTCNN  # weights ship in the wheel (facenet_pytorch/data/*net.pt)

        # faces fill the upscaled frame: a 40 px minimum face skips the costliest pyramid level (~30% faster,
        # same detections on the demo's faces)
        mtcnn = MTCNN(image_size=self.detect_res, min_face_size=40, device=self.device, select_largest=True)

        def detect(x: torch.Tensor) -> np.ndarray:  # float [N, 3, S, S] in [0, 1] -> landmarks [N, 5, 2]
            frames = (x.permute(0, 2, 3, 1) * 255).float()
            _, _, points = mtcnn.detect(frames, landmarks=True)
            out = np.full((len(x), 5, 2), np.nan)
            for i, p in enumerate(points):
                if p is not None and len(p):
                    out[i] = np.asarray(p[0], np.float64) / x.shape[-1]
            return out

        return detect

    def _features(self, batch):
        x = self._as_float(batch, self.detect_res)
        lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1).double()
        small = F.adaptive_avg_pool2d(lum, self.lowfreq_res).flatten(1)
        small = small - small.mean(dim=1, keepdim=True)
        small = small / small.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return {"lowfreq": small.cpu().numpy(), "landmarks": self.detector(x)}

    def per_seed(self, base, cell):
        lowfreq = (1 - (base["lowfreq"] * cell["lowfreq"]).sum(axis=1)).clip(0, 2) / 2
        marks = landmark_loss(base["landmarks"], cell["landmarks"])
        combined = np.where(np.isfinite(marks), (lowfreq + marks) / 2, lowfreq)
        return {self.metric: combined, "idloss_landmarks": marks, "idloss_lowfreq": lowfreq}

    def rates(self, base, cell):
        return {"face_detect_rate": float(np.isfinite(cell["landmarks"]).all(axis=(1, 2)).mean())}


def _weights_file(path, env: str, what: str, option: str) -> Path:
    how = option
    if path in (None, "") and os.environ.get(env):
        path, how = os.environ[env], f"${env}"
    if path in (None, ""):
        raise UserError(f"identity extractor needs {what}: set {option}=FILE or {env}=FILE (never downloaded; "
                        f"the offline default is metrics.identity=proxy)")
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


class LPIPSIdentity(IdentityExtractor):
    """LPIPS distance (Zhang et al. 2018) between cell(z) and base(z): the lpips wheel's linear heads over
    a local torchvision AlexNet or VGG16 state dict (e.g. alexnet-owt-7be5be79.pth)."""

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

    def _features(self, batch):
        return {"image": self._as_float(batch, self.size).cpu().numpy().astype(np.float32)}

    @torch.no_grad()
    def per_seed(self, base, cell):
        out = []
        for i in range(0, len(base["image"]), self.batch_size):
            a = torch.from_numpy(base["image"][i:i + self.batch_size]).to(self.device) * 2 - 1
            b = torch.from_numpy(cell["image"][i:i + self.batch_size]).to(self.device) * 2 - 1
            out.append(self.model(a, b).flatten().double().cpu().numpy())
        return {self.metric: np.concatenate(out)}


def make_identity(name: str, device="cpu", weights: str | None = None, batch_size: int = 32) -> IdentityExtractor:
    if name == "proxy":
        return ProxyIdentity(device=device, batch_size=batch_size)
    if name == "identity_facenet":
        return FacenetIdentity(weights, device=device, batch_size=batch_size)
    if name == "lpips":
        return LPIPSIdentity(weights, device=device, batch_size=batch_size)
    raise UserError(f"identity extractor {name!r}: expected one of {', '.join(IDENTITY_EXTRACTORS)}")
