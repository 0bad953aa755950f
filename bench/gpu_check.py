"""One-shot GPU check: s/kimg of a training step per precision mode, NVIDIA's code side by side, one blend
cell's time and peak memory, appended to bench/results.json (run it through bench/gpu_check.sh).

Each figure runs in its own process (clean peak-memory counters, no cross-talk between modes): a real
Lightning Trainer over in-memory random reals, `--warmup` untimed minibatches, then `--minibatches` timed
ones (a multiple of 16 = lcm of the R1 and path-length intervals, so Greg/Dreg work is the same for every
mode), synchronised per minibatch. Modes (README "Precision"): gpu = 32-true + the networks' fp16 blocks
(NVIDIA's scheme), gpu_bf16 = bf16 autocast, fp32 = the fp16 blocks off (num_fp16_res=0). On the CPU the
gpu mode runs the fp16 blocks too (train.fp16_on_cpu): that is an emulation for checking, not a speed figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"gpu": ("32-true", []), "gpu_bf16": ("bf16-mixed", []),
         "fp32": ("32-true", ["model.G_kwargs.synthesis_kwargs.num_fp16_res=0", "model.D_kwargs.num_fp16_res=0"])}


def _cfg(config: str, batch: int, extra: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from stylegan_blend.app.config import register_config

    register_config()  # the groups' typed schemas and the resolvers
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={config}", f"train.batch_size={batch}", "augment=none", *extra])
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "train", "augment")}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)  # CPU: peak RSS (KiB -> GiB)


def train_worker(mode: str, args) -> dict:
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    sys.path.insert(0, str(ROOT))
    from stylegan_blend.training.module import StyleGAN2Module

    precision, extra = MODES[mode]
    if args.device == "cpu" and mode == "gpu":
        extra = extra + ["train.fp16_on_cpu=true"]
    pl.seed_everything(0, verbose=False)
    cfg = _cfg(args.config, args.batch, args.set + extra)
    module = StyleGAN2Module(cfg)
    res = module.G.img_resolution
    n = args.warmup + args.minibatches
    reals = torch.rand(4 * args.batch, 3, res, res) * 2 - 1
    loader = DataLoader(TensorDataset(reals), batch_size=args.batch, drop_last=True,
                        sampler=RandomSampler(reals, replacement=True, num_samples=n * args.batch))
    times = []

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            _sync(args.device)
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(args.device)
            times.append(time.perf_counter() - self.t)
            if batch_idx + 1 == args.warmup and args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()

    trainer = pl.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, precision=precision,
                         max_epochs=1, limit_train_batches=n, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()])
    trainer.fit(module, train_dataloaders=loader)
    timed = times[args.warmup:]
    return dict(impl="ours", mode=mode, precision=precision, s_per_kimg=round(sum(timed) / (len(timed) * args.batch
                                                                                            / 1000), 2),
                minibatches=len(timed), peak_mem_gb=_peak_gb(args.device))


def nvidia_worker(args) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from nvidia_train_step import NvidiaTrainStep

    torch.manual_seed(0)
    cfg = _cfg(args.config, args.batch, args.set)
    G_kwargs, D_kwargs = cfg["model"]["G_kwargs"], cfg["model"]["D_kwargs"]
    step = NvidiaTrainStep(os.environ["NVIDIA_SG2ADA_DIR"], G_kwargs, D_kwargs, cfg["train"], device=args.device)
    res = G_kwargs["img_resolution"]
    reals = torch.rand(args.batch, 3, res, res, device=args.device) * 2 - 1
    times = []
    for i in range(args.warmup + args.minibatches):
        if i == args.warmup and args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(args.device)
        t = time.perf_counter()
        step(reals)
        _sync(args.device)
        times.append(time.perf_counter() - t)
    timed = times[args.warmup:]
    return dict(impl="nvidia", mode="gpu", precision="fp32 + fp16 blocks",
                s_per_kimg=round(sum(timed) / (len(timed) * args.batch / 1000), 2), minibatches=len(timed),
                peak_mem_gb=_peak_gb(args.device))


def blend_worker(args) -> dict:
    """One blended cell as the checkpoint callback scores it: build the blend, generate num_gen images,
    features (randcnn proxy; Inception weights are not shipped), distances."""
    import torch

    sys.path.insert(0, str(ROOT))
    from stylegan_blend.blending import blend_generators, direction_pair
    from stylegan_blend.evaluation import evaluate_generator, make_extractor
    from stylegan_blend.networks import Generator

    torch.manual_seed(0)
    G_kwargs = _cfg(args.config, args.batch, args.set)["model"]["G_kwargs"]
    base, tuned = (Generator(**G_kwargs).eval().to(args.device) for _ in range(2))
    extractor = make_extractor("randcnn", device=args.device)
    res = G_kwargs["img_resolution"]
    ref = extractor((torch.rand(256, res, res, 3) * 255).to(torch.uint8))
    swap = max(8, res // 8)
    _sync(args.device)
    t = time.perf_counter()
    G = blend_generators(*direction_pair(base, tuned, "low_base"), swap)
    scores = evaluate_generator(G, ref, extractor, args.blend_num_gen, batch_size=args.batch, device=args.device)
    _sync(args.device)
    return dict(impl="ours", mode="blend_cell", swap_res=swap, num_gen=args.blend_num_gen, extractor="randcnn",
                cell_s=round(time.perf_counter() - t, 2), ms_per_image=round(1000 * (time.perf_counter() - t)
                                                                             / args.blend_num_gen, 2),
                finite=all(v == v for v in scores.values()), peak_mem_gb=_peak_gb(args.device))


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--config", default="paper256", help="model preset (conf/model)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--minibatches", type=int, default=32, help="timed minibatches (a multiple of 16)")
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--modes", default="gpu,gpu_bf16,fp32", help="comma-separated: " + ",".join(MODES))
    ap.add_argument("--blend-num-gen", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for every figure (the fp32 mode still turns the fp16 blocks off)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        fn = {"nvidia": nvidia_worker, "blend": blend_worker}.get(args.worker)
        print("RESULT " + json.dumps(fn(args) if fn else train_worker(args.worker, args)))
        return 0
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        print(f"error: --modes {','.join(unknown)}: expected some of {','.join(MODES)}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device; use bench/gpu_check.sh --cpu", file=sys.stderr)
            return 2
    workers = modes + (["nvidia"] if os.environ.get("NVIDIA_SG2ADA_DIR") else []) + ["blend"]
    sys.path.insert(0, str(ROOT / "bench"))
    from run import append_results, machine_info  # noqa: PLC0415

    common = dict(figure="gpu_check", config=args.config, batch=args.batch, device=_device_name(args.device),
                  machine=machine_info())
    failed = 0
    for w in workers:
        argv_w = [a for a in (argv if argv is not None else sys.argv[1:])] + ["--worker", w]
        start = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, *argv_w], capture_output=True, text=True)
        lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
        if r.returncode or not lines:
            failed += 1
            tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"{w}: failed ({tail})", file=sys.stderr)
            continue
        row = dict(json.loads(lines[-1][7:]), wall_s=round(time.perf_counter() - start, 1), **common)
        append_results([row], args.out)  # one row at a time: a run cut short keeps what it measured
        print(f"{w:9s} " + ", ".join(f"{k}={row[k]}" for k in ("s_per_kimg", "cell_s", "peak_mem_gb", "wall_s")
                                     if k in row))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
