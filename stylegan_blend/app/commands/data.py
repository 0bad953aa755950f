"""`stylegan-blend prepare images|video|synthetic`: make a training folder."""
from __future__ import annotations

import argparse
import sys

from ...data.folder import CROP_MODES


def register(subparsers) -> None:
    prepare = subparsers.add_parser("prepare", help="make a training folder (square RGB PNGs + manifest.json)",
                                    description="Make a training folder: square RGB PNGs at the model "
                                                "resolution plus manifest.json with a held-out val split.")
    kinds = prepare.add_subparsers(dest="prepare_kind", metavar="KIND", required=True)

    images = kinds.add_parser("images", help="a folder of images (recursive jpg/jpeg/png/webp/bmp)")
    images.add_argument("src", help="folder of source images (searched recursively)")
    images.add_argument("dst", help="output folder (re-running updates it in place)")
    _common(images)
    images.set_defaults(func=_images)

    video = kinds.add_parser("video", help="frames from a folder of video clips (PyAV/FFmpeg)")
    video.add_argument("src", help="folder of clips (or one clip)")
    video.add_argument("dst", help="output folder (re-running updates it in place)")
    _common(video)
    how = video.add_mutually_exclusive_group(required=True)
    how.add_argument("--frames-per-clip", type=int, metavar="N", help="N frames evenly spread over each clip")
    how.add_argument("--every", type=float, metavar="SECONDS", help="one frame every SECONDS")
    video.add_argument("--face-crop", action="store_true",
                       help="crop around the largest frontal face (OpenCV Haar cascade); frames without one "
                            "are dropped")
    video.add_argument("--dedup-threshold", type=float, default=2.0, metavar="D",
                       help="drop a frame whose mean absolute difference (0-255) to the previous kept frame "
                            "is below D (default 2.0; 0 keeps all)")
    video.set_defaults(func=_video)

    synthetic = kinds.add_parser("synthetic", help="procedural faces in the 'photo' or 'toon' style")
    synthetic.add_argument("dst", help="output folder")
    synthetic.add_argument("--domain", choices=("photo", "toon"), required=True)
    synthetic.add_argument("--count", type=int, default=300)
    synthetic.add_argument("--res", type=int, default=32, help="resolution in pixels (power of two)")
    synthetic.add_argument("--seed", type=int, default=0, help="image i of either domain shares its layout")
    synthetic.add_argument("--val-fraction", type=float, default=0.1)
    synthetic.set_defaults(func=_synthetic)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--res", type=int, default=256, help="output resolution in pixels (power of two, default 256)")
    p.add_argument("--crop", choices=CROP_MODES, default="center",
                   help="center: centre square crop; none: squash the whole frame (default center)")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="share held out for overfitting diagnostics, chosen by content hash (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split")


def _print(report) -> int:
    for line in report.lines():
        print(line)
    return 0


def _images(args) -> int:
    from ...data.prepare import prepare_images

    return _print(prepare_images(args.src, args.dst, resolution=args.res, crop=args.crop,
                                 val_fraction=args.val_fraction, seed=args.seed, progress=sys.stderr.isatty()))


def _video(args) -> int:
    from ...data.video import prepare_video

    return _print(prepare_video(args.src, args.dst, resolution=args.res, frames_per_clip=args.frames_per_clip,
                                every=args.every, face_crop=args.face_crop, dedup_threshold=args.dedup_threshold,
                                crop=args.crop, val_fraction=args.val_fraction, seed=args.seed,
                                progress=sys.stderr.isatty()))


def _synthetic(args) -> int:
    from ...data.synthetic import write_domain

    return _print(write_domain(args.dst, args.domain, args.count, args.res, seed=args.seed,
                               val_fraction=args.val_fraction))
