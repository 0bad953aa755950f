"""Training speed on CPU, s/kimg: our Lightning StyleGAN2Module vs NVIDIA's loss + training loop.

Config: `conf/experiment/cpu_bench.yaml` (the trainer issue's fixed config: 64 px, channel_base 4096,
channel_max 256, z/w 256, 8 mapping layers, batch 8, R1 every 16 + path length every 4, style mixing
0.9, no augmentation, fp32). Ours runs under a real `pytorch_lightning.Trainer`, so the figure includes
Lightning's loop, the data fetch and the per-step logging. NVIDIA's runs through
`tools/nvidia_train_step.py` from the checkout in `NVIDIA_SG2ADA_DIR` (skipped when unset), starting
from the same weights and fed the same real batch.

Why interleaved per minibatch: the machine is shared, and load swings by several x within a minute.
After each of our minibatches a callback runs one NVIDIA minibatch, so both see the same load; a cycle
of 16 minibatches (the lcm of the two regularisation intervals) holds the same Greg/Dreg work for both,
and each cycle gives one s/kimg figure per implementation. We report the median over cycles, with the
1-minute load average around them. Each thread count runs in its own process with OMP_NUM_THREADS set
before torch starts (OpenMP threads spin-wait against other processes' work).

    NVIDIA_SG2ADA_DIR=/path/to/stylegan2-ada-pytorch .venv/bin/python bench/run.py --only train
    OMP_NUM_THREADS=1 NVIDIA_SG2ADA_DIR=... .venv/bin/python bench/bench_train.py --profile --threads 1
    (the second prints, for one cycle of each, seconds per phase and the top ops by self CPU time)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
CYCLE = 16  # minibatches per cycle: lcm(pl_interval 4, r1_interval 16)
THREADS = (1, 2)
CYCLES = int(os.environ.get("BENCH_TRAIN_CYCLES", "3"))
WARMUP = 2  # untimed minibatches first (allocator, Adam state); any 16 in a row then hold 4 Greg + 1 Dreg


def bench_config() -> dict:
    """model/train/augment sections of `train.yaml` + `experiment=cpu_bench`, as the trainer builds them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from stylegan_blend.app.config import register_config

    register_config()  # the groups' typed schemas and the resolvers
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=cpu_bench"])
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "train", "augment")}


def _setup(threads: int, nvidia_dir: str | None, module_cls=None, seed: int = 0):
    """(cfg, our module, NVIDIA's step or None, reals) with both starting from the same weights."""
    import torch

    sys.path.insert(0, str(ROOT))
    from stylegan_blend.training.module import StyleGAN2Module

    torch.set_num_threads(threads)
    pl.seed_everything(seed, verbose=False)
    cfg = bench_config()
    module = (module_cls or StyleGAN2Module)(cfg)
    nvidia = None
    if nvidia_dir:
        sys.path.insert(0, str(ROOT / "tools"))
        from nvidia_train_step import NvidiaTrainStep

        nvidia = NvidiaTrainStep(nvidia_dir, module.G.init_kwargs, module.D.init_kwargs, module.tcfg, init_from=module)
    res = module.G.img_resolution
    return cfg, module, nvidia, torch.rand(64, 3, res, res) * 2 - 1


def _fit(module, reals, batch: int, minibatches: int, callback) -> None:
    """A real Lightning Trainer over an in-memory loader of `minibatches` random batches."""
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    loader = DataLoader(TensorDataset(reals), batch_size=batch, drop_last=True,
                        sampler=RandomSampler(reals, replacement=True, num_samples=minibatches * batch))
    # limit_train_batches, not max_steps: with manual optimisation global_step counts optimizer steps.
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=minibatches, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback])
    trainer.fit(module, train_dataloaders=loader)


def measure(threads: int, cycles: int, warmup: int, nvidia_dir: str | None) -> dict:
    """Per-minibatch seconds for ours (and NVIDIA's), interleaved; runs in the current process."""
    import torch

    cfg, module, nvidia, reals = _setup(threads, nvidia_dir)
    batch, total = cfg["train"]["batch_size"], warmup + cycles * CYCLE
    timer = _Interleave(nvidia)
    _fit(module, reals, batch, total, timer)
    if len(timer.ours) != total:
        raise RuntimeError(f"timed {len(timer.ours)} minibatches, expected {total}")
    return dict(threads=threads, batch=batch, resolution=module.G.img_resolution, ours=timer.ours,
                nvidia=timer.nvidia, load=timer.load, warmup=warmup, torch_threads=torch.get_num_threads())


class _Interleave(pl.Callback):
    """Times each of our minibatches end to end (Lightning loop and data fetch included), then runs one
    NVIDIA minibatch on the same reals outside our timed span."""

    def __init__(self, nvidia_step):
        self.nvidia_step = nvidia_step
        self.ours, self.nvidia, self.load = [], [], []
        self._last = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ours.append(time.perf_counter() - self._last)
        if self.nvidia_step is not None:
            start = time.perf_counter()
            self.nvidia_step(batch[0])
            self.nvidia.append(time.perf_counter() - start)
        self.load.append(os.getloadavg()[0])
        self._last = time.perf_counter()


def records(m: dict) -> list[dict]:
    """Rows for bench/results.json: per implementation, the median s/kimg over cycles after the warm-up."""
    kimg_per_cycle = CYCLE * m["batch"] / 1000
    skip = m["warmup"]

    def per_cycle(seconds: list[float]) -> list[float]:
        timed = seconds[skip:]
        return [sum(timed[i:i + CYCLE]) / kimg_per_cycle for i in range(0, len(timed), CYCLE)]

    loads = m["load"][skip:]
    common = dict(config="cpu_bench", resolution=m["resolution"], batch=m["batch"], threads=m["threads"],
                  torch_threads=m["torch_threads"], cycles=len(per_cycle(m["ours"])), minibatches_per_cycle=CYCLE,
                  load_avg_min=round(min(loads), 2), load_avg_median=round(statistics.median(loads), 2),
                  load_avg_max=round(max(loads), 2))
    ours = per_cycle(m["ours"])
    rows = [dict(impl="ours", s_per_kimg=round(statistics.median(ours), 1), s_per_kimg_min=round(min(ours), 1),
                 s_per_kimg_cycles=[round(x, 1) for x in ours], **common)]
    if m["nvidia"]:
        theirs = per_cycle(m["nvidia"])
        rows.append(dict(impl="nvidia", s_per_kimg=round(statistics.median(theirs), 1),
                         s_per_kimg_min=round(min(theirs), 1), s_per_kimg_cycles=[round(x, 1) for x in theirs],
                         **common))
        ratios = [a / b for a, b in zip(ours, theirs)]
        rows[0].update(ratio_vs_nvidia=round(statistics.median(ratios), 3),
                       ratio_vs_nvidia_cycles=[round(r, 3) for r in ratios], target_ratio=0.8)
    return rows


def _phase_timed_module():
    """StyleGAN2Module that adds up wall time per phase: each phase ends with its optimizer `_step`."""
    from collections import defaultdict

    from stylegan_blend.training.module import StyleGAN2Module

    class PhaseTimed(StyleGAN2Module):
        phase_seconds = defaultdict(float)

        def training_step(self, batch, batch_idx):
            self._mark = time.perf_counter()
            super().training_step(batch, batch_idx)
            self._lap("Gema+log")

        def _step(self, phase, opt, loss, gain=1.0):
            done = super()._step(phase, opt, loss, gain)
            self._lap(phase)
            return done

        def _lap(self, name):
            now = time.perf_counter()
            self.phase_seconds[name] += now - self._mark
            self._mark = now

    return PhaseTimed


class _Profile(pl.Callback):
    """torch.profiler over minibatches [warmup, warmup + n), per-phase seconds reset at the start."""

    def __init__(self, warmup: int, n: int):
        import torch

        self.first, self.last = warmup, warmup + n - 1
        self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.first:
            pl_module.phase_seconds.clear()
            self.prof.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:
            self.prof.stop()


def profile(threads: int, nvidia_dir: str | None, warmup: int = WARMUP, top: int = 15) -> None:
    """Print where one cycle (16 minibatches) goes, per phase and per op, for ours then NVIDIA's.

    Run one after the other (a profiler cannot interleave), so compare shares more than seconds."""
    import torch

    cfg, module, nvidia, reals = _setup(threads, nvidia_dir, module_cls=_phase_timed_module())
    batch = cfg["train"]["batch_size"]
    kimg = CYCLE * batch / 1000
    prof = _Profile(warmup, CYCLE)
    _fit(module, reals, batch, warmup + CYCLE, prof)
    runs = [("ours", dict(module.phase_seconds), prof.prof)]
    if nvidia is not None:
        batches = reals[torch.randint(len(reals), ((warmup + CYCLE) * batch,))].split(batch)
        for real in batches[:warmup]:
            nvidia(real)
        nvidia.phase_seconds.clear()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as nv_prof:
            for real in batches[warmup:]:
                nvidia(real)
        runs.append(("nvidia", dict(nvidia.phase_seconds), nv_prof))
    for name, phases, p in runs:
        total = sum(phases.values())
        print(f"\n== {name}: {total / kimg:.1f} s/kimg over {CYCLE} minibatches, threads={threads}, "
              f"load {os.getloadavg()[0]:.2f}")
        for phase, seconds in phases.items():
            print(f"  {phase:10s} {seconds / kimg:8.1f} s/kimg  {100 * seconds / total:5.1f} %")
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def run() -> list[dict]:
    """One subprocess per thread count, OMP_NUM_THREADS set before torch starts; NVIDIA's code is timed
    only when NVIDIA_SG2ADA_DIR points at a checkout."""
    rows = []
    for threads in THREADS:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), "--cycles", str(CYCLES)],
                             env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        rows += records(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help="measure in this process and print the raw timings as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cycles", type=int, default=CYCLES)
    ap.add_argument("--profile", action="store_true", help="print per-phase and per-op time for one cycle of each")
    args = ap.parse_args()
    if args.profile:
        profile(args.threads, os.environ.get("NVIDIA_SG2ADA_DIR"))
    elif args.worker:
        print(json.dumps(measure(args.threads, args.cycles, WARMUP, os.environ.get("NVIDIA_SG2ADA_DIR"))))
    else:
        print(json.dumps(run(), indent=1))
