"""`prepare video`: a folder of clips -> frames in the prepared-folder layout, decoded with PyAV.

Frames are taken at target times (N evenly spread per clip, or one every S seconds); each target takes
the decoded frame nearest to it. Consecutive kept frames that barely differ (animation holds the same
drawing for several frames) are dropped: mean absolute difference at the output resolution, 0-255 scale.
All frames of one clip share the clip's hash and therefore its train/val split.
"""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track

from ..errors import UserError
from ..run.files import file_sha256
from .folder import (
    Entry,
    PrepareReport,
    check_resolution,
    check_val_fraction,
    finish,
    read_manifest,
    reusable_entries,
    save_png,
    square_resize,
)
from .prepare import check_folders, source_files

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
DEFAULT_DEDUP_THRESHOLD = 2.0
_CLIP_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError, UserError)


def target_times(duration: float, frames_per_clip: int | None = None, every: float | None = None) -> list[float]:
    """Seconds from the clip start: N frames at the centres of N equal slices, or 0, S, 2S, ... < duration."""
    if frames_per_clip is not None:
        return [(i + 0.5) * duration / frames_per_clip for i in range(frames_per_clip)]
    return [i * every for i in range(max(1, math.ceil(duration / every - 1e-9)))]


def _clip_span(container, stream) -> tuple[float, float]:
    """(start, duration) in seconds; falls back to scanning packet timestamps when the header has none."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
    if stream.duration:
        return start, float(stream.duration * tb)
    if container.duration:
        return start, container.duration / av.time_base
    end = max((float((p.pts + (p.duration or 0)) * tb) for p in container.demux(stream) if p.pts is not None),
              default=None)
    if end is None:
        raise UserError("no timestamps")
    container.seek(0)
    return start, end - start


def sample_frames(path: Path, frames_per_clip: int | None = None, every: float | None = None
                  ) -> tuple[list[tuple[float, Image.Image]], str | None]:
    """Decode one clip once, keeping the frame nearest each target time.

    Returns ([(time_s, RGB image)], problem): `problem` describes a decode error after some frames were
    already kept (a damaged tail); an error before any frame raises.
    """
    picked: list[tuple[float, Image.Image]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start, duration = _clip_span(container, stream)
        targets = target_times(duration, frames_per_clip, every)
        k, prev, last_time = 0, None, None
        try:
            for frame in container.decode(stream):
                t = (frame.time if frame.time is not None else 0.0) - start
                while k < len(targets) and t >= targets[k]:
                    best_t, best = (prev if prev and targets[k] - prev[0] < t - targets[k] else (t, frame))
                    if best_t != last_time:
                        picked.append((round(best_t, 3), best.to_image()))
                        last_time = best_t
                    k += 1
                if k == len(targets):
                    break
                prev = (t, frame)
        except av.FFmpegError as exc:
            if not picked:
                raise
            return picked, f"decode error after {len(picked)} frames ({exc}); kept those"
        if k < len(targets) and prev is not None and prev[0] != last_time:
            picked.append((round(prev[0], 3), prev[1].to_image()))  # targets past the last frame
    if not picked:
        raise UserError("no decodable frames")
    return picked, None


class FaceCropper:
    """Square crop around the largest frontal face (OpenCV Haar cascade, which opencv-python-headless 4.x
    ships). `margin` scales the detector's box (eyebrows to chin) to include hair and chin, like FFHQ crops."""

    def __init__(self, margin: float = 2.0, min_size_fraction: float = 0.08):
        try:
            import cv2
            cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        except (ImportError, AttributeError):
            raise UserError("--face-crop needs OpenCV with its Haar cascades: "
                            "pip install 'opencv-python-headless>=4.8,<5'") from None
        if not cascade.is_file():
            raise UserError(f"{cascade}: missing; --face-crop needs opencv-python-headless 4.x "
                            "(OpenCV 5 wheels no longer ship the Haar cascades)")
        self._cv2 = cv2
        self._detector = cv2.CascadeClassifier(str(cascade))
        self.margin = margin
        self.min_size_fraction = min_size_fraction

    def box(self, img: Image.Image) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the square crop, or None when no face is found."""
        grey = np.asarray(img.convert("L"))
        scale = min(1.0, 640 / max(grey.shape))  # detection at <= 640 px is plenty and much faster
        if scale < 1.0:
            grey = np.asarray(img.convert("L").resize((round(img.width * scale), round(img.height * scale))))
        min_side = max(16, int(self.min_size_fraction * min(grey.shape)))
        faces = self._detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = (v / scale for v in max(faces, key=lambda f: f[2] * f[3]))
        return square_box(x + w / 2, y + h / 2 - 0.1 * h, max(w, h) * self.margin, img.width, img.height)

    def __call__(self, img: Image.Image) -> Image.Image | None:
        box = self.box(img)
        return None if box is None else img.crop(box)


def square_box(cx: float, cy: float, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square of `side` centred on (cx, cy), shrunk to fit and shifted inside the image (no padding)."""
    side = int(round(min(side, width, height)))
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, left + side, top + side


def prepare_video(src, dst, resolution: int = 256, frames_per_clip: int | None = None,
                  every: float | None = None, face_crop: bool = False,
                  dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD, crop: str = "center",
                  val_fraction: float = 0.05, seed: int = 0, progress: bool = False) -> PrepareReport:
    """Frames from every clip under SRC (or SRC itself if it is one clip) -> square RGB PNGs.

    Unreadable clips are skipped and reported; with `face_crop`, frames without a face are dropped.
    """
    check_resolution(resolution)
    check_val_fraction(val_fraction)
    if (frames_per_clip is None) == (every is None):
        raise UserError("give exactly one of --frames-per-clip N or --every SECONDS")
    if frames_per_clip is not None and frames_per_clip < 1:
        raise UserError(f"--frames-per-clip {frames_per_clip}: expected >= 1")
    if every is not None and not every > 0:
        raise UserError(f"--every {every}: expected seconds > 0")
    if dedup_threshold < 0:
        raise UserError(f"--dedup-threshold {dedup_threshold}: expected >= 0 (0 keeps every frame)")
    if crop not in ("center", "none"):
        raise UserError(f"crop {crop!r}: expected center or none")
    src, dst = check_folders(src, dst)
    cropper = FaceCropper() if face_crop else None
    root, clips = (src.parent, [src]) if src.is_file() else (src, [])
    settings = {"kind": "video", "source": str(src.resolve()), "resolution": resolution, "crop": crop,
                "frames_per_clip": frames_per_clip, "every": every, "face_crop": face_crop,
                "dedup_threshold": dedup_threshold}
    previous = read_manifest(dst)
    reusable = reusable_entries(dst, previous, settings)
    report = PrepareReport(folder=dst, resolution=resolution)
    if not src.is_file():
        clips = source_files(src, dst, report)
    entries: list[Entry] = []
    first_seen: dict[str, str] = {}
    dropped_similar = dropped_faceless = 0
    for path in track(clips, description="clips", disable=not progress, transient=True,
                      console=Console(stderr=True)):
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            report.ignored.append(rel)
            continue
        try:
            sha = file_sha256(path)
        except OSError as exc:
            report.unreadable.append((rel, exc.strerror or type(exc).__name__))
            continue
        if sha in first_seen:
            report.duplicates.append((rel, first_seen[sha]))
            continue
        first_seen[sha] = rel
        if sha in reusable:
            entries += [Entry(e.file, e.split, sha, rel, e.time_s) for e in reusable[sha]]
            report.reused += len(reusable[sha])
            continue
        try:
            frames, problem = sample_frames(path, frames_per_clip, every)
        except _CLIP_ERRORS as exc:
            report.unreadable.append((rel, str(exc) or type(exc).__name__))
            continue
        if problem:
            report.notes.append(f"{rel}: {problem}")
        last = None
        for t, img in frames:
            if cropper is not None:
                img = cropper(img)
                if img is None:
                    dropped_faceless += 1
                    continue
            out = np.asarray(square_resize(img, resolution, crop))
            if last is not None and np.abs(out.astype(np.float32) - last).mean() < dedup_threshold:
                dropped_similar += 1
                continue
            last = out.astype(np.float32)
            entry = Entry(file=f"{sha[:12]}_{round(t * 1000):09d}.png", split="train", sha256=sha,
                          source=rel, time_s=t)
            save_png(out, dst / entry.file)
            entries.append(entry)
            report.written += 1
    if dropped_similar:
        report.notes.append(f"dropped {dropped_similar} frames nearly identical to the previous kept frame "
                            f"(mean abs diff < {dedup_threshold})")
    if dropped_faceless:
        report.notes.append(f"dropped {dropped_faceless} frames with no detectable face")
    return finish(dst, report, settings, entries, val_fraction, seed, previous, "video frames")
