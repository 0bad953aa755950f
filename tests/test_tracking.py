"""W&B records a study can trust: real exit codes, one run across resume, env mode, one x-axis.

Read back from the offline run files W&B writes (tests/wandb_records.py), not from our own code.
"""
from __future__ import annotations

import pytest
from test_training import _cfg, _fit, dataset  # noqa: F401  (fixture)
from wandb_records import offline_runs


def _wandb(out, data, *extra):
    return _cfg(out, data, "logger=wandb", "trainer.max_epochs=1", "checkpoint.every_n_epochs=1", *extra)


def test_failed_run_records_its_exit_code_and_error(tmp_path, dataset, monkeypatch):  # noqa: F811
    """Seen 1: a job that failed had exit_code 0 in W&B."""
    from stylegan_blend.training import module as mod

    def boom(self):
        raise mod.TrainingDiverged("phase Gmain: 5 non-finite losses in a row")

    monkeypatch.setattr(mod.StyleGAN2Module, "on_train_epoch_end", boom)
    with pytest.raises(mod.TrainingDiverged):
        _fit(_wandb(tmp_path / "run", dataset))
    (run,) = offline_runs(tmp_path / "run")
    assert run.exit_code == 1
    assert run.summary["error"] == "error: phase Gmain: 5 non-finite losses in a row"


def test_run_uses_kimg_as_its_one_x_axis_and_exit_code_0(tmp_path, dataset):  # noqa: F811
    """Seen 7: values were logged against Lightning's step and global_step (~2.3x apart)."""
    _fit(_wandb(tmp_path / "run", dataset))
    (run,) = offline_runs(tmp_path / "run")
    assert run.exit_code == 0
    rows = [h for h in run.history if any(not k.startswith("_") for k in h)]
    assert rows and all("kimg" in h and "epoch" in h for h in rows)
    assert not any("trainer/global_step" in h for h in rows)
    assert any(m.glob_name == "*" and m.step_metric == "kimg" for m in run.metrics)
    kimg = [h["kimg"] for h in rows]
    assert all(b >= a - 1e-6 for a, b in zip(kimg, kimg[1:]))  # one monotone axis (float32 rounding aside)
    assert kimg[-1] == pytest.approx(16 / 1000)  # 16 train images, 1 epoch


def test_resume_continues_the_same_wandb_run(tmp_path, dataset):  # noqa: F811
    """Seen 6: `ckpt_path=last` started a second W&B run."""
    out = tmp_path / "run"
    _fit(_wandb(out, dataset))
    _fit(_wandb(out, dataset, "ckpt_path=last", "trainer.max_epochs=2"))
    runs = offline_runs(out)
    assert len(runs) == 2
    ids = {r.run.run_id for r in runs}
    assert ids == {(out / "wandb_run_id").read_text().strip()}
    assert runs[-1].history[-1]["epoch"] == 2


def test_environment_wandb_mode_wins_over_the_config(tmp_path, dataset, monkeypatch):  # noqa: F811
    """Seen 7: WANDB_MODE in the environment had no effect (the config's mode won)."""
    from stylegan_blend.app.tracking import wandb_mode

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("offline") == "disabled"
    _fit(_wandb(tmp_path / "run", dataset, "logger.mode=offline"))
    assert not list((tmp_path / "run").glob("wandb/offline-run-*"))
    assert (tmp_path / "run" / "networks" / "epoch=0001.pt").is_file()
