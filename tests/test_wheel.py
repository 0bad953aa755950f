"""Seen 4: the wheel had no YAML files, so an installed (non-editable) package could not train."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

from test_training import TINY_MODEL, dataset  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
TINY = [*TINY_MODEL, "logger=none", "augment=none",
        "callbacks.blend_eval=false", "trainer.enable_progress_bar=false", "train.diagnostics.num_images=4",
        "train.diagnostics.grid_size=4", "trainer.max_epochs=1", "checkpoint.every_n_epochs=1"]


def test_wheel_installed_into_a_fresh_venv_composes_and_trains(tmp_path, dataset):  # noqa: F811
    src = tmp_path / "src"  # a copy, so neither the build nor the run can see the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("stylegan_blend", "conf"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = dict(capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                        "-w", str(tmp_path / "dist")], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("stylegan_blend-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, **run)
    # the dependencies (torch, Lightning, Hydra...) from this interpreter's site-packages as plain path
    # entries: a .pth line is not a site dir, so the editable install's finder there is not activated
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    (venv_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        "--no-deps", "--no-index", str(wheel)], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import stylegan_blend; print(stylegan_blend.__file__)"],
                       **run)
    assert Path(r.stdout.strip()).is_relative_to(venv_site), r.stdout + r.stderr

    train = str(venv / "bin" / "stylegan-blend-train")
    r = subprocess.run([train, "--cfg", "job", "data.path=x"], **run)
    assert r.returncode == 0 and "mbstd_group_size" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([train, f"data.path={dataset}", f"paths.output_dir={tmp_path / 'run'}", *TINY], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "networks" / "epoch=0001.pt").is_file()
