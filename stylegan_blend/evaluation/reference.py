"""Reference-set features, computed once per (dataset content, resolution, extractor) and cached on disk.

The cache key hashes every selected image file's bytes, so editing, adding or removing an image
recomputes the features; the same folder at another resolution or through another extractor gets its
own entry.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.folder import DECODE_ERRORS, IMAGE_EXTENSIONS, MANIFEST_NAME, read_manifest, to_rgb
from ..errors import UserError
from ..run.files import write_bytes_atomic
from .extractors import FeatureExtractor

log = logging.getLogger(__name__)

CACHE_ENV = "STYLEGAN_BLEND_CACHE"
SPLITS = ("train", "val", "all")


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stylegan_blend" / "ref_stats")


def list_images(data_dir, split: str = "train") -> list[Path]:
    """Images of one split as the prepared folder's manifest.json lists them (`all` = every listed image); a
    plain folder without a manifest counts every image under it as train, as the datamodule does."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"dataset folder {data_dir} not found: expected a folder made by `stylegan-blend prepare`")
    manifest = read_manifest(data_dir)
    if manifest is None:
        files = sorted(p for p in data_dir.rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
        log.info("%s has no %s: using all %d images for split %s", data_dir, MANIFEST_NAME, len(files), split)
    else:
        names = [e.file for e in manifest.entries if split == "all" or e.split == split]
        files = sorted(data_dir / n for n in names)
        missing = next((p for p in files if not p.is_file()), None)
        if missing is not None:
            raise UserError(f"{missing}: listed in {MANIFEST_NAME} but missing; re-run `stylegan-blend prepare`")
    if not files:
        raise UserError(f"dataset folder {data_dir}: no images for split {split!r}")
    return files


def dataset_hash(files: list[Path], root: Path) -> str:
    """SHA-256 over every file's relative path and bytes: any change of content or selection changes it."""
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def load_image(path: Path, resolution: int) -> np.ndarray:
    """RGB uint8 [res, res, 3] (converted as `prepare` does); a prepared dataset is square, so a non-square
    image is an error, not a crop."""
    try:
        with Image.open(path) as img:
            img = to_rgb(img)
    except DECODE_ERRORS as exc:
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
    if max_items is not None and max_items < 2:
        raise UserError(f"max reference images {max_items}: expected at least 2 (FD/KD need two or more images)")
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
    buf = io.BytesIO()
    np.savez(buf, features=feats, key=json.dumps(key_src, sort_keys=True))
    write_bytes_atomic(path, buf.getvalue())
