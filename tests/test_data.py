"""prepare images / prepare video / StyleGANDataModule on small trees built here."""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_blend.app.cli import main
from stylegan_blend.data.datamodule import StyleGANDataModule
from stylegan_blend.data.folder import read_manifest, split_for
from stylegan_blend.data.prepare import prepare_images
from stylegan_blend.data.video import FaceCropper, prepare_video, square_box
from stylegan_blend.errors import UserError
from stylegan_blend.run.files import write_bytes_atomic as atomic_write_bytes

RES = 16


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def image_tree(tmp_path):
    """Sources covering the conversions and the failure cases; returns (src, {name: bytes of good files})."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    good = {}
    photo = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    jpg = io.BytesIO()
    photo.save(jpg, format="JPEG", quality=90)
    good["photo.jpg"] = jpg.getvalue()
    # RGBA: left half fully transparent red (must become white), right half opaque blue
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 0)
    rgba[:, 10:] = (0, 0, 255, 255)
    good["a/b/rgba.png"] = _png(Image.fromarray(rgba, "RGBA"))
    good["grey.png"] = _png(Image.new("L", (24, 24), 77))
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    good["a/palette.bmp"] = _bytes_as(pal, "BMP")
    transparent_pal = Image.new("P", (20, 20), 0)
    transparent_pal.putpalette([50, 60, 70] + [0] * 765)
    good["a/pal_transparent.png"] = _png(transparent_pal, transparency=0)
    good["grey16.png"] = _png(Image.fromarray(np.full((20, 20), 32768, np.uint16)))
    # 60x20 with red | green | blue thirds: a centre crop keeps only green
    thirds = np.zeros((20, 60, 3), np.uint8)
    thirds[:, :20, 0] = thirds[:, 20:40, 1] = thirds[:, 40:, 2] = 255
    good["wide.webp"] = _bytes_as(Image.fromarray(thirds), "WEBP", lossless=True)
    for name, data in good.items():
        _write(src / name, data)
    _write(src / "corrupt.jpg", b"this is not a jpeg at all" * 10)
    _write(src / "a/truncated.jpg", good["photo.jpg"][: len(good["photo.jpg"]) // 2])
    _write(src / "notes.txt", b"hello")
    _write(src / "zz/deeper/copy_of_photo.jpg", good["photo.jpg"])
    return src, good


def _bytes_as(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _by_source(dst: Path) -> dict[str, np.ndarray]:
    manifest = read_manifest(dst)
    return {e.source: np.asarray(Image.open(dst / e.file)) for e in manifest.entries}


def test_prepare_images_converts_skips_and_reports(image_tree, tmp_path):
    src, good = image_tree
    dst = tmp_path / "out"
    report = prepare_images(src, dst, resolution=RES, val_fraction=0.3)

    assert sorted(p for p, _ in report.unreadable) == ["a/truncated.jpg", "corrupt.jpg"]
    assert report.ignored == ["notes.txt"]
    assert report.duplicates == [("zz/deeper/copy_of_photo.jpg", "photo.jpg")]
    manifest = read_manifest(dst)
    assert sorted(e.source for e in manifest.entries) == sorted(good)
    assert report.written == len(good) and report.num_train + report.num_val == len(good)
    for e in manifest.entries:  # the hash is of the source file's bytes
        assert e.sha256 == hashlib.sha256((src / e.source).read_bytes()).hexdigest()
    assert sorted(p.name for p in dst.iterdir()) == sorted([e.file for e in manifest.entries] + ["manifest.json"])

    imgs = _by_source(dst)
    for img in imgs.values():
        assert img.shape == (RES, RES, 3) and img.dtype == np.uint8
    rgba = imgs["a/b/rgba.png"].astype(int)
    assert np.abs(rgba[8, 1] - [255, 255, 255]).max() <= 2  # transparent red composited on white
    assert np.abs(rgba[8, 14] - [0, 0, 255]).max() <= 2
    assert np.all(imgs["grey.png"] == 77)
    assert np.abs(imgs["grey16.png"].astype(int) - 128).max() <= 1
    assert np.all(imgs["a/palette.bmp"] == [10, 200, 30])
    assert np.all(imgs["a/pal_transparent.png"] == 255)
    inner = imgs["wide.webp"][2:-2, 2:-2].astype(int)  # (Lanczos may pull a little colour in at the rim)
    assert np.abs(inner - [0, 255, 0]).max() <= 2  # centre crop: only green


def test_prepare_images_rerun_is_idempotent_and_mirrors_src(image_tree, tmp_path):
    src, good = image_tree
    dst = tmp_path / "out"
    prepare_images(src, dst, resolution=RES, val_fraction=0.3)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in dst.iterdir()}

    again = prepare_images(src, dst, resolution=RES, val_fraction=0.3)
    assert again.written == 0 and again.reused == len(good)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in dst.iterdir()} == before

    old_splits = {e.source: e.split for e in read_manifest(dst).entries}
    _write(src / "new.png", _png(Image.new("RGB", (18, 18), (1, 2, 3))))
    (src / "grey.png").unlink()
    third = prepare_images(src, dst, resolution=RES, val_fraction=0.3)
    assert third.written == 1 and len(third.removed) == 1
    new_splits = {e.source: e.split for e in read_manifest(dst).entries}
    assert "grey.png" not in new_splits and "new.png" in new_splits
    assert all(new_splits[s] == old_splits[s] for s in new_splits if s in old_splits)  # splits are stable
    assert len(list(dst.glob("*.png"))) == len(new_splits)


def test_prepare_images_crop_none_squashes(tmp_path):
    thirds = np.zeros((20, 60, 3), np.uint8)
    thirds[:, :20, 0] = thirds[:, 20:40, 1] = thirds[:, 40:, 2] = 255
    _write(tmp_path / "src/w.png", _png(Image.fromarray(thirds)))
    prepare_images(tmp_path / "src", tmp_path / "out", resolution=RES, crop="none")
    img = next(iter(_by_source(tmp_path / "out").values())).astype(int)
    assert np.abs(img[8, 1] - [255, 0, 0]).max() <= 3 and np.abs(img[8, 14] - [0, 0, 255]).max() <= 3


def test_prepare_images_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no usable images"):
        prepare_images(tmp_path / "empty", tmp_path / "out", resolution=RES)
    _write(tmp_path / "bad/x.png", b"garbage")
    with pytest.raises(UserError, match="1 unreadable"):
        prepare_images(tmp_path / "bad", tmp_path / "out2", resolution=RES)
    assert not (tmp_path / "out2/manifest.json").exists()
    with pytest.raises(UserError, match="power of two"):
        prepare_images(tmp_path / "bad", tmp_path / "out3", resolution=24)
    with pytest.raises(UserError, match="no such folder"):
        prepare_images(tmp_path / "missing", tmp_path / "out4", resolution=RES)


def test_prepare_images_dst_inside_src_is_not_reread(tmp_path):
    _write(tmp_path / "src/a.png", _png(Image.new("RGB", (20, 20), (9, 9, 9))))
    prepare_images(tmp_path / "src", tmp_path / "src/out", resolution=RES)
    report = prepare_images(tmp_path / "src", tmp_path / "src/out", resolution=RES)
    assert report.reused == 1 and report.written == 0 and not report.duplicates


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    def fail(*_):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "x.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_split_is_a_stable_fraction_of_hashes():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    val = [split_for(h, 0.1, seed=0) == "val" for h in hashes]
    assert 0.085 < np.mean(val) < 0.115
    other_seed = [split_for(h, 0.1, seed=1) == "val" for h in hashes]
    assert val != other_seed
    assert all(split_for(h, 0.0, 0) == "train" for h in hashes[:100])


def test_cli_prepare_images(image_tree, tmp_path, capsys):
    src, good = image_tree
    assert main(["prepare", "images", str(src), str(tmp_path / "out"), "--res", str(RES)]) == 0
    out = capsys.readouterr().out
    assert f"{len(good)} images at {RES}x{RES}" in out and "2 unreadable" in out and "1 exact duplicates" in out
    assert main(["prepare", "images", str(tmp_path / "nope"), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]


# ------------------------------------------------------------------------------------------------ video

FPS = 12


def _write_clip(path: Path, levels: list[int], size=(48, 32)):
    """One grey level per frame at FPS, so the level seen in an output names the frame it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for level in levels:
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), level, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def clip_tree(tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    ramp = [20 + 8 * i for i in range(24)]                     # 2 s, every frame different
    holds = [40] * 6 + [100] * 6 + [160] * 6 + [220] * 6       # 2 s, 4 drawings held 6 frames each
    _write_clip(src / "ramp.mp4", ramp)
    _write_clip(src / "sub/holds.mp4", holds)
    _write(src / "broken.mp4", np.random.default_rng(1).bytes(3000))
    _write(src / "readme.txt", b"clips")
    return src, ramp, holds


def test_prepare_video_samples_dedups_and_reports(clip_tree, tmp_path):
    src, ramp, holds = clip_tree
    dst = tmp_path / "frames"
    report = prepare_video(src, dst, resolution=RES, frames_per_clip=8, val_fraction=0.5)

    assert [p for p, _ in report.unreadable] == ["broken.mp4"]
    assert report.ignored == ["readme.txt"]
    entries = read_manifest(dst).entries
    by_clip = {c: [e for e in entries if e.source == c] for c in ("ramp.mp4", "sub/holds.mp4")}
    assert len(by_clip["ramp.mp4"]) == 8
    targets = [(i + 0.5) * 2.0 / 8 for i in range(8)]
    for e, t in zip(sorted(by_clip["ramp.mp4"], key=lambda e: e.time_s), targets):
        assert abs(e.time_s - t) <= 0.5 / FPS + 1e-3  # the nearest decoded frame (times kept to ms)
        level = np.asarray(Image.open(dst / e.file)).astype(float).mean()
        assert abs(level - ramp[round(e.time_s * FPS)]) < 4  # and its content is that frame's
    # 8 targets over 4 held drawings: repeats are dropped, one frame per drawing stays
    levels = sorted(np.asarray(Image.open(dst / e.file)).astype(float).mean() for e in by_clip["sub/holds.mp4"])
    assert len(levels) == 4 and np.allclose(levels, [40, 100, 160, 220], atol=4)
    for clip in by_clip.values():  # a clip never straddles train and val
        assert len({e.split for e in clip}) == 1

    again = prepare_video(src, dst, resolution=RES, frames_per_clip=8, val_fraction=0.5)
    assert again.written == 0 and again.reused == 12


def test_prepare_video_every_seconds_and_no_dedup(clip_tree, tmp_path):
    src, ramp, holds = clip_tree
    report = prepare_video(src / "sub/holds.mp4", tmp_path / "f", resolution=RES, every=0.25, dedup_threshold=0)
    entries = read_manifest(tmp_path / "f").entries
    assert report.written == 8 and [e.time_s for e in entries] == pytest.approx([0.25 * i for i in range(8)])


def test_prepare_video_errors(clip_tree, tmp_path):
    src, _, _ = clip_tree
    with pytest.raises(UserError, match="exactly one"):
        prepare_video(src, tmp_path / "a", resolution=RES)
    with pytest.raises(UserError, match="no usable video frames"):
        prepare_video(src / "broken.mp4", tmp_path / "b", resolution=RES, every=1.0)


def test_square_box_stays_inside_the_image():
    assert square_box(50, 50, 40, 200, 100) == (30, 30, 70, 70)
    assert square_box(5, 5, 40, 200, 100) == (0, 0, 40, 40)          # shifted in, not padded
    assert square_box(190, 60, 300, 200, 100) == (100, 0, 200, 100)  # shrunk to the short side


def test_face_crop_drops_faceless_frames_or_names_the_install(clip_tree, tmp_path):
    src, _, _ = clip_tree
    try:
        import cv2  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pip install"):
            FaceCropper()
        return
    with pytest.raises(UserError, match=r"no usable video frames.*dropped \d+ frames with no detectable face"):
        prepare_video(src / "ramp.mp4", tmp_path / "faces", resolution=RES, every=0.5, face_crop=True)


# ------------------------------------------------------------------------------------------- datamodule


@pytest.fixture
def prepared(tmp_path):
    """24 distinct random 16 px images, about a quarter held out."""
    src = tmp_path / "src"
    rng = np.random.default_rng(3)
    for i in range(24):
        _write(src / f"{i:02d}.png", _png(Image.fromarray(rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8))))
    prepare_images(src, tmp_path / "data", resolution=RES, val_fraction=0.25, seed=0)
    return tmp_path / "data"


def _lookup(dm: StyleGANDataModule):
    """bytes of each uint8 image (and of its mirror) -> (split, flipped)."""
    table = {}
    for split, files in (("train", dm.train_files), ("val", dm.val_files)):
        for f in files:
            a = np.asarray(Image.open(f))
            table[a.tobytes()] = (split, False)
            table[np.ascontiguousarray(a[:, ::-1]).tobytes()] = (split, True)
    return table


def _decode(batch: torch.Tensor) -> list[bytes]:
    u8 = ((batch + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(x).tobytes() for x in u8]


def test_datamodule_batches_are_train_only_in_range_and_one_pass_per_epoch(prepared):
    dm = StyleGANDataModule(prepared, resolution=RES, batch_size=4, seed=1)
    manifest = read_manifest(prepared)
    assert dm.num_train == len(manifest.files("train")) and dm.num_val == len(manifest.files("val")) > 0
    table = _lookup(dm)
    loader = dm.train_dataloader()
    for _ in range(3):
        seen = []
        for batch in loader:
            assert batch.dtype == torch.float32 and batch.shape == (4, 3, RES, RES)
            assert -1.0 <= batch.min() < -0.9 and 0.9 < batch.max() <= 1.0
            seen += _decode(batch)
        assert all(table[b] == ("train", False) for b in seen)  # never val, never flipped without mirror
        assert len(seen) == len(set(seen)) == dm.num_train // 4 * 4  # drop_last, no repeats in an epoch


def test_datamodule_mirror_flips_about_half(prepared):
    dm = StyleGANDataModule(prepared, resolution=RES, batch_size=4, mirror=True, seed=0)
    table = _lookup(dm)
    flips = [table[b][1] for _ in range(5) for batch in dm.train_dataloader() for b in _decode(batch)]
    assert all(table[b][0] == "train" for batch in dm.train_dataloader() for b in _decode(batch))
    assert 0.3 < np.mean(flips) < 0.7


def test_datamodule_is_seeded_and_worker_independent(prepared):
    def epoch(**kw):
        return torch.cat(list(StyleGANDataModule(prepared, RES, 4, mirror=True, **kw).train_dataloader()))
    assert torch.equal(epoch(seed=5), epoch(seed=5))
    assert torch.equal(epoch(seed=5), epoch(seed=5, num_workers=1))
    assert not torch.equal(epoch(seed=5), epoch(seed=6))


def test_datamodule_helpers_and_content_hash(prepared):
    dm = StyleGANDataModule(prepared, resolution=RES, batch_size=4)
    imgs = dm.train_images(max_n=5)
    assert imgs.dtype == torch.uint8 and imgs.shape == (5, RES, RES, 3)
    assert np.array_equal(imgs[0].numpy(), np.asarray(Image.open(dm.train_files[0])))
    floats = dm.val_images(as_float=True)
    assert floats.shape == (dm.num_val, 3, RES, RES) and floats.dtype == torch.float32
    assert torch.allclose(floats, dm.val_images().permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert dm.pin_memory == torch.cuda.is_available()

    h = dm.content_hash
    assert h == StyleGANDataModule(prepared, RES, 8).content_hash
    target = dm.train_files[0]
    a = np.asarray(Image.open(target)).copy()
    a[0, 0, 0] ^= 1
    target.write_bytes(_png(Image.fromarray(a)))
    assert StyleGANDataModule(prepared, RES, 4).content_hash != h


def test_datamodule_errors(prepared, tmp_path):
    with pytest.raises(UserError, match=r"\.png: image is 16x16 but the model resolution is 32x32"):
        StyleGANDataModule(prepared, resolution=32, batch_size=4)
    with pytest.raises(UserError, match="missing.*stylegan-blend prepare"):
        StyleGANDataModule(tmp_path / "missing", resolution=RES, batch_size=4)
    victim = read_manifest(prepared).entries[0].file
    (prepared / victim).unlink()
    with pytest.raises(UserError, match=f"{victim}: listed in manifest.json but missing"):
        StyleGANDataModule(prepared, resolution=RES, batch_size=4)


def test_datamodule_refuses_a_folder_without_manifest(tmp_path):
    # what an interrupted prepare leaves (images, manifest not yet written): refused, not trained on
    for i in range(3):
        _write(tmp_path / f"plain/{i}.png", _png(Image.new("RGBA", (RES, RES), (i, 0, 0, 255))))
    with pytest.raises(UserError, match="no manifest.json") as exc:
        StyleGANDataModule(tmp_path / "plain", resolution=RES, batch_size=8)
    assert "\n" not in str(exc.value)


def test_datamodule_drives_a_lightning_fit(prepared):
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.shapes = []

        def training_step(self, batch, _):
            self.shapes.append(tuple(batch.shape))
            return (batch.mean() * self.w).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = StyleGANDataModule(prepared, resolution=RES, batch_size=4)
    probe = Probe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(probe, datamodule=dm)
    assert probe.shapes == [(4, 3, RES, RES)] * (dm.num_train // 4)


def test_manifest_is_plain_json(prepared):
    raw = json.loads((prepared / "manifest.json").read_text())
    assert raw["format"] == "stylegan_blend.dataset" and raw["settings"]["resolution"] == RES
    assert {"file", "split", "sha256", "source", "time_s"} <= set(raw["images"][0])
