"""Test-wide settings: one compute thread per process.

Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine OpenMP threads
spin-wait against each other (a 32 px forward pass went from 21 ms to 1.2 s). `make test` also sets
OMP_NUM_THREADS=1 so subprocesses started by tests inherit it.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)
