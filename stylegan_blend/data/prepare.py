"""`prepare images`: a tree of photos/illustrations -> the prepared folder (square RGB PNGs + manifest).

DST mirrors SRC: re-running decodes only sources that are new or changed, and outputs whose source is
gone are removed (they are derived data; SRC is never touched). Outputs are named by source hash, so
the same source always gives the same file.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import track

from ..errors import UserError
from .folder import (DECODE_ERRORS, IMAGE_EXTENSIONS, Entry, PrepareReport, check_resolution,
                     check_val_fraction, decode_image, finish, read_manifest, remove_stale_temps,
                     reusable_entries, save_png, sha256_bytes, square_resize, to_rgb)


def source_files(src: Path, dst: Path) -> list[Path]:
    """Every file under SRC in a stable order, minus DST itself when DST sits inside SRC."""
    dst = dst.resolve()
    files = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue  # .DS_Store, our own temp files, editor swap files
        if dst == path.resolve().parent or dst in path.resolve().parents:
            continue
        files.append(path)
    return files


def check_folders(src, dst) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise UserError(f"{src}: no such folder; expected a folder of source files")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: is a file; expected an output folder")
    dst.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst)
    return src, dst


def prepare_images(src, dst, resolution: int = 256, crop: str = "center", val_fraction: float = 0.05,
                   seed: int = 0, progress: bool = False) -> PrepareReport:
    """Convert every readable image under SRC (jpg/jpeg/png/webp/bmp, recursively) to a square RGB PNG.

    Unreadable files and exact duplicates (same bytes) are skipped and listed in the report.
    """
    check_resolution(resolution)
    check_val_fraction(val_fraction)
    if crop not in ("center", "none"):
        raise UserError(f"crop {crop!r}: expected center or none")
    src, dst = check_folders(src, dst)
    if not src.is_dir():
        raise UserError(f"{src}: is a file; expected a folder of images")
    settings = {"kind": "images", "source": str(src.resolve()), "resolution": resolution, "crop": crop}
    previous = read_manifest(dst)
    reusable = reusable_entries(dst, previous, settings)
    report = PrepareReport(folder=dst, resolution=resolution)
    entries: list[Entry] = []
    first_seen: dict[str, str] = {}
    for path in track(source_files(src, dst), description="images", disable=not progress, transient=True,
                      console=Console(stderr=True)):
        rel = path.relative_to(src).as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            report.ignored.append(rel)
            continue
        data = path.read_bytes()
        sha = sha256_bytes(data)
        if sha in first_seen:
            report.duplicates.append((rel, first_seen[sha]))
            continue
        first_seen[sha] = rel
        entry = Entry(file=f"{sha[:16]}.png", split="train", sha256=sha, source=rel)
        if sha in reusable:
            report.reused += 1
        else:
            try:
                img = to_rgb(decode_image(data))
            except DECODE_ERRORS as exc:
                first_seen.pop(sha)
                report.unreadable.append((rel, str(exc) or type(exc).__name__))
                continue
            if min(img.size) < resolution:
                report.upscaled.append(f"{rel} ({img.width}x{img.height})")
            save_png(square_resize(img, resolution, crop), dst / entry.file)
            report.written += 1
        entries.append(entry)
    return finish(dst, report, settings, entries, val_fraction, seed, previous, "images")
