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
from .folder import (
    DECODE_ERRORS,
    IMAGE_EXTENSIONS,
    Entry,
    PrepareReport,
    check_resolution,
    check_val_fraction,
    decode_image,
    finish,
    read_manifest,
    remove_stale_temps,
    reusable_entries,
    save_png,
    sha256_bytes,
    square_resize,
    to_rgb,
    walk_files,
)


def source_files(src: Path, dst: Path, report: PrepareReport | None = None) -> list[Path]:
    """Every file under SRC in a stable order (symlinked folders followed), minus DST when it sits inside SRC.
    Folders that cannot be listed are added to `report.unreadable` rather than skipped silently."""
    files, bad_folders = walk_files(src, skip_under=dst)
    if report is not None:
        report.unreadable += [(f"folder {f.split(' (')[0]}", f.split(' (', 1)[-1].rstrip(')')) for f in bad_folders]
    return files


def check_folders(src, dst) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise UserError(f"{src}: no such folder; expected a folder of source files")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: is a file; expected an output folder")
    if dst.resolve() == src.resolve():
        raise UserError(f"DST {dst} is the source folder itself; expected a separate output folder "
                        f"(e.g. {dst.name}_prepared)")
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
    for path in track(source_files(src, dst, report), description="images", disable=not progress, transient=True,
                      console=Console(stderr=True)):
        rel = path.relative_to(src).as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            report.ignored.append(rel)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:  # mode 000, vanished, I/O error: counted like a corrupt file
            report.unreadable.append((rel, exc.strerror or type(exc).__name__))
            continue
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
