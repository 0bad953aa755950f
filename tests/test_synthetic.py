"""The procedural photo/toon face domains: deterministic, separable by rendering, sharing their layout."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylegan_blend.app.cli import main
from stylegan_blend.data.datamodule import StyleGANDataModule
from stylegan_blend.data.folder import read_manifest
from stylegan_blend.data.synthetic import image_rng, render_face, write_domain
from stylegan_blend.errors import UserError


def _flat_fraction(img: np.ndarray) -> float:
    """Share of pixels equal to their right and lower neighbours: flat fills vs shading and noise."""
    a = img.astype(int)
    same_x = (np.diff(a, axis=1) == 0).all(-1)[:-1, :]
    same_y = (np.diff(a, axis=0) == 0).all(-1)[:, :-1]
    return float((same_x & same_y).mean())


def _head_position(img: np.ndarray) -> tuple[float, float]:
    """Centroid of what differs from each row's background (its edge pixels) in the top 60% of the image,
    where only hair, face and neck can be: a colour-blind measure of where the head is."""
    a = img[: int(img.shape[0] * 0.6)].astype(float)
    background = (a[:, :2].mean(1) + a[:, -2:].mean(1)) / 2
    ys, xs = np.nonzero(np.abs(a - background[:, None]).sum(-1) > 60)
    return xs.mean() / img.shape[1], ys.mean() / img.shape[0]


@pytest.mark.parametrize("res", [16, 32, 64])
def test_render_face_shape_and_determinism(res):
    for domain in ("photo", "toon"):
        a = render_face(image_rng(7, 3), domain, res)
        assert a.shape == (res, res, 3) and a.dtype == np.uint8
        assert np.array_equal(a, render_face(image_rng(7, 3), domain, res))
        assert not np.array_equal(a, render_face(image_rng(7, 4), domain, res))
        assert a.std() > 20  # an image, not a flat field


def test_write_domain_is_byte_identical_across_runs(tmp_path):
    write_domain(tmp_path / "a", "photo", 12, 16, seed=3, val_fraction=0.25)
    write_domain(tmp_path / "b", "photo", 12, 16, seed=3, val_fraction=0.25)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) == 13
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    write_domain(tmp_path / "c", "photo", 12, 16, seed=4)
    assert (tmp_path / "a/photo000000.png").read_bytes() != (tmp_path / "c/photo000000.png").read_bytes()


def test_domains_are_separable_by_a_trivial_statistic():
    """A threshold on the flat-pixel share, fitted on some seeds, classifies other seeds >= 95% right."""
    def stats(seeds):
        return {d: np.array([_flat_fraction(render_face(image_rng(0, i), d, 32)) for i in seeds])
                for d in ("photo", "toon")}
    fit, held_out = stats(range(0, 30)), stats(range(100, 130))
    threshold = (fit["photo"].mean() + fit["toon"].mean()) / 2
    correct = (held_out["photo"] < threshold).sum() + (held_out["toon"] >= threshold).sum()
    assert correct / 60 >= 0.95


def test_domains_share_layout_per_seed():
    """The head sits in the same place in both domains for the same seed, and not across seeds."""
    n = 40
    pos = {d: np.array([_head_position(render_face(image_rng(0, i), d, 32)) for i in range(n)])
           for d in ("photo", "toon")}
    same_x = np.corrcoef(pos["photo"][:, 0], pos["toon"][:, 0])[0, 1]
    same_y = np.corrcoef(pos["photo"][:, 1], pos["toon"][:, 1])[0, 1]
    shuffled_x = np.corrcoef(pos["photo"][:, 0], np.roll(pos["toon"][:, 0], 7))[0, 1]
    assert same_x > 0.8 and same_y > 0.5
    assert abs(shuffled_x) < 0.4
    assert np.abs(pos["photo"] - pos["toon"]).mean() < 0.05  # within ~1.5 px at 32 px


def test_write_domain_makes_a_prepared_folder(tmp_path):
    report = write_domain(tmp_path / "toon", "toon", 40, 16, seed=1, val_fraction=0.25)
    manifest = read_manifest(tmp_path / "toon")
    assert len(manifest.entries) == 40 == report.num_train + report.num_val
    assert 0 < report.num_val < 20
    assert manifest.entries[3].source == "synthetic:toon:seed=1:index=3"
    img = np.asarray(Image.open(tmp_path / "toon" / manifest.entries[3].file))
    assert np.array_equal(img, render_face(image_rng(1, 3), "toon", 16))
    dm = StyleGANDataModule(tmp_path / "toon", resolution=16, batch_size=8)
    assert (dm.num_train, dm.num_val) == (report.num_train, report.num_val)

    write_domain(tmp_path / "toon", "toon", 10, 16, seed=1)  # fewer: the extra files go
    assert len(list((tmp_path / "toon").glob("*.png"))) == 10


def test_synthetic_errors_and_cli(tmp_path, capsys):
    with pytest.raises(UserError, match="domain 'anime'"):
        render_face(image_rng(0, 0), "anime", 32)
    with pytest.raises(UserError, match="power of two"):
        write_domain(tmp_path / "x", "toon", 4, 20)
    assert main(["prepare", "synthetic", str(tmp_path / "cli"), "--domain", "photo", "--count", "6",
                 "--res", "16"]) == 0
    assert "6 images at 16x16" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").glob("photo*.png"))) == 6
