"""`stylegan-blend convert | inspect | generate`: results checked independently, every bad input one line."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_nets import tiny_nets

from stylegan_blend.app.cli import main
from stylegan_blend.checkpoints import load_network, save_network
from stylegan_blend.checkpoints.rosinality import nvidia_to_rosinality_D, nvidia_to_rosinality_G


@pytest.fixture(scope="module")
def nets():
    return tiny_nets()


@pytest.fixture
def network_file(tmp_path, nets):
    return save_network(tmp_path / "net.pt", nets["G_ema"], G=nets["G"], D=nets["D"], meta={"kimg": 12.0, "epoch": 3})


def test_convert_rosinality_keeps_G_D_G_ema(tmp_path, nets, capsys):
    src = tmp_path / "ros.pt"
    torch.save({"g": nvidia_to_rosinality_G(nets["G"].state_dict()),
                "g_ema": nvidia_to_rosinality_G(nets["G_ema"].state_dict()),
                "d": nvidia_to_rosinality_D(nets["D"].state_dict()),
                "latent_avg": nets["G_ema"].mapping.w_avg.clone()}, src)
    dst = tmp_path / "out" / "net.pt"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "rosinality" in capsys.readouterr().out
    raw = torch.load(dst, weights_only=True)
    assert raw["meta"]["source_format"] == "rosinality"
    for key in ("G_ema", "G", "D"):
        theirs = dict(nets[key].state_dict())
        if key == "G":  # a rosinality file has one latent_avg; like NVIDIA's EMA copy, both G's share it
            theirs["mapping.w_avg"] = nets["G_ema"].mapping.w_avg
        assert raw[key]["state_dict"].keys() == theirs.keys()
        assert all(torch.equal(raw[key]["state_dict"][k], theirs[k]) for k in theirs), key
    assert load_network(dst).format == "native"


def test_inspect_reports_architecture(network_file, nets, capsys):
    assert main(["inspect", str(network_file)]) == 0
    out = capsys.readouterr().out
    n_G = sum(p.numel() for p in nets["G"].parameters())
    n_D = sum(p.numel() for p in nets["D"].parameters())
    # 32 px: blocks 4..32 give 2*4 - 1 convs + 1 toRGB = 8 ws; channels min(256 / res, 32)
    for expected in ("native", "32 px", "32 / 32", "num_ws", " 8 ", "4:32  8:32  16:16  32:8",
                     f"{n_G:,}", f"{n_D:,}", "12.0", "epoch"):
        assert expected in out, expected


def expected_png(G, seed, psi):
    """NVIDIA generate.py, written out: z from RandomState(seed), (img * 127.5 + 128).clamp(0, 255) as uint8."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, None, truncation_psi=psi, noise_mode="const")
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def test_generate_follows_nvidia_seed_convention(network_file, nets, tmp_path, capsys):
    outdir = tmp_path / "imgs"
    assert main(["generate", "--network", str(network_file), "--seeds", "0-2,5", "--trunc", "0.7",
                 "--noise-mode", "const", "--outdir", str(outdir), "--grid", "--device", "cpu",
                 "--batch-size", "1"]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["grid.png", "seed0000.png", "seed0001.png",
                                                       "seed0002.png", "seed0005.png"]
    pngs = {s: np.asarray(Image.open(outdir / f"seed{s:04d}.png")) for s in (0, 1, 2, 5)}
    for seed, png in pngs.items():
        assert png.shape == (32, 32, 3) and png.dtype == np.uint8
        np.testing.assert_array_equal(png, expected_png(nets["G_ema"], seed, 0.7))
    from stylegan_blend.reporting.sheet import sheet_layout

    grid = np.asarray(Image.open(outdir / "grid.png"))
    captions = [["seed 0", "seed 1"], ["seed 2", "seed 5"]]  # ceil(sqrt(4)) = 2 columns, row-major
    lay = sheet_layout(32, 2, 2, captions=captions, title="net.pt: truncation 0.7, noise const")
    assert grid.shape == (lay.height, lay.width, 3) and lay.scale == 4  # 32 px enlarged to 128
    for (r, c), seed in {(0, 1): 1, (1, 1): 5}.items():
        x0, y0, x1, y1 = lay.tile_box(r, c)
        np.testing.assert_array_equal(grid[y0:y1, x0:x1], np.kron(pngs[seed], np.ones((4, 4, 1), np.uint8)))
    assert "4 image(s)" in capsys.readouterr().out


def test_generate_batched_matches_single(network_file, tmp_path):
    for bs in ("1", "3"):
        assert main(["generate", "--network", str(network_file), "--seeds", "7-9", "--outdir", str(tmp_path / bs),
                     "--batch-size", bs]) == 0
    for s in (7, 8, 9):
        a, b = (np.asarray(Image.open(tmp_path / bs / f"seed{s:04d}.png")).astype(int) for bs in ("1", "3"))
        assert np.abs(a - b).max() <= 1  # batched modulated conv differs from the grouped one only by rounding


# ---------------------------------------------------------------------------------------------- bad input

class Reducer:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def make_bad_inputs(tmp: Path, network_file: Path) -> dict[str, Path]:
    good = network_file.read_bytes()
    (tmp / "truncated.pt").write_bytes(good[: len(good) // 3])
    (tmp / "notes.pt").write_text("not a network\n")
    with open(tmp / "evil.pkl", "wb") as f:
        pickle.dump({"G_ema": Reducer(os.system, (f"touch {tmp / 'pwned'}",))}, f)
    raw = torch.load(network_file, weights_only=True)
    raw["G_ema"]["kwargs"]["z_dim"] = 16  # only mapping.fc0.weight depends on z_dim
    torch.save(raw, tmp / "mismatch.pt")
    (tmp / "a_file").write_text("x")
    return {"missing": tmp / "missing.pt", "truncated": tmp / "truncated.pt", "unknown": tmp / "notes.pt",
            "code": tmp / "evil.pkl", "mismatch": tmp / "mismatch.pt", "good": network_file, "file": tmp / "a_file"}


GENERATE_ERRORS = [  # (network, seeds, outdir, extra args, words the one line must contain)
    ("missing", "0-1", "out", [], ["missing.pt", "no such file"]),
    ("truncated", "0-1", "out", [], ["truncated.pt", "truncated or corrupt"]),
    ("unknown", "0-1", "out", [], ["notes.pt", "unknown file format"]),
    ("code", "0-1", "out", [], ["refused to unpickle posix.system from evil.pkl", "allow-list"]),
    ("mismatch", "0-1", "out", [], ["mismatch.pt", "mapping.fc0.weight", "[32, 32] in the file", "[32, 16]"]),
    ("good", "3-1", "out", [], ["'3-1'", "descending"]),
    ("good", "0-x", "out", [], ["'0-x'"]),
    ("good", "", "out", [], ["seeds"]),
    ("good", "0-1", "a_file", [], ["--outdir", "a_file"]),
    ("good", "0-1", "a_file/sub", [], ["--outdir", "a_file/sub"]),
    ("good", "0-1", "out", ["--batch-size", "0"], ["--batch-size 0"]),
]


@pytest.mark.parametrize("network, seeds, outdir, extra, words", GENERATE_ERRORS)
def test_generate_errors_are_one_line(tmp_path, network_file, capsys, network, seeds, outdir, extra, words):
    files = make_bad_inputs(tmp_path, network_file)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["generate", "--network", str(files[network]), "--seeds", seeds,
               "--outdir", str(tmp_path / outdir), *extra])
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no outdir, no image, no marker


@pytest.mark.parametrize("src, dst, words", [("missing", "out.pt", ["missing.pt"]), ("code", "out.pt", ["evil.pkl"]),
                                             ("good", "a_file/out.pt", ["cannot write", "a_file"])])
def test_convert_errors_leave_nothing(tmp_path, network_file, capsys, src, dst, words):
    files = make_bad_inputs(tmp_path, network_file)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["convert", str(files[src]), str(tmp_path / dst)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_usage_errors_are_one_line(capsys):
    assert main(["generate", "--seeds", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--network" in lines[0] and "--outdir" in lines[0]


def test_python_dash_m_prints_no_traceback(tmp_path, network_file):
    files = make_bad_inputs(tmp_path, network_file)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "stylegan_blend", "generate", "--network", str(files["code"]),
                           "--seeds", "0", "--outdir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: refused to unpickle posix.system from evil.pkl: "
                                                "not on the allow-list"], proc.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_generate_help_imports_no_plotting_hydra_or_lightning():
    """`stylegan-blend generate --help` in a fresh interpreter must not import the report/training stacks."""
    code = ("import sys\nfrom stylegan_blend.app.cli import main\nrc = main(['generate', '--help'])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'hydra', 'omegaconf', "
            "'pytorch_lightning', 'lightning', 'lightning_fabric', 'wandb', 'torchmetrics', 'cv2', 'av'})\n"
            "print('HEAVY=' + ','.join(heavy)); sys.exit(rc)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--seeds" in proc.stdout  # the help really printed
    assert "HEAVY=\n" in proc.stdout, proc.stdout.splitlines()[-1]
