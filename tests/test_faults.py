"""Fault injection: a tiny run killed (-9 and SIGTERM) at random points and resumed must end as if it had
never been interrupted, as far as the run folder can tell: counters, logs without lost or repeated rows,
last.ckpt the newest state, no temp files, and every metrics.csv row computed from the network file on disk.

The kill points are random; the seed is printed in every assertion message (FAULT_SEED=... to replay).
"""
from __future__ import annotations

import csv
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_training import TINY_D, TINY_G, dataset  # noqa: F401  (fixture)

EPOCHS = 8  # room for three attempts of up to two epochs each, whatever the kill points


def _args(out: Path, data: Path, base: Path) -> list[str]:
    return [f"data.path={data}", "model.resolution=16", "model.G_kwargs.z_dim=16", "model.G_kwargs.w_dim=16",
            "model.G_kwargs.synthesis_kwargs.channel_base=128", "model.G_kwargs.synthesis_kwargs.channel_max=16",
            "model.D_kwargs.channel_base=128", "model.D_kwargs.channel_max=16",
            "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4", "train.r1_interval=2",
            "train.pl_interval=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "logger=csv",
            "train.diagnostics.num_images=4", "train.diagnostics.grid_size=4", f"paths.output_dir={out}",
            "augment=none", f"model.init_from={base}", f"trainer.max_epochs={EPOCHS}", "checkpoint.every_n_epochs=1",
            "callbacks.blend_eval=true", "blend.swap_res=[8]", "metrics.num_gen=4", "metrics.batch_size=4",
            "blend.sample_seeds=[0]", f"paths.cache_dir={out.parent / 'cache'}"]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "stylegan_blend.app.train", *args], stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), env=env)


def _epochs_logged(run: Path, since: float = 0.0) -> int:
    """Newest epoch in diagnostics.csv, counting only a file written after `since`."""
    try:
        if (run / "diagnostics.csv").stat().st_mtime < since:
            return 0
        with open(run / "diagnostics.csv") as f:
            return max((int(r["epoch"]) for r in csv.DictReader(f)), default=0)
    except (OSError, ValueError, KeyError):
        return 0


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def base(tmp_path) -> Path:
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.networks import Discriminator, Generator

    torch.manual_seed(5)
    G, D = Generator(**TINY_G), Discriminator(**TINY_D)
    return save_network(tmp_path / "base.pt", G, G=G, D=D, meta={"kimg": 10.0})


@pytest.mark.timeout(240)
def test_kill_and_resume_at_random_points_leaves_a_consistent_run(tmp_path, dataset, base):  # noqa: F811
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 10 ** 6))
    rng = random.Random(seed)
    why = f"FAULT_SEED={seed}"
    run = tmp_path / "run"
    args = _args(run, dataset, base)
    plan = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]
    resumed_from = []
    epoch_s = None  # one epoch's duration, measured in the first attempt: kill points are fractions of it
    for i, sig in enumerate(plan):
        last = run / "checkpoints" / "last.ckpt"
        start_epoch = torch.load(last, weights_only=True)["stylegan_blend"]["epoch"] if last.exists() else 0
        started = time.time()
        proc = _start(args + (["ckpt_path=last"] if i else []), tmp_path / f"attempt{i}.log")
        target = start_epoch + (2 if epoch_s is None else 1)  # kill after this attempt's first (second) epoch ...
        seen, deadline = {}, time.time() + 120
        while (done := _epochs_logged(run, started)) < target and proc.poll() is None and time.time() < deadline:
            seen.setdefault(done, time.time())
            time.sleep(0.02)
        seen.setdefault(done, time.time())
        if epoch_s is None:
            epoch_s = seen[target] - seen[target - 1]
        time.sleep(rng.uniform(0.0, 0.9) * epoch_s)  # ... at a random point of the following one
        assert proc.poll() is None, f"{why}: attempt {i} ended before its kill: {(tmp_path / f'attempt{i}.log').read_text()}"
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
        err = (tmp_path / f"attempt{i}.log").read_text()
        if sig == signal.SIGTERM:  # a scheduler must see the failure, after the checkpoint is written
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert rc == 143 and len(errors) == 1 and "SIGTERM" in errors[0], f"{why}: rc={rc} {err}"
            assert "Traceback" not in err, f"{why}: {err}"
            ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
            assert f"after epoch {ck['stylegan_blend']['epoch']} " in errors[0], f"{why}: {errors[0]}"
        else:
            assert rc == -signal.SIGKILL
        resumed_from.append(torch.load(last, weights_only=True)["stylegan_blend"]["epoch"] if last.exists() else 0)
    final = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", *args, "ckpt_path=last"],
                           capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    assert final.returncode == 0, f"{why}: {final.stderr}"
    assert "Traceback" not in final.stderr

    # counters: the run did exactly EPOCHS epochs of the same number of minibatches
    n_train = len([e for e in _rows_manifest(dataset) if e == "train"])
    per_epoch = n_train // 4
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    state = ck["stylegan_blend"]
    assert state["epoch"] == EPOCHS and state["minibatch"] == EPOCHS * per_epoch, why
    assert state["nimg"] == EPOCHS * per_epoch * 4, why
    # last.ckpt is the newest state; no Lightning -vN copies; no temp files anywhere
    epoch_ckpts = sorted((run / "checkpoints").glob("epoch=*.ckpt"))
    assert [p.name for p in epoch_ckpts] == [f"epoch={e:04d}.ckpt" for e in range(1, EPOCHS + 1)], why
    assert not [p for p in run.rglob("*") if "-v" in p.stem and p.suffix in (".ckpt", ".pt")], why
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name], why
    # diagnostics: every epoch exactly once per metric (redone epochs replaced, not repeated)
    diag = Counter((r["epoch"], r["metric"]) for r in _rows(run / "diagnostics.csv"))
    assert {int(e) for e, _ in diag} == set(range(1, EPOCHS + 1)) and set(diag.values()) == {1}, why
    # Lightning's csv log: rows of every epoch kept across the resumes, the epoch-end row once per epoch
    log_rows = _rows(run / "csv" / "metrics.csv")
    ends = [float(r["epochs_done"]) for r in log_rows if r.get("epochs_done")]
    assert sorted(ends) == [float(e) for e in range(1, EPOCHS + 1)], f"{why}: {ends}"
    steps = [int(r["step"]) for r in log_rows if r.get("loss_G")]
    assert len(steps) == len(set(steps)) == EPOCHS * per_epoch, f"{why}: {sorted(steps)}"
    # metrics.csv: each cell once, and each row computed from the network file now on disk
    rows = _rows(run / "metrics.csv")
    cells = Counter((r["epoch"], r["swap_res"], r["direction"], r["metric"]) for r in rows if r["swap_res"] != "base")
    assert set(cells.values()) == {1} and {int(e) for e, *_ in cells} == set(range(1, EPOCHS + 1)), why
    for r in rows:
        net = base if r["swap_res"] == "base" else run / "networks" / f"epoch={int(r['epoch']):04d}.pt"
        assert r["network_sha256"] == hashlib.sha256(net.read_bytes()).hexdigest(), f"{why}: {r}"
    assert any(e > 0 for e in resumed_from), f"{why}: no kill came after a checkpoint: {resumed_from}"


def _rows_manifest(folder: Path) -> list[str]:
    from stylegan_blend.data.folder import read_manifest

    return [e.split for e in read_manifest(folder).entries]
