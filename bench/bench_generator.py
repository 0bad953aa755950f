"""Generator inference speed on CPU (fp32): s/img and images/s, ours vs NVIDIA's code.

Configs: `tiny64` (64 px, 16-64 channels, 2 mapping layers) and `paper256` (NVIDIA's FFHQ-256 network).
Batches 1 and 8; modulated conv `fused` (grouped conv with per-sample weights), `non-fused` (shared
conv, activations scaled) and, for ours, `auto` (what G(z) picks by default: fused for one sample,
non-fused for CPU batches). NVIDIA's networks run from the checkout in NVIDIA_SG2ADA_DIR (skipped when
unset) with force_fp32=True (its num_fp16_res would otherwise run fp16 on the CPU), loaded with the
same random weights as ours; each record for ours also carries max |ours - NVIDIA| over the batch.

The machine is shared, so every repetition times all variants back to back (same load for each) and
records keep the min (the least-disturbed run) and the median. Thread counts (BENCH_G_THREADS, default
1 and all cores) are separate records: under load from other processes one thread can beat two, since
each OpenMP region waits for its slowest thread.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import torch

from stylegan_blend.networks import PAPER256_G_KWARGS, Generator

CONFIGS = {
    "tiny64": dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=64, img_channels=3,
                   mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=1024, channel_max=64)),
    "paper256": PAPER256_G_KWARGS,
}
BATCHES = (1, 8)
REPS = int(os.environ.get("BENCH_G_REPS", "3"))
THREADS = tuple(int(t) for t in os.environ.get("BENCH_G_THREADS", f"1,{os.cpu_count()}").split(","))


def nvidia_generator_class():
    nvidia_dir = os.environ.get("NVIDIA_SG2ADA_DIR")
    if not nvidia_dir:
        return None
    if not os.path.isfile(os.path.join(nvidia_dir, "training", "networks.py")):
        raise SystemExit(f"error: NVIDIA_SG2ADA_DIR={nvidia_dir} has no training/networks.py; "
                         "expected a stylegan2-ada-pytorch checkout")
    sys.path.insert(0, nvidia_dir)
    from training.networks import Generator as NvidiaGenerator  # noqa: PLC0415

    return NvidiaGenerator


def variants(ours, nvidia) -> dict[tuple[str, str], callable]:
    """(impl, modconv) -> fn(z) producing the image batch."""
    out = {
        ("ours", "auto"): lambda z: ours(z, None, noise_mode="const"),
        ("ours", "fused"): lambda z: ours(z, None, noise_mode="const", fused_modconv=True),
        ("ours", "non-fused"): lambda z: ours(z, None, noise_mode="const", fused_modconv=False),
    }
    if nvidia is not None:
        out[("nvidia", "fused")] = lambda z: nvidia(z, None, noise_mode="const", force_fp32=True, fused_modconv=True)
        out[("nvidia", "non-fused")] = lambda z: nvidia(z, None, noise_mode="const", force_fp32=True,
                                                        fused_modconv=False)
    return out


@torch.inference_mode()
def bench_config(name: str, kwargs: dict, nvidia_cls) -> list[dict]:
    torch.manual_seed(0)
    ours = Generator(**kwargs).eval()
    nvidia = None
    if nvidia_cls is not None:
        nvidia = nvidia_cls(**kwargs).eval()
        ours.load_state_dict(nvidia.state_dict())
    records = []
    for batch in BATCHES:
        z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, ours.z_dim) for s in range(batch)]))
        fns = variants(ours, nvidia)
        outputs = {key: fn(z) for key, fn in fns.items()}  # warm-up (oneDNN kernel selection, caches)
        times = {key: [] for key in fns}
        loads = []
        for _ in range(REPS):
            for key, fn in fns.items():
                start = time.perf_counter()
                fn(z)
                times[key].append((time.perf_counter() - start) / batch)
            loads.append(os.getloadavg()[0])
        for (impl, modconv), t in times.items():
            rec = dict(config=name, resolution=ours.img_resolution, impl=impl, modconv=modconv, batch=batch,
                       threads=torch.get_num_threads(), dtype="float32", device="cpu", s_per_img_min=round(min(t), 4),
                       s_per_img_median=round(statistics.median(t), 4), img_per_s=round(1 / min(t), 3),
                       reps=REPS, load_avg_1m_median=round(statistics.median(loads), 2))
            if impl == "ours" and nvidia is not None:
                diff = (outputs[(impl, modconv)] - outputs[("nvidia", "fused")]).abs().max().item()
                rec["max_abs_diff_vs_nvidia"] = float(f"{diff:.3g}")
            records.append(rec)
    return records


def run() -> list[dict]:
    nvidia_cls = nvidia_generator_class()
    if nvidia_cls is None:
        print("NVIDIA_SG2ADA_DIR not set: timing our code only", file=sys.stderr)
    records = []
    default_threads = torch.get_num_threads()
    try:
        for threads in THREADS:
            torch.set_num_threads(threads)
            for name, kwargs in CONFIGS.items():
                records += bench_config(name, kwargs, nvidia_cls)
    finally:
        torch.set_num_threads(default_threads)
    return records
