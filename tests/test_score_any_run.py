"""`stylegan-blend-eval --checkpoints DIR`: score a folder of NVIDIA-format snapshots without a Hydra run.
The snapshots hold NVIDIA-produced weights (tests/data/nvidia) in NVIDIA's persistence-pickle layout."""
import copy
import csv
from pathlib import Path

import fixture_pack
import numpy as np
import pytest
import torch
from PIL import Image
from test_checkpoints import write_nvidia_style_pickle

from stylegan_blend.app.evaluate import checkpoint_key, outside_main
from stylegan_blend.errors import UserError

DATA = Path(__file__).parent / "data" / "nvidia"


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.data.prepare import prepare_images
    from stylegan_blend.networks import Discriminator, Generator

    root = tmp_path_factory.mktemp("outside")
    # weights made by NVIDIA's own code (tools/make_nvidia_fixtures.py -> tests/data/nvidia/)
    g, d = (fixture_pack.load(DATA / f"{n}.pt") for n in ("g32_skip", "d32_resnet"))
    G = Generator(**g["init_kwargs"])
    G.load_state_dict(g["state_dict"])
    D = Discriminator(**d["init_kwargs"])
    D.load_state_dict(d["state_dict"])
    nets = {"G_ema": G.eval(), "G": copy.deepcopy(G), "D": D}
    save_network(root / "base.pt", nets["G_ema"], G=nets["G"], D=nets["D"])
    snaps = root / "snapshots"
    snaps.mkdir()
    for i, kimg in enumerate((4, 8)):  # "fine-tuned": the base drifting further at each snapshot
        tuned = {k: copy.deepcopy(v) for k, v in nets.items()}
        torch.manual_seed(i)
        with torch.no_grad():
            for p in tuned["G_ema"].synthesis.parameters():
                p.add_(torch.randn_like(p) * 0.1 * (i + 1))
        write_nvidia_style_pickle(snaps / f"network-snapshot-{kimg:06d}.pkl", tuned, root / "marker.txt",
                                  G_kwargs=g["init_kwargs"])
    (snaps / "notes.txt").write_text("not a checkpoint")
    raw = root / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(raw / f"{i}.png")
    prepare_images(raw, root / "data", resolution=32, val_fraction=0.0)
    return root


def test_scores_a_folder_of_nvidia_snapshots(outside, capsys):
    out = outside / "scored"
    argv = ["--base", str(outside / "base.pt"), "--checkpoints", str(outside / "snapshots"),
            "--data", str(outside / "data"), "--out", str(out), "--swap-res", "8,16", "--num-gen", "8",
            "--identity-num", "8", "--device", "cpu"]
    assert outside_main(argv) == 0
    printed = capsys.readouterr().out
    assert not (outside / "marker.txt").exists()  # the snapshots' embedded source never ran
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    # epoch key = the snapshot's kimg (NVIDIA snapshots have no epochs)
    assert {(r["epoch"], r["kimg"]) for r in rows if r["swap_res"] != "base"} == {("4", "4.000"), ("8", "8.000")}
    for epoch in ("4", "8"):
        for cell in ("8", "16", "none"):
            got = {r["metric"]: float(r["value"]) for r in rows if r["epoch"] == epoch and r["swap_res"] == cell}
            assert np.isfinite(got["kd_randcnn"]) and np.isfinite(got["idloss_proxy"])
    assert (out / "samples" / "blends" / "epoch=0008" / "swap16_low_base.png").is_file()
    assert (out / "networks" / "epoch=0004.pt").resolve() == (outside / "snapshots" /
                                                              "network-snapshot-000004.pkl").resolve()
    html = (out / "report" / "index.html").read_text()
    assert "best by knee" in html and (out / "report" / "fig" / "run0_selection.png").is_file()
    assert "network-snapshot-000008.pkl: epoch 8 (NVIDIA snapshot kimg (no epochs)), 8 kimg" in printed
    assert "best by knee" in printed
    # a second call finds every cell present and adds nothing
    assert outside_main(argv) == 0
    assert len(list(csv.DictReader(open(out / "metrics.csv")))) == len(rows)


def test_checkpoint_keys_and_bad_input(outside, tmp_path):
    assert checkpoint_key(Path("x/epoch=0012.pt"), {}) == (12, 0.0, "file name")
    assert checkpoint_key(Path("a.pt"), {"epoch": 3, "kimg": 1.5}) == (3, 1.5, "metadata")
    assert checkpoint_key(Path("020000.pt"), {"args": {"batch": 16}}) == (20000, 320.0, "rosinality iteration")
    with pytest.raises(UserError, match="cannot tell its epoch"):
        checkpoint_key(Path("final.pt"), {})
    with pytest.raises(UserError, match="no .pkl, .pt, .ckpt files"):
        outside_main(["--base", str(outside / "base.pt"), "--checkpoints", str(tmp_path), "--data",
                      str(outside / "data"), "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="selection rule 'best'"):
        outside_main(["--base", str(outside / "base.pt"), "--checkpoints", str(outside / "snapshots"), "--data",
                      str(outside / "data"), "--out", str(tmp_path / "o"), "--rule", "best"])
