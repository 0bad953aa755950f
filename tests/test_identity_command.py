"""`stylegan-blend identity`: pairwise distances of real photos and their normalisation, by the set's own mean
distance or by a base network's idbase (recomputed here with NumPy), and its one-line errors."""
import re
from pathlib import Path

import numpy as np
from PIL import Image
from tiny_nets import TINY_G, randomized

from stylegan_blend.app.cli import main

DATA = Path(__file__).parent / "data" / "dlib"


def run(argv, capsys):
    code = main(["identity", *map(str, argv)])
    return code, capsys.readouterr()


def matrices(out: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The two printed tables (distances, normalised) -> names and arrays."""
    tables, names = [], None
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(" ") and i + 1 < len(lines):  # a header row
            names = line.split()
            rows = [lines[i + 1 + k].split()[1:] for k in range(len(names))]
            tables.append(np.array(rows, float))
    return names, tables[0], tables[1]


def test_photos_same_person_nearest_and_normalised_by_the_set(capsys):
    code, cap = run([DATA / "obama.jpg", DATA / "obama2.jpg", DATA / "biden.jpg"], capsys)
    assert code == 0, cap.err
    assert cap.out.startswith("identity_dlib: dlib's face-recognition network")
    names, d, norm = matrices(cap.out)
    assert names == ["obama.jpg", "obama2.jpg", "biden.jpg"]
    np.testing.assert_allclose(np.diag(d), 0)
    np.testing.assert_allclose(d, d.T)
    assert d[0, 1] < 0.6 < min(d[0, 2], d[1, 2])  # same person vs another person
    scale = (d[0, 1] + d[0, 2] + d[1, 2]) / 3
    assert f"mean distance between these 3 images ({scale:.3f})" in cap.out
    np.testing.assert_allclose(norm, d / scale, atol=2e-3)  # printed to 3 decimals


def test_generated_faces_normalised_by_a_base_networks_idbase(tmp_path, capsys):
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.networks import Generator
    from stylegan_blend.networks.sampling import generate_images

    G = randomized(Generator(**TINY_G), 1)
    save_network(tmp_path / "base.pt", G)
    imgs = generate_images(G, range(12), batch_size=12).numpy()
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(imgs[i]).save(folder / f"seed{i}.png")
    code, cap = run([folder, "--no-align", "--base", tmp_path / "base.pt", "--base-seeds", 12], capsys)
    assert code == 0, cap.err
    assert cap.out.startswith("proxy: PROXY")  # 32 px: auto falls back to the labelled proxy

    thumbs = imgs.astype(np.float64).reshape(12, 16, 2, 16, 2, 3).mean(axis=(2, 4)).reshape(12, -1)
    r = np.corrcoef(thumbs)
    dist = (1 - r) / 2
    idbase = dist[~np.eye(12, dtype=bool)].mean()
    assert re.search(rf"idbase over seeds 0-11 \({idbase:.3f}\)", cap.out), cap.out
    names, d, norm = matrices(cap.out)
    np.testing.assert_allclose(d, dist[:3, :3], atol=6e-4)
    np.testing.assert_allclose(norm, dist[:3, :3] / idbase, atol=6e-3)


def test_one_line_errors(tmp_path, capsys):
    code, cap = run([DATA / "obama.jpg"], capsys)
    assert code == 1 and cap.err.strip() == f"error: {DATA / 'obama.jpg'}: 1 image(s); expected at least 2 to compare"
    code, cap = run([DATA / "obama.jpg", tmp_path / "nope.jpg"], capsys)
    assert code == 1 and len(cap.err.strip().splitlines()) == 1 and "nope.jpg: no such photo or folder" in cap.err
    wall = tmp_path / "wall.png"
    Image.new("RGB", (96, 96), (120, 120, 120)).save(wall)
    code, cap = run([DATA / "obama.jpg", wall], capsys)
    assert code == 1 and len(cap.err.strip().splitlines()) == 1, cap.err
    assert "wall.png: no face found" in cap.err and "--no-align" in cap.err
    code, cap = run([DATA / "obama.jpg", DATA / "biden.jpg", "--extractor", "arcface"], capsys)
    assert code == 2 and "invalid choice: 'arcface'" in cap.err

