"""A plain record per run (training_options.json, stats.jsonl) and post-hoc eval refusing a wrong run_dir."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import _cfg, _fit, dataset  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


def _strict(text: str):
    def no_nan(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_nan)


def test_training_options_and_stats_jsonl(tmp_path, dataset):  # noqa: F811
    """Seen 9: no readable plain record of a run (NVIDIA's training_options.json / stats.jsonl)."""
    out = tmp_path / "run"
    _fit(_cfg(out, dataset, "trainer.max_epochs=2"))
    opts = _strict((out / "training_options.json").read_text())
    from omegaconf import OmegaConf

    import stylegan_blend.app.train  # noqa: F401  (registers the config's resolvers)

    saved = OmegaConf.to_container(OmegaConf.load(out / ".hydra" / "config.yaml"), resolve=True)
    assert opts["config"] == saved and opts["config"]["data"]["resolution"] == 16  # resolved, as the run used it
    assert opts["versions"]["torch"] == torch.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert opts["git"]["commit"] == head
    lines = [_strict(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    with open(out / "diagnostics.csv", newline="") as f:
        diag = list(csv.DictReader(f))
    for r in diag:
        v = lines[int(r["epoch"]) - 1][r["metric"]]
        assert (v is None and r["value"] == "nan") or v == pytest.approx(float(r["value"]), rel=1e-5)
    assert lines[-1]["kimg"] == pytest.approx(float(diag[-1]["kimg"]), abs=1e-3)


def test_posthoc_eval_of_a_mistyped_run_dir_creates_nothing(tmp_path):
    """Seen 8: a mistyped run_dir for stylegan-blend-eval created that folder."""
    typo = tmp_path / "outputs" / "demo" / "2026-01-01_typo"
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.evaluate", f"run_dir={typo}"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(err) == 1 and err[0].startswith(f"error: run_dir={typo}: not found"), r.stderr
    assert not (tmp_path / "outputs").exists()
