"""The prepared dataset folder: square RGB PNGs at the model resolution plus `manifest.json`.

Every producer (`prepare images`, `prepare video`, `prepare synthetic`) writes this one layout, and the
datamodule and the metric caches read it, so the train/val split lives in exactly one place:

    DST/<name>.png ...
    DST/manifest.json  {"format": "stylegan_blend.dataset", "version": 1,
                        "settings": {...how the images were made...}, "val_fraction": f, "seed": s,
                        "images": [{"file", "split", "sha256", "source", "time_s"}, ...]}

`sha256` is the hash of the *source* bytes (an image file, a clip, or a synthetic image's pixels); the
split is a pure function of (sha256, seed, val_fraction), so a file never changes split when others are
added, and all frames of one clip land in the same split (near-identical frames would leak otherwise).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import UserError
from ..run.files import TEMP_SUFFIX, write_bytes_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "stylegan_blend.dataset"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CROP_MODES = ("center", "none")
# What Pillow raises on a corrupt, truncated or unsupported file (some plugins raise SyntaxError/EOFError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One output image: its file name in the folder, split, source hash, source path and clip time."""
    file: str
    split: str
    sha256: str
    source: str
    time_s: float | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    settings: dict
    val_fraction: float
    seed: int
    entries: tuple[Entry, ...]

    def files(self, split: str) -> list[str]:
        return [e.file for e in self.entries if e.split == split]


MAX_RESOLUTION = 4096  # NVIDIA's largest published models are 1024 px; one 65536 px image alone is 12 GiB


def check_resolution(resolution: int) -> int:
    """StyleGAN synthesises 4, 8, ..., R pixels: anything else cannot be trained on."""
    if (not isinstance(resolution, int) or resolution < 4 or resolution > MAX_RESOLUTION
            or resolution & (resolution - 1)):
        raise UserError(f"resolution {resolution!r}: expected a power of two from 4 to {MAX_RESOLUTION} "
                        f"(e.g. 32, 256)")
    return resolution


def check_val_fraction(val_fraction: float) -> float:
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val fraction {val_fraction!r}: expected a number in [0, 1)")
    return float(val_fraction)


def walk_files(src: Path, skip_under: Path | None = None) -> tuple[list[Path], list[str]]:
    """Every file under `src` (symlinked folders followed, each real folder once), sorted; plus the
    folders that could not be listed, so they are reported instead of silently missing."""
    files, unreadable, seen = [], [], set()
    skip = skip_under.resolve() if skip_under is not None else None

    def onerror(exc: OSError) -> None:
        unreadable.append(f"{Path(exc.filename).relative_to(src) if exc.filename else src} "
                          f"({exc.strerror or exc})")

    for folder, dirs, names in os.walk(src, onerror=onerror, followlinks=True):
        real = Path(folder).resolve()
        if real in seen or (skip is not None and (real == skip or skip in real.parents)):
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        files += [Path(folder) / n for n in names if not n.startswith(".")]
    return sorted(p for p in files if p.is_file()), unreadable


def split_for(sha256: str, val_fraction: float, seed: int) -> str:
    """'val' for a stable pseudo-random `val_fraction` of hashes; independent of every other file."""
    u = int(hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()[:15], 16) / 16 ** 15
    return "val" if u < val_fraction else "train"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes) -> Image.Image:
    """Fully decode (so truncation surfaces here, not later) and apply the EXIF orientation."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return ImageOps.exif_transpose(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: transparency composited on white, 16-bit/float greys scaled to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        scale = 1.0 if a.max(initial=0) <= 255 else (255.0 / 65535.0)
        img = Image.fromarray(np.clip(a * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if (img.mode == "P" and "transparency" in img.info) or img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def square_resize(img: Image.Image, resolution: int, crop: str = "center") -> Image.Image:
    """Centre square crop (or squash when crop='none'), then Lanczos to `resolution`."""
    if crop == "center":
        return ImageOps.fit(img, (resolution, resolution), Image.Resampling.LANCZOS)
    if crop == "none":
        return img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    raise UserError(f"crop {crop!r}: expected one of {', '.join(CROP_MODES)}")


def save_png(img: Image.Image | np.ndarray, path: Path) -> None:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img, "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def remove_stale_temps(folder: Path) -> None:
    """Temp files only an interrupted write of ours can have left (`.<name>.<random>.tmp`, nothing else)."""
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest, None if it has none; UserError if it is not ours or is damaged."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}")
        entries = tuple(Entry(**e) for e in raw["images"])
        if any(e.split not in ("train", "val") for e in entries):
            raise ValueError("split must be train or val")
        return Manifest(settings=dict(raw["settings"]), val_fraction=float(raw["val_fraction"]),
                        seed=int(raw["seed"]), entries=entries)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a valid stylegan-blend dataset manifest ({exc}); "
                        f"expected the file written by `stylegan-blend prepare`") from None


def write_dataset(folder: Path, manifest: Manifest, previous: Manifest | None) -> list[str]:
    """Write the manifest atomically, then delete outputs the previous manifest listed that are no longer
    produced (only files we wrote ourselves). Returns the removed file names."""
    payload = {"format": MANIFEST_FORMAT, "version": 1, "settings": manifest.settings,
               "val_fraction": manifest.val_fraction, "seed": manifest.seed,
               "images": [dataclasses.asdict(e) for e in manifest.entries]}
    data = (json.dumps(payload, indent=1) + "\n").encode()
    path = folder / MANIFEST_NAME
    if not (path.is_file() and path.read_bytes() == data):  # an unchanged re-run touches nothing
        write_bytes_atomic(path, data)
    keep = {e.file for e in manifest.entries}
    removed = sorted({e.file for e in previous.entries} - keep) if previous else []
    for name in removed:
        (folder / name).unlink(missing_ok=True)
    return removed


def reusable_entries(folder: Path, previous: Manifest | None, settings: dict) -> dict[str, list[Entry]]:
    """Previous outputs by source hash, when they were made with the same settings and still exist;
    this is what makes a re-run cheap and byte-identical."""
    if previous is None or previous.settings != settings:
        return {}
    by_hash: dict[str, list[Entry]] = {}
    for e in previous.entries:
        by_hash.setdefault(e.sha256, []).append(e)
    return {h: es for h, es in by_hash.items() if all((folder / e.file).is_file() for e in es)}


@dataclasses.dataclass
class PrepareReport:
    """What a prepare run did, for the CLI summary and for tests."""
    folder: Path
    resolution: int
    written: int = 0
    reused: int = 0
    num_train: int = 0
    num_val: int = 0
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    duplicates: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)
    upscaled: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def lines(self, shown: int = 5) -> list[str]:
        r = self.resolution
        out = [f"{self.folder}: {self.num_train + self.num_val} images at {r}x{r} "
               f"({self.num_train} train, {self.num_val} val); {self.written} written, {self.reused} unchanged"]
        if self.unreadable:
            out.append(f"skipped {len(self.unreadable)} unreadable: "
                       + _listing((f"{p} ({why})" for p, why in self.unreadable), shown))
        if self.duplicates:
            out.append(f"skipped {len(self.duplicates)} exact duplicates: "
                       + _listing((f"{p} (same as {q})" for p, q in self.duplicates), shown))
        if self.ignored:
            out.append(f"ignored {len(self.ignored)} files with other extensions: " + _listing(self.ignored, shown))
        if self.upscaled:
            out.append(f"upscaled {len(self.upscaled)} sources smaller than {r} px (blurry): "
                       + _listing(self.upscaled, shown))
        if self.removed:
            out.append(f"removed {len(self.removed)} earlier outputs whose source is gone or changed")
        return out + self.notes


def _listing(items, shown: int) -> str:
    items = list(items)
    more = f", ... (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def finish(folder: Path, report: PrepareReport, settings: dict, entries: list[Entry],
           val_fraction: float, seed: int, previous: Manifest | None, what: str) -> PrepareReport:
    """Common tail of every producer: refuse an empty result, split, write the manifest, count."""
    if not entries:
        why = [f"{len(report.unreadable)} unreadable", f"{len(report.ignored)} with other extensions"]
        why += [n for n in report.notes if n.startswith("dropped")]
        raise UserError(f"{settings.get('source', folder)}: no usable {what} found ({'; '.join(why)}); "
                        f"nothing written to {folder}")
    entries = [dataclasses.replace(e, split=split_for(e.sha256, val_fraction, seed)) for e in entries]
    n_val = sum(e.split == "val" for e in entries)
    if n_val == len(entries) or (val_fraction > 0 and n_val == 0):
        print(f"warning: --val-fraction {val_fraction} leaves {len(entries) - n_val} train and {n_val} val images "
              f"of {len(entries)}; training needs train images and the diagnostics need val images",
              file=sys.stderr)
    manifest = Manifest(settings=settings, val_fraction=val_fraction, seed=seed, entries=tuple(entries))
    report.removed = write_dataset(folder, manifest, previous)
    report.num_val = sum(e.split == "val" for e in entries)
    report.num_train = len(entries) - report.num_val
    return report
