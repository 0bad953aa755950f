"""`ckpt_path=last` without paths.output_dir resumes the newest run of the experiment, in place."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from test_training import TINY_MODEL, dataset  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
TINY = [*TINY_MODEL, "logger=none", "augment=none",
        "callbacks.blend_eval=false", "trainer.enable_progress_bar=false", "train.diagnostics.num_images=4",
        "train.diagnostics.grid_size=4", "checkpoint.every_n_epochs=1", "name=exp"]


def _train(cwd: Path, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", *TINY, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_last_without_output_dir_resumes_the_newest_run_in_place(tmp_path, dataset):  # noqa: F811
    """Seen 6: with the timestamped default output_dir, `ckpt_path=last` silently started a new run and a
    resume overwrote .hydra/overrides.yaml."""
    old = tmp_path / "outputs" / "exp" / "2020-01-01_00-00-00"  # an older run: must not be picked
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.ckpt").write_bytes(b"older")
    os.utime(old / "checkpoints" / "last.ckpt", (1e9, 1e9))
    r = _train(tmp_path, f"data.path={dataset}", "trainer.max_epochs=1")  # the newest run
    assert r.returncode == 0, r.stderr[-2000:]
    (newest,) = [p for p in (tmp_path / "outputs" / "exp").iterdir() if p != old]
    first = (newest / ".hydra" / "overrides.yaml").read_text()

    r = _train(tmp_path, f"data.path={dataset}", "trainer.max_epochs=2", "ckpt_path=last")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming the newest run of 'exp': {newest}" in r.stderr
    assert sorted(p.name for p in (tmp_path / "outputs" / "exp").iterdir()) == sorted([old.name, newest.name])
    assert (newest / "networks" / "epoch=0002.pt").is_file() and not (old / "networks" / "epoch=0002.pt").exists()
    assert (newest / ".hydra" / "overrides.yaml").read_text() == first  # the first launch's record kept
    (resume,) = (newest / ".hydra").glob("resume-*/overrides.yaml")
    assert "ckpt_path=last" in yaml.safe_load(resume.read_text())


def test_last_with_no_run_to_resume_is_one_error_line(tmp_path, dataset):  # noqa: F811
    r = _train(tmp_path, f"data.path={dataset}", "trainer.max_epochs=1", "ckpt_path=last")
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(err) == 1 and err[0].startswith("error: ckpt_path=last: no run of experiment")
    assert not (tmp_path / "outputs").exists()
