"""SLURM preemption / time limit: SLURM sends SIGUSR1 (`--signal=USR1@120`, the cluster preset); the run saves its
state at the end of the current minibatch, asks SLURM to requeue the job, and stops. The requeued job re-runs the
same command, and `train` resumes from that checkpoint (`SLURM_RESTART_COUNT` > 0). A request seen in an epoch's
last minibatch waits for the next one: Lightning mis-counts a restart from a checkpoint taken at that batch end.

Why not Lightning's own SIGUSR1 handler: it saves inside the signal handler, i.e. in the middle of a minibatch (G
stepped, D not yet), and every rank saves at whatever point the signal found it, so ranks can meet in different
collectives. Here the request is all-reduced at each minibatch end, so all ranks save the same completed minibatch.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytorch_lightning as pl
import torch

from ...errors import Terminated
from ...run.lifecycle import next_hpc_checkpoint


class Requeued(Terminated):
    """The run stopped for a SLURM requeue after saving its state; the scheduler restarts it."""


class SlurmRequeue(pl.Callback):
    def __init__(self, signum: int = signal.SIGUSR1):
        self.signum = signum
        self.requested = False
        self._previous = None

    def _on_signal(self, signum, frame) -> None:
        self.requested = True  # acted on at the end of the minibatch, on every rank together

    def setup(self, trainer, pl_module, stage: str) -> None:
        # before Lightning registers its own handlers: it then leaves SIGUSR1 to this one
        self._previous = signal.signal(self.signum, self._on_signal)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        requested = self.requested
        if trainer.world_size > 1:  # SLURM may signal one task before the others
            flag = torch.tensor(float(requested), device=pl_module.device)
            requested = bool(trainer.strategy.reduce(flag, reduce_op="sum"))
        if not requested:
            return
        self.requested = True  # on every rank now
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # an epoch's last minibatch: Lightning cannot resume a checkpoint taken here, act after the next
        path = trainer.strategy.broadcast(next_hpc_checkpoint(Path(trainer.default_root_dir)), src=0)  # one name for all
        pl_module.mid_epoch_save = True  # the RNG state is restored at the next minibatch, not at load
        try:
            trainer.save_checkpoint(path)
        finally:
            pl_module.mid_epoch_save = False
        note = "requeue not asked (not rank 0)"
        if trainer.is_global_zero:
            note = request_requeue()
        raise Requeued(f"SLURM requeue signal: saved {path} after minibatch {pl_module.minibatch} (kimg "
                       f"{pl_module.kimg:.2f}); {note}")


def request_requeue() -> str:
    """`scontrol requeue` this job (or array task); returns what happened, in words."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return "not under SLURM: resume it with ckpt_path=last"
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"scontrol requeue {job} failed ({e}); resubmit the job to resume"
    if done.returncode:
        return f"scontrol requeue {job} failed ({(done.stderr or '').strip()[:160]}); resubmit the job to resume"
    return f"job {job} requeued; it resumes from this checkpoint"
