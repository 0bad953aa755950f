"""Several processes on the CPU (gloo): a SLURM job imitated with its variables (two tasks, plain DDP), the
non-finite-loss decision agreed by all ranks, blend scoring split over ranks, resume on another process
count, and a multirun through the real submitit launcher (local executor)."""
from __future__ import annotations

import csv
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_blend_eval import base  # noqa: F401 - tiny base network fixture
from test_training import TINY_MODEL, _cfg, _fit, dataset  # noqa: F401 - 16 px dataset fixture

TESTS = Path(__file__).resolve().parent
# the README's multi-GPU command, sized for the CPU: 16 px, total batch 4 (2 per process), gloo
TINY = [*TINY_MODEL, "train.r1_interval=2",
        "train.pl_interval=2", "trainer.enable_progress_bar=false", "train.diagnostics.num_images=4",
        "train.diagnostics.grid_size=4", "augment=none"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_tasks(cmd: list[str], ntasks: int = 2, timeout: int = 240, job_id: str | None = None,
                 **extra_env: str) -> list[subprocess.CompletedProcess]:
    """Start `cmd` once per task with the variables srun gives each task of a one-node job."""
    job_id = job_id or str(random.randint(100000, 999999))
    procs = []
    for rank in range(ntasks):
        env = dict(os.environ, SLURM_NTASKS=str(ntasks), SLURM_NTASKS_PER_NODE=str(ntasks), SLURM_NNODES="1",
                   SLURM_NODEID="0", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NODELIST="localhost",
                   SLURM_JOB_ID=job_id, SLURM_JOB_NAME="stylegan-blend", MASTER_PORT=str(_free_port() if rank == 0
                                                                                          else port),  # noqa: F821
                   PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]), **extra_env)
        port = int(env["MASTER_PORT"])  # noqa: F841 - the next rank's master port
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, dataset, base):  # noqa: F811
    """Two SLURM tasks, 3 epochs; from the 3rd epoch on, rank 1 alone gets NaN losses (tests/ddp_poison.py)."""
    out = tmp_path_factory.mktemp("slurm") / "run"
    cmd = [sys.executable, str(TESTS / "ddp_poison.py"), "1", "2", "trainer=ddp", "trainer.accelerator=cpu",
           f"data.path={dataset}", f"model.init_from={base}", "logger=csv", f"paths.output_dir={out}",
           "trainer.max_epochs=3", "train.max_nonfinite=3", "checkpoint.every_n_epochs=2", "callbacks.blend_eval=true",
           "blend.swap_res=[4,8]", "metrics.num_gen=8", "metrics.batch_size=8", "blend.sample_seeds=[0,1]",
           f"paths.cache_dir={out.parent / 'cache'}", *TINY]
    return out, _slurm_tasks(cmd)


@pytest.mark.timeout(300)
def test_slurm_tasks_train_as_ranks_of_one_ddp_run(slurm_run):
    out, results = slurm_run
    for rank, r in enumerate(results):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in r.stderr + r.stdout, r.stderr[-3000:]
    # one set of outputs, and the total batch of 4 is split: 16 train images = 4 steps of 4 images per epoch
    assert sorted(p.name for p in (out / "networks").glob("*.pt")) == ["epoch=0002.pt"]
    ck = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["stylegan_blend"]
    assert ck["epoch"] == 2 and ck["minibatch"] == 8 and ck["kimg"] == pytest.approx(0.032)
    rows = _rows(out / "metrics.csv")
    cells = [(r["swap_res"], r["direction"], r["metric"]) for r in rows]
    assert len(cells) == len(set(cells)), "each (cell, metric) once"
    by_cell = {}
    for swap_res, direction, metric in cells:
        by_cell.setdefault((swap_res, direction), set()).add(metric)
    assert sorted(by_cell) == [("4", "low_base"), ("8", "low_base"), ("base", ""), ("none", "")]
    assert len({frozenset(m) for m in by_cell.values()}) == 1  # every cell with the same metrics
    assert {"fd_randcnn", "kd_randcnn", "idloss_proxy"} <= by_cell[("none", "")]
    assert sorted(p.stem for p in (out / "samples" / "blends" / "epoch=0002").glob("*.png")) == \
        ["base", "none", "swap4_low_base", "swap8_low_base"]


def test_nan_on_one_rank_stops_every_rank_with_the_message(slurm_run):
    """Rank 1 alone sees NaN losses; both ranks skip together, then both raise TrainingDiverged (no hang:
    the fixture's processes have a bounded time)."""
    out, results = slurm_run
    for r in results:
        err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 1 and len(err) == 1, r.stderr[-3000:]
        assert err[0] == (f"error: phase Gmain: 3 non-finite losses in a row at kimg 0.0; "
                          f"last good checkpoint: {out / 'checkpoints' / 'last.ckpt'}"), err


@pytest.mark.timeout(240)
def test_nan_on_one_spawned_worker_ends_with_the_one_error_line(tmp_path, dataset):  # noqa: F811
    """Outside SLURM `trainer=ddp` spawns its workers; rank 1's TrainingDiverged reaches the parent only as torch's
    ProcessRaisedException (traceback text): the command still ends with the one error line, exit code 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = subprocess.run([sys.executable, str(TESTS / "ddp_poison.py"), "1", "0", "trainer=ddp",
                        "trainer.accelerator=cpu",
                        f"data.path={dataset}", "logger=none", f"paths.output_dir={tmp_path / 'run'}",
                        "trainer.max_epochs=2", "train.max_nonfinite=2", "callbacks.blend_eval=false", *TINY],
                       capture_output=True, text=True, timeout=220,
                       env=dict(env, PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)])))
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert err == ["error: phase Gmain: 2 non-finite losses in a row at kimg 0.0; last good checkpoint: "
                   "none saved yet"], r.stderr[-3000:]


@pytest.mark.timeout(120)
def test_blend_scores_split_over_ranks_equal_one_process(slurm_run, tmp_path):
    """The 2-rank metrics.csv against the same checkpoint scored by one process."""
    from omegaconf import OmegaConf

    from stylegan_blend.app.train import CONF_DIR  # noqa: F401 - registers the config's resolvers
    from stylegan_blend.checkpoints import load_network
    from stylegan_blend.evaluation.blend_scorer import BlendScorer

    out, _ = slurm_run
    cfg = OmegaConf.to_container(OmegaConf.load(out / ".hydra" / "config.yaml"), resolve=True)
    scorer = BlendScorer.from_config(cfg, tmp_path)
    single = scorer.score_checkpoint(load_network(out / "networks" / "epoch=0002.pt").G_ema, 2, 0.032)
    key = lambda r: (str(r["swap_res"]), r["direction"], r["metric"])  # noqa: E731
    assert {key(r): r["value"] for r in _rows(out / "metrics.csv")} == {key(r): r["value"] for r in single}


@pytest.mark.timeout(120)
def test_resume_the_two_process_run_in_one_process(slurm_run, dataset):  # noqa: F811
    out, _ = slurm_run  # the last test of this run directory: it trains one more epoch in it
    _fit(_cfg(out, dataset, "trainer.max_epochs=3", "ckpt_path=last", "checkpoint.every_n_epochs=1"))
    ck = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["stylegan_blend"]
    assert ck["epoch"] == 3 and ck["minibatch"] == 12 and ck["kimg"] == pytest.approx(0.048)


def test_rng_states_of_missing_devices_are_skipped_once():
    import warnings

    from stylegan_blend.training.module import _rng_state, _set_rng_state

    state = _rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2  # saved on 2 GPUs, resumed here
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _set_rng_state(state)
    msgs = [str(w.message) for w in caught if "RNG states" in str(w.message)]
    assert msgs == [f"resume: the checkpoint has RNG states for 2 CUDA device(s), this run has {have}; "
                    f"restored {min(2, have)} (the run continues, not bit-identical)"] or have == 2


def test_ddp_preset_uses_plain_ddp_under_slurm_and_spawn_outside(monkeypatch):
    from stylegan_blend.app.config import slurm_or

    for k in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(k)
    assert slurm_or("popen", "spawn") == "spawn"
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert slurm_or("popen", "spawn") == "popen"
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # `srun --pty bash`: Lightning does not take ranks
    assert slurm_or("popen", "spawn") == "spawn"


@pytest.mark.timeout(300)
def test_multirun_through_submitit_local_executor(tmp_path, dataset):  # noqa: F811
    """Two jobs pickled and run by submitit (as on SLURM), each with its own outputs."""
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", "-m", "hydra/launcher=submitit_local",
                        "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep}", "trainer=cpu",
                        f"data.path={dataset}", "logger=none", "callbacks.blend_eval=false", "trainer.max_epochs=1",
                        "seed=0,1", *TINY], capture_output=True, text=True, timeout=280,
                       env=dict(os.environ, PYTHONPATH=str(TESTS.parent)))
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted(p.parent.parent.name for p in sweep.glob("*/networks/epoch=0001.pt"))
    assert [j.split("_")[0] for j in jobs] == ["0", "1"] and "seed=" not in "".join(jobs), jobs
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2, "both ran as submitit jobs"


def test_total_batch_is_split_over_processes_or_refused(dataset):  # noqa: F811
    from types import SimpleNamespace

    from stylegan_blend.data.datamodule import StyleGANDataModule
    from stylegan_blend.errors import UserError

    dm = StyleGANDataModule(dataset, resolution=16, batch_size=4)
    dm.trainer = SimpleNamespace(world_size=2)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape[0] == 2
    dm = StyleGANDataModule(dataset, resolution=16, batch_size=5)
    dm.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(UserError, match=r"^train\.batch_size=5 is the total batch over 2 processes and does not "
                                        r"divide by 2; use a multiple of 2$"):
        dm.setup("fit")


def _fake_scontrol(tmp_path: Path) -> dict:
    """PATH with an `scontrol` that records its arguments (the requeue request) instead of talking to SLURM."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n')
    (bin_dir / "scontrol").chmod(0o755)
    return dict(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SCONTROL_LOG=str(tmp_path / "scontrol.log"))


def _requeue_cmd(run: Path, dataset: Path, rank: int, at: int, *extra: str) -> list[str]:
    return [sys.executable, str(TESTS / "slurm_preempt.py"), str(rank), str(at), f"data.path={dataset}",
            "logger=none", "callbacks.blend_eval=false", f"paths.output_dir={run}", "trainer.max_epochs=3",
            "checkpoint.every_n_epochs=1", *TINY, *extra]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("at", [4, 7], ids=["mid-epoch", "last-batch-of-epoch"])
def test_slurm_requeue_resumes_exactly_where_the_signal_stopped_it(tmp_path, dataset, at):  # noqa: F811
    """SLURM's requeue signal (SIGUSR1) in epoch 2, mid-way or in its last minibatch (then the state is saved after
    the next one: Lightning cannot resume a checkpoint taken at an epoch's last batch end): hpc_ckpt_1.ckpt is
    saved, `scontrol requeue JOB` is asked, the attempt exits 143 with one line. The requeued job (same command,
    SLURM_RESTART_COUNT=1) resumes from that file and ends with the same weights as a run never interrupted."""
    run, env = tmp_path / "run", _fake_scontrol(tmp_path)
    (first,) = _slurm_tasks(_requeue_cmd(run, dataset, 0, at, "trainer=cpu"), ntasks=1, job_id="4242", **env)
    err = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    saved = at + 1 if (at + 1) % 4 else at + 2  # 4 minibatches per epoch: a request in the last one waits one more
    assert first.returncode == 143 and err == [
        f"error: SLURM requeue signal: saved {run / 'hpc_ckpt_1.ckpt'} after minibatch {saved} (kimg "
        f"{saved * 4 / 1000:.2f}); job 4242 requeued; it resumes from this checkpoint"], first.stderr[-3000:]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    (again,) = _slurm_tasks(_requeue_cmd(run, dataset, 0, at, "trainer=cpu"), ntasks=1, job_id="4242",
                            SLURM_RESTART_COUNT="1", **env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"SLURM requeue 1: resuming from {run / 'hpc_ckpt_1.ckpt'}" in again.stderr
    whole = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", *_requeue_cmd(tmp_path / "whole", dataset,
                                                                                         0, 4, "trainer=cpu")[4:]],
                           capture_output=True, text=True, timeout=200, env={
                               k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
    assert whole.returncode == 0, whole.stderr[-3000:]
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (run, tmp_path / "whole"))
    assert a["stylegan_blend"]["minibatch"] == b["stylegan_blend"]["minibatch"] == 3 * 16 // 4  # 16 train images
    assert a["stylegan_blend"]["nimg"] == b["stylegan_blend"]["nimg"]
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


@pytest.mark.timeout(300)
def test_requeue_signal_on_one_rank_stops_both_at_the_same_minibatch(tmp_path, dataset):  # noqa: F811
    """Two SLURM tasks, the signal reaches rank 1 only: the request is all-reduced, both ranks save the same
    minibatch and stop with the line; requeued, the two tasks finish the run with the counts of an unbroken one."""
    run, env = tmp_path / "run", _fake_scontrol(tmp_path)
    results = _slurm_tasks(_requeue_cmd(run, dataset, 1, 1, "trainer=ddp", "trainer.accelerator=cpu"), job_id="77",
                           **env)
    for r in results:
        err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 143 and len(err) == 1, r.stderr[-3000:]
        assert err[0].startswith(f"error: SLURM requeue signal: saved {run / 'hpc_ckpt_1.ckpt'} after minibatch 2 ")
    assert (tmp_path / "scontrol.log").read_text() == "requeue 77\n", "rank 0 alone asks for the requeue"
    results = _slurm_tasks(_requeue_cmd(run, dataset, 1, 1, "trainer=ddp", "trainer.accelerator=cpu"), job_id="77",
                           SLURM_RESTART_COUNT="1", **env)
    assert all(r.returncode == 0 for r in results), results[0].stderr[-3000:] + results[1].stderr[-3000:]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["stylegan_blend"]
    n_train = 16  # the dataset fixture: 20 images, 4 held out
    assert state["minibatch"] == 3 * (n_train // 4) and state["nimg"] == 3 * (n_train // 4) * 4, state


@pytest.mark.timeout(120)
def test_cluster_preset_submits_one_task_per_gpu_with_the_requeue_signal(tmp_path, dataset):  # noqa: F811
    """The README's SLURM command through Hydra's real submitit launcher, up to `sbatch` (a stand-in records the
    script and refuses): one task per GPU, and the signal SLURM will send is the one callbacks/requeue.py handles."""
    import signal

    from stylegan_blend.training.callbacks.requeue import SlurmRequeue

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncp "$1" "$SBATCH_COPY"\necho "no cluster here" >&2\nexit 1\n')
    (bin_dir / "sbatch").chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that srun exists
    (bin_dir / "srun").chmod(0o755)
    script = tmp_path / "job.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = subprocess.run([sys.executable, "-m", "stylegan_blend.app.train", "-m", "hydra/launcher=cluster",
                        "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=2", "trainer=ddp",
                        f"data.path={dataset}", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=0,1", *TINY],
                       capture_output=True, text=True, timeout=100,
                       env=dict(env, PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", SBATCH_COPY=str(script)))
    assert r.returncode != 0 and script.is_file(), r.stderr[-3000:]
    lines = script.read_text().splitlines()
    for want in ("#SBATCH --ntasks-per-node=2", "#SBATCH --gpus-per-node=2", "#SBATCH --nodes=1",
                 "#SBATCH --partition=gpu", "#SBATCH --array=0-1%2"):  # two sweep jobs
        assert want in lines, (want, lines)
    (sig,) = [line for line in lines if line.startswith("#SBATCH --signal=")]
    assert sig == f"#SBATCH --signal={signal.Signals(SlurmRequeue().signum).name[3:]}@120"
    assert any(line.startswith("srun ") for line in lines), lines
