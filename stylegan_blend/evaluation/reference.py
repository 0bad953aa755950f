"""Reference-set features, computed once per (dataset content, resolution, extractor) and cached on disk.

The cache key hashes every selected image file's bytes, so editing, adding or removing an image
recomputes the features; the same folder at another resolution or through another extractor gets its
own entry.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from .extractors import FeatureExtractor

log = logging.getLogger(__name__)

CACHE_ENV = "STYLEGAN_BLEND_CACHE"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SPLITS = ("train", "val", "all")
_PATH_COLUMNS = ("path", "file", "filename", "image")


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stylegan_blend" / "ref_stats")


def list_images(data_dir, split: str = "train") -> list[Path]:
    """Images of one split: from `manifest.csv` (a path column and a `split` column) when the folder has one,
    else from a `<split>/` subfolder when there is one, else every PNG/JPG under the folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"dataset folder {data_dir} not found: expected a folder of PNG/JPG images "
                        "(see `stylegan-blend prepare`)")
    manifest = data_dir / "manifest.csv"
    if manifest.is_file():
        files = _manifest_files(manifest, split)
    elif split != "all" and (data_dir / split).is_dir():
        files = _images_under(data_dir / split)
    else:
        files = _images_under(data_dir)
        if split != "all":
            log.info("%s has no manifest.csv: using all %d images as the %s split", data_dir, len(files), split)
    if not files:
        raise UserError(f"dataset folder {data_dir}: no PNG/JPG images for split {split!r}")
    return files


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _manifest_files(manifest: Path, split: str) -> list[Path]:
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else []
    path_col = next((c for c in _PATH_COLUMNS if c in columns), None)
    if path_col is None or (split != "all" and "split" not in columns):
        raise UserError(f"{manifest}: expected columns {'/'.join(_PATH_COLUMNS)} and split, got {', '.join(columns)}")
    selected = [r for r in rows if split == "all" or r["split"] == split]
    if not selected:
        found = sorted({r["split"] for r in rows}) if rows else []
        raise UserError(f"{manifest}: no rows with split {split!r} (found: {', '.join(found) or 'none'})")
    files = [manifest.parent / r[path_col] for r in selected]
    missing = next((p for p in files if not p.is_file()), None)
    if missing is not None:
        raise UserError(f"{manifest}: lists {missing}, which does not exist")
    return sorted(files)


def dataset_hash(files: list[Path], root: Path) -> str:
    """SHA-256 over every file's relative path and bytes: any change of content or selection changes it."""
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def load_image(path: Path, resolution: int) -> np.ndarray:
    """RGB uint8 [res, res, 3]; a prepared dataset is square, so a non-square image is an error, not a crop."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UserError(f"image {path}: cannot be read ({exc})") from None
    if img.width != img.height:
        raise UserError(f"image {path}: {img.width}x{img.height} is not square; expected square crops "
                        "(see `stylegan-blend prepare`)")
    if img.width != resolution:
        img = img.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(img)


def reference_features(extractor: FeatureExtractor, data_dir, resolution: int, cache_dir=None,
                       split: str = "train", max_items: int | None = None) -> np.ndarray:
    """Features [N, D] of the dataset's images at `resolution` (resized the way generated images are sized),
    from the on-disk cache when the dataset content, resolution and extractor are unchanged."""
    if split not in SPLITS:
        raise UserError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    files = list_images(data_dir, split)
    if max_items is not None:
        files = files[:max_items]
    key_src = dict(dataset=dataset_hash(files, data_dir), resolution=int(resolution),
                   extractor=extractor.cache_id, n=len(files))
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache_dir / f"{extractor.name}_{int(resolution)}px_{key[:24]}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file) as data:
                feats = data["features"]
            log.info("reference features: cache hit %s (%d images of %s)", cache_file, len(feats), data_dir)
            return feats
        except (OSError, ValueError, KeyError) as exc:
            log.info("reference features: cache file %s unreadable (%s), recomputing", cache_file, exc)
    log.info("reference features: cache miss, extracting %d images of %s at %d px with %s -> %s",
             len(files), data_dir, resolution, extractor.name, cache_file)
    chunks = []
    for i in range(0, len(files), extractor.batch_size):
        batch = np.stack([load_image(p, resolution) for p in files[i:i + extractor.batch_size]])
        chunks.append(extractor(torch.from_numpy(batch)))
    feats = np.concatenate(chunks)
    _save_atomic(cache_file, feats, key_src)
    return feats


def _save_atomic(path: Path, feats: np.ndarray, key_src: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, features=feats, key=json.dumps(key_src, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
