"""Multirun bookkeeping: readable unique job names from the swept keys, the summary table, the exit code."""
from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("value, short", [
    ("/abs/path/to/data/anime", "anime"), ("data/animation/", "animation"), ("[16,32,64]", "16-32-64"),
    ("0.0012345678", "0.001235"), ("ada", "ada"), ("7", "7"), ("null", "null")])
def test_values_are_shortened_readably(value, short):
    from stylegan_blend.app.hydra_hooks import _short_value

    assert _short_value(value) == short


def test_job_name_keeps_only_swept_keys_and_disambiguates_tails(tmp_path):
    import json

    from stylegan_blend.app.hydra_hooks import SWEPT_FILE, job_name

    (tmp_path / SWEPT_FILE).write_text(json.dumps(["data.resolution", "model.resolution", "augment"]))
    name = job_name(3, tmp_path, ["data.path=/x/y/anime", "data.resolution=16", "model.resolution=16",
                                  "augment=ada", "trainer.max_epochs=4"])
    assert name == "3_data.resolution-16_model.resolution-16_augment-ada"


def test_swept_keys_from_command_line_and_sweeper_params():
    from stylegan_blend.app.hydra_hooks import swept_keys

    keys = swept_keys(["sweep=epochs_x_swap,swap_grid", "data.path=x", "train.g_lr=range(1,3)", "seed=1"],
                      {"augment": "ada,diffaug"})
    assert keys == ["sweep", "train.g_lr", "augment"]


def _tiny(*extra):
    return [sys.executable, "-m", "stylegan_blend.app.train", "-m", "model.resolution=16",
            "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4", "trainer.max_epochs=1",
            "logger=none", "callbacks.blend_eval=false", *extra]


def test_sweep_choices_give_unique_readable_folders_and_a_failing_sweep_exits_1(tmp_path):
    """Seen 3 (sweep in exclude_keys: two jobs, one name; absolute paths mangled into names) and Seen 2 (a
    multirun whose every job failed exited 0 without a word). The jobs fail in preflight, so this is fast."""
    sweep_dir = tmp_path / "sweep"
    a, b = tmp_path / "long" / "absolute" / "path" / "anime", tmp_path / "other" / "animation"
    r = subprocess.run(_tiny("sweep=epochs_x_swap,swap_grid", f"data.path={a},{b}", f"hydra.sweep.dir={sweep_dir}"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    jobs = sorted((p.name for p in sweep_dir.iterdir() if p.is_dir()), key=lambda n: int(n.split("_")[0]))
    assert jobs == ["0_sweep-epochs_x_swap_path-anime", "1_sweep-epochs_x_swap_path-animation",
                    "2_sweep-swap_grid_path-anime", "3_sweep-swap_grid_path-animation"]
    assert not any(re.search(r"[\[\],=/ ]", j) for j in jobs)
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r_["folder"] for r_ in rows] == jobs and {r_["status"] for r_ in rows} == {"failed"}
    assert all("no such dataset folder" in r_["error"] for r_ in rows)
    assert "0 of 4 job(s) completed" in r.stdout and "2_sweep-swap_grid_path-anime" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("error: 4 of 4 sweep job(s) did not complete")


def test_data_x_augment_takes_its_datasets_from_the_command_line(tmp_path):
    """Seen 5: the preset hard-coded data/anime and data/animation."""
    from hydra import compose, initialize_config_dir

    from stylegan_blend.app.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        c = compose(config_name="train", overrides=["sweep=data_x_augment"], return_hydra_config=True)
        assert c.hydra.sweeper.params["data.path"] == "data/anime,data/animation"
        c = compose(config_name="train", overrides=["sweep=data_x_augment", "sweep_data=[toon,/abs/photo]",
                                                    "paths.data_dir=/d"], return_hydra_config=True)
        assert c.hydra.sweeper.params["data.path"] == "/d/toon,/abs/photo"
    sweep_dir = tmp_path / "sweep"  # the real multirun: 2 datasets x 3 augmentations, named by both
    r = subprocess.run(_tiny("sweep=data_x_augment", f"paths.data_dir={tmp_path}", "sweep_data=[toon,photo]",
                             f"hydra.sweep.dir={sweep_dir}"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1  # the folders do not exist: every job fails in preflight, fast
    names = sorted((p.name for p in sweep_dir.iterdir() if p.is_dir()), key=lambda n: int(n.split("_")[0]))
    assert names == [f"{i}_path-{d}_augment-{a}" for i, (d, a) in
                     enumerate((d, a) for d in ("toon", "photo") for a in ("ada", "diffaug", "none"))]
