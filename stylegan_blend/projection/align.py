"""FFHQ-style face alignment: five landmarks -> an oriented square crop at the model resolution.

The geometry follows the FFHQ dataset's published recipe (Karras et al. 2019, `ffhq-dataset`): the
crop is centred slightly below the eyes, its "up" axis is the eye-to-mouth direction blended with the
eye line, and its side is max(4 x eye distance, 3.6 x eye-to-mouth distance). A model trained on FFHQ
has only ever seen faces framed like this, so a photo must be framed the same way before projection.

Coordinates are continuous image coordinates (x right, y down; pixel (row i, col j) covers
[j, j+1] x [i, i+1]), the convention of Pillow's transforms and of MTCNN's boxes.
Landmark order is MTCNN's: eye on the image's left, eye on the image's right, nose, mouth left, mouth right.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..errors import UserError

FACENET_PIP = "pip install --no-deps facenet-pytorch"


def alignment_quad(landmarks5) -> np.ndarray:
    """Corners of the FFHQ crop in the input image: [top-left, bottom-left, bottom-right, top-right] (4x2)."""
    lm = np.asarray(landmarks5, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"landmarks shape {lm.shape}, expected (5, 2)")
    eye_left, eye_right, _nose, mouth_left, mouth_right = lm
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    # x axis: the eye line, corrected by the eye-to-mouth direction turned by -90 degrees,
    # so a tilted mouth and a tilted eye line both vote for the face's orientation
    x_axis = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    x_axis *= max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth)) / np.hypot(*x_axis)
    y_axis = np.array([-x_axis[1], x_axis[0]])  # x turned by +90 degrees (image y points down)
    centre = eye_avg + 0.1 * eye_to_mouth
    return np.stack([centre - x_axis - y_axis, centre - x_axis + y_axis,
                     centre + x_axis + y_axis, centre + x_axis - y_axis])


def _pad_for_quad(img: Image.Image, quad: np.ndarray, qsize: float) -> tuple[Image.Image, np.ndarray]:
    """Extend the image by mirroring where the crop leaves it, fading the mirrored part into a blur.

    Without this, a face near the border gets black wedges that the projection would try to reproduce.
    """
    w, h = img.size
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    left, top = max(-lo[0], 0), max(-lo[1], 0)
    right, bottom = max(hi[0] - w, 0), max(hi[1] - h, 0)
    if not (left or top or right or bottom):
        return img, quad
    arr = np.asarray(img, dtype=np.float32)
    padded = np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    ys, xs = np.mgrid[:padded.shape[0], :padded.shape[1]]
    outside = np.maximum.reduce([left - xs, xs - (left + w - 1), top - ys, ys - (top + h - 1),
                                 np.zeros_like(xs)]).astype(np.float32)
    fade = np.clip(outside / max(0.1 * qsize, 1.0), 0.0, 1.0)[..., None]
    blurred = np.asarray(Image.fromarray(np.uint8(np.clip(padded, 0, 255).round()))
                         .filter(ImageFilter.GaussianBlur(max(0.02 * qsize, 1.0))), dtype=np.float32)
    padded += (blurred - padded) * fade
    return Image.fromarray(np.uint8(np.clip(padded, 0, 255).round())), quad + [left, top]


def align_face(image, landmarks5, resolution: int) -> np.ndarray:
    """Crop, rotate and resize one face the FFHQ way; returns uint8 HWC RGB of side `resolution`."""
    img = _to_pil(image)
    quad = alignment_quad(landmarks5)
    qsize = float(np.hypot(*(quad[3] - quad[0])))  # side length of the square crop
    # Box-filter a much larger face down first so the quad resampling below does not alias.
    shrink = int(qsize // (2 * resolution))
    if shrink > 1:
        img = img.reduce(shrink)
        quad, qsize = quad / shrink, qsize / shrink
    img, quad = _pad_for_quad(img, quad, qsize)
    # Resample at up to 4x the output size, then Lanczos down: the same anti-aliasing as FFHQ's 4096 px step.
    work = int(min(max(round(qsize), resolution), 4 * resolution))
    out = img.transform((work, work), Image.Transform.QUAD, tuple(quad.flatten()), Image.Resampling.BICUBIC)
    if work != resolution:
        out = out.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8)


def center_crop(image, resolution: int) -> np.ndarray:
    """The `--no-align` path: central square, resized to the model resolution (NVIDIA projector's framing)."""
    img = _to_pil(image)
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((resolution, resolution), Image.Resampling.LANCZOS), dtype=np.uint8)


@functools.lru_cache(maxsize=2)
def _mtcnn(device: str):
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        raise UserError(f"face alignment needs facenet-pytorch ({FACENET_PIP}); "
                        f"or pass --no-align to centre-crop instead") from exc
    return MTCNN(keep_all=True, device=device)


def detect_faces(image, device: str = "cpu") -> list[tuple[np.ndarray, np.ndarray, float]]:
    """All faces MTCNN finds, largest box first: (box [x0, y0, x1, y1], landmarks5 (5x2), probability)."""
    boxes, probs, points = _mtcnn(str(device)).detect(_to_pil(image), landmarks=True)
    if boxes is None:
        return []
    faces = [(np.asarray(b, dtype=np.float64), np.asarray(p, dtype=np.float64), float(q))
             for b, p, q in zip(boxes, points, probs)]
    return sorted(faces, key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))


def load_image(path) -> np.ndarray:
    """Read any Pillow-readable photo as uint8 HWC RGB, upright per its EXIF orientation (phone photos)."""
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{path}: cannot read as an image ({exc.__class__.__name__}); expected a JPEG/PNG photo") from exc


def aligned_faces(path: Path, resolution: int, align: bool = True, all_faces: bool = False,
                  device: str = "cpu") -> list[tuple[np.ndarray, str]]:
    """The model-ready crops of one photo file (the largest face, every face, or the centre crop), each
    with a line saying what was found: the face box in photo pixels and MTCNN's score."""
    image = load_image(path)
    if not align:
        h, w = image.shape[:2]
        return [(center_crop(image, resolution), f"centre crop of the {w}x{h} photo (no face detection)")]
    faces = detect_faces(image, device=device)
    if not faces:
        raise UserError(f"{path}: no face found; expected a photo with a visible face (or use --no-align)")
    found = len(faces)
    if not all_faces:
        faces = faces[:1]
    return [(align_face(image, landmarks, resolution),
             f"face {k + 1} of {found} at box ({', '.join(str(round(float(v))) for v in box)}), score {prob:.3f}")
            for k, (box, landmarks, prob) in enumerate(faces)]


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image: dtype {arr.dtype} shape {arr.shape}, expected uint8 HxWx3")
    return Image.fromarray(arr).convert("RGB")


__all__ = ["alignment_quad", "align_face", "center_crop", "detect_faces", "load_image", "aligned_faces",
           "FACENET_PIP"]
