"""The demo end to end at toy scale, and the recipe targets' clean failures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_scaled_down_demo_produces_the_report(tmp_path):
    out, base = tmp_path / "demo", tmp_path / "base.pt"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "demo" / "demo.py"), "--out", str(out), "--base", str(base),
                        "--base-epochs", "1", "--photo", "60", "--toon", "40", "--epochs", "2", "--every", "1",
                        "--num-gen", "16", "--project-steps", "5"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert base.is_file() and base.stat().st_size < 2_000_000
    digest = base.with_name("base.pt.sha256").read_text().split()[0]
    import hashlib

    assert digest == hashlib.sha256(base.read_bytes()).hexdigest()
    run = out / "run"
    html = (run / "report" / "index.html").read_text()
    for needed in ("networks/epoch=0002.pt", "metrics.csv", "diagnostics.csv", "samples/blends/epoch=0002"):
        assert (run / needed).exists(), needed
    assert "stylegan-blend blend" in html and "proxy" in html
    assert len(list((run / "stylized").glob("*_stylized.png"))) == 3
    assert len(list((run / "report").rglob("*stylized*.png"))) == 3
    assert "report:" in r.stdout and "overall" in r.stdout and "epoch    2" in r.stdout
    assert "best by knee" in r.stdout and "why: " in r.stdout and "one-sided pick (lowest" in r.stdout
    import json  # every run leaves its pick, with the bootstrap behind it, in selection.json

    record = json.loads((run / "selection.json").read_text())
    assert record["bootstrap"]["n_seeds"] == {"style": 16, "identity": 16} and record["stability"] > 0
    assert f"best by knee: {record['summary']}" in r.stdout and " (stable " in record["summary"]
    # the README's pictures: the last checkpoint's labelled sheet (5 generators x 6 seeds), heatmap, a face
    figures = out / "figures"
    assert sorted(p.name for p in figures.iterdir()) == ["demo_grid.png", "demo_heatmap.png", "demo_stylized.png"]
    assert (figures / "demo_grid.png").read_bytes() == (run / "report" / "sheets" / "run0_epoch=0002.png").read_bytes()
    from PIL import Image

    with Image.open(figures / "demo_grid.png") as im:
        assert im.width > 6 * 128 and im.height > 5 * 128  # 32 px samples shown 4x enlarged


def test_recipe_targets_fail_cleanly_without_data():
    env = {k: v for k, v in os.environ.items() if k not in ("FFHQ_PKL", "ANIME_RAW", "CLIPS", "MAKEFLAGS", "MFLAGS")}
    for target, variable in (("anime-prepare", "ANIME_RAW"), ("anime-train", "FFHQ_PKL"),
                             ("animation-prepare", "CLIPS"), ("animation-train", "FFHQ_PKL")):
        r = subprocess.run(["make", "-s", "--no-print-directory", target], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=120)
        assert r.returncode != 0
        errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and f"set {variable}=" in errors[0], r.stderr
