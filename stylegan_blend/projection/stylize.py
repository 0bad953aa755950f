"""Stylise a real face: align it, project it into the base generator, render the same w with a blend.

A layer-swapped generator keeps the base model's W space (the blend only changes synthesis blocks), so
the w found for the base model drives the blend directly: the reconstruction shows what the projection
captured, the stylised render shows what the blend does to exactly that face.

Cost per face is the projection: one synthesis forward + backward per step (plus D's forward with the
offline loss). Measured on a shared 2-core CPU: ~13 ms/step for a 32 px test G; ~4-7 CPU-s/step for a
paper256 (256 px) G, so 1000 steps take hours on a CPU and a GPU is the place for real photos.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..reporting.sheet import comparison_sheet, save_sheet
from ..run.files import atomic_write
from .align import align_face, center_crop, detect_faces
from .project import project, render, save_w

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class Stylised:
    aligned: np.ndarray            # uint8 HWC, the model-ready crop of the photo
    recon: np.ndarray              # base G's render of w
    stylised: list[np.ndarray]     # one render of w per blended generator
    w: torch.Tensor                # [num_ws, w_dim]
    loss_name: str | None          # None when w was given rather than projected
    seconds: float                 # projection + rendering time


def check_compatible(base_G, G, what: str) -> None:
    """A blend must read the base model's w: same resolution, num_ws and w_dim."""
    got = (G.img_resolution, G.num_ws, G.w_dim)
    want = (base_G.img_resolution, base_G.num_ws, base_G.w_dim)
    if got != want:
        raise UserError(f"{what}: resolution/num_ws/w_dim {got} do not match the base model's {want}")


def stylize_aligned(base_G, blended, aligned: np.ndarray, steps: int = 1000, w: torch.Tensor | None = None,
                    w_plus: bool = False, D=None, seed: int = 0, device="cpu", lpips_path=None,
                    progress: bool = False, description: str = "projecting") -> Stylised:
    """Project an already aligned crop (unless `w` is given) and render it with base G and each blend."""
    blended = list(blended) if isinstance(blended, (list, tuple)) else [blended]
    start = time.perf_counter()
    loss_name = None
    if w is None:
        result = project(base_G, aligned, num_steps=steps, w_plus=w_plus, D=D, seed=seed, device=device,
                         progress=progress, lpips_path=lpips_path, description=description)
        w, loss_name = result.w, result.loss_name
    recon = render(base_G, w, device)
    stylised = [render(G, w, device) for G in blended]
    return Stylised(aligned, recon, stylised, w, loss_name, time.perf_counter() - start)


def stylize_image(base_G, blended_G, image_uint8, steps: int = 1000, align: bool = True, **kwargs):
    """Photo (uint8 HWC) -> (aligned, reconstruction, stylised, w) for the demo and notebooks.

    `align=True` frames the largest face FFHQ-style (needs facenet-pytorch); False centre-crops.
    Extra keyword arguments go to `stylize_aligned` (w, w_plus, D, seed, device, lpips_path, progress).
    """
    res = base_G.img_resolution
    if align:
        faces = detect_faces(image_uint8, device=str(kwargs.get("device", "cpu")))
        if not faces:
            raise UserError("image: no face found; expected a photo with a visible face (or align=False)")
        aligned = align_face(image_uint8, faces[0][1], res)
    else:
        aligned = center_crop(image_uint8, res)
    out = stylize_aligned(base_G, blended_G, aligned, steps=steps, **kwargs)
    return out.aligned, out.recon, out.stylised[0], out.w


def identity_to_input(extractor, result: Stylised) -> list[float]:
    """The identity distance (evaluation/identity.py) from the aligned input photo to the base reconstruction and
    to each stylised render, in that order: what the projection kept of the person, and what each blend keeps."""
    feats = extractor.features(torch.from_numpy(np.stack([result.aligned, result.recon, *result.stylised])))
    return [float(v) for v in extractor.pairwise({k: v[:1] for k, v in feats.items()}, feats)[0, 1:]]


def save_png(path, image: np.ndarray) -> None:
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def sheet_labels(blend_labels: list[str], aligned: bool = True) -> list[str]:
    """Column labels of a stylize sheet: what each image is."""
    return ["input (aligned)" if aligned else "input (centre crop)", "base reconstruction", *blend_labels]


def save_outputs(outdir: Path, name: str, result: Stylised, labels: list[str] | None = None,
                 title: str | None = None) -> tuple[Path, Path]:
    """`<name>_stylized.png` = one labelled row [aligned | reconstruction | stylised ...] (a comparison
    sheet, nearest-neighbour enlarged for small models) and `<name>.npz` (key w)."""
    png, npz = outdir / f"{name}_stylized.png", outdir / f"{name}.npz"
    tiles = [result.aligned, result.recon, *result.stylised]
    labels = labels or sheet_labels([f"blend {i + 1}" for i in range(len(result.stylised))])
    save_sheet(png, comparison_sheet([tiles], col_labels=labels, title=title or name))
    save_w(npz, result.w)
    return png, npz


def list_photos(path: Path) -> list[Path]:
    """One photo, or every image file directly inside a folder (sorted)."""
    if path.is_dir():
        photos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise UserError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return photos
    if not path.is_file():
        raise UserError(f"{path}: no such photo or folder")
    return [path]
