"""Blend-and-score costs on CPU: what one (checkpoint x swap) cell of the training grid costs.

- `blend_build`: `blend_generators` for two paper256 generators at 256 px (hard swap and a soft one);
  target < 1 s, so building a cell is never the bottleneck.
- `cell`: one cell at the tiny config (`conf/model/tiny.yaml`, 32 px) with num_gen images scored with the
  randcnn proxy extractor, split as `BlendScorer.score_checkpoint` spends it: blend build, generation
  (`generate_images` at the scorer's batch size), feature extraction, distances (FD + KID against the
  reference features), the fixed-seed sample strip.
- `reference_features`: a synthetic prepared folder (`write_domain`) featurised once (cache miss), then
  read back from the on-disk cache (hit; the content hash of every file is still computed).

Each thread count runs in its own process with OMP_NUM_THREADS set before torch starts; every figure is
the median over repetitions, with the 1-minute load average sampled around them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = (1, 2)
REPS = int(os.environ.get("BENCH_BLEND_REPS", "3"))
NUM_GEN = int(os.environ.get("BENCH_BLEND_NUM_GEN", "1000"))
NUM_REF = 500  # synthetic reference images at 32 px
SCORER_BATCH = 32  # BlendScorer's default batch size (conf/metrics/proxy.yaml)


def tiny_kwargs() -> dict:
    """G kwargs of `conf/model/tiny.yaml` as the trainer composes them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from stylegan_blend.app.config import register_config

    register_config()  # the groups' typed schemas and the resolvers
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny"])
    return OmegaConf.to_container(cfg.model.G_kwargs, resolve=True)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _median_row(samples: list[dict], loads: list[float], **fields) -> dict:
    row = dict(fields)
    for key in samples[0]:
        row[key] = round(statistics.median(s[key] for s in samples), 4)
    row.update(reps=len(samples), load_avg_min=round(min(loads), 2), load_avg_max=round(max(loads), 2))
    return row


def bench_blend_build(reps: int) -> list[dict]:
    import torch

    from stylegan_blend.blending import blend_generators
    from stylegan_blend.networks import PAPER256_G_KWARGS, Generator

    torch.manual_seed(0)
    low, high = Generator(**PAPER256_G_KWARGS).eval(), Generator(**PAPER256_G_KWARGS).eval()
    rows = []
    for swap_res, width in ((32, 0.0), (32, 0.5)):
        samples, loads = [], []
        for _ in range(reps):
            loads.append(os.getloadavg()[0])
            seconds, _ = _timed(lambda: blend_generators(low, high, swap_res, width=width))
            samples.append({"s": seconds})
        rows.append(_median_row(samples, loads, figure="blend_build", config="paper256", resolution=256,
                                swap_res=swap_res, width=width, target_s=1.0))
    return rows


def bench_reference(data_dir: Path, reps: int) -> tuple[list[dict], object]:
    from stylegan_blend.evaluation import make_extractor, reference_features

    extractor = make_extractor("randcnn")
    samples, loads, feats = [], [], None
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as cache:
            loads.append(os.getloadavg()[0])
            miss, feats = _timed(lambda: reference_features(extractor, data_dir, 32, cache_dir=cache, split="all"))
            hit, again = _timed(lambda: reference_features(extractor, data_dir, 32, cache_dir=cache, split="all"))
            if again.shape != feats.shape:
                raise RuntimeError("cache hit returned different features")
            samples.append({"miss_s": miss, "hit_s": hit})
    row = _median_row(samples, loads, figure="reference_features", extractor="randcnn", resolution=32,
                      n_ref=len(feats))
    row["miss_over_hit"] = round(row["miss_s"] / row["hit_s"], 1)
    return [row], feats


def bench_cell(ref_feats, reps: int, num_gen: int) -> list[dict]:
    """One blended cell, split the way BlendScorer.score_checkpoint spends it (same calls, timed apart)."""
    import numpy as np
    import torch

    from stylegan_blend.blending import blend_generators, direction_pair
    from stylegan_blend.evaluation import evaluate_generator, make_extractor, score
    from stylegan_blend.evaluation.blend_scorer import BlendScorer
    from stylegan_blend.networks import Generator
    from stylegan_blend.networks.sampling import generate_images

    torch.manual_seed(0)
    kwargs = tiny_kwargs()
    base, tuned = Generator(**kwargs).eval(), Generator(**kwargs).eval()
    extractor = make_extractor("randcnn")
    seeds = list(range(num_gen))
    chunk = max(SCORER_BATCH, extractor.batch_size)  # generated_features' chunking
    samples, loads = [], []
    with tempfile.TemporaryDirectory() as run_dir:
        scorer = BlendScorer(run_dir=Path(run_dir), base_path="", data_dir="", resolution=32, swap_res=[16])
        for _ in range(reps):
            loads.append(os.getloadavg()[0])
            build, G = _timed(lambda: blend_generators(*direction_pair(base, tuned, "low_base"), 16))
            gen = feat = 0.0
            feats = []
            for i in range(0, num_gen, chunk):
                dt, imgs = _timed(lambda: generate_images(G, seeds[i:i + chunk], batch_size=SCORER_BATCH))
                gen += dt
                dt, f = _timed(lambda: extractor(imgs))
                feat += dt
                feats.append(f)
            dist, scores = _timed(lambda: score(np.concatenate(feats), ref_feats, extractor))
            strip, _ = _timed(lambda: scorer.save_samples(G, 1, "swap16_low_base"))
            total, check = _timed(lambda: evaluate_generator(G, ref_feats, extractor, num_gen,
                                                              batch_size=SCORER_BATCH))
            if check != scores:
                raise RuntimeError(f"split timing scored {scores}, evaluate_generator {check}")
            samples.append({"blend_s": build, "generate_s": gen, "features_s": feat, "distance_s": dist,
                            "samples_s": strip, "cell_s": build + gen + feat + dist + strip,
                            "evaluate_generator_s": total})
    row = _median_row(samples, loads, figure="cell", config="tiny", resolution=32, swap_res=16,
                      extractor="randcnn", num_gen=num_gen, n_ref=len(ref_feats), batch=SCORER_BATCH)
    row["ms_per_image"] = round(1000 * row["cell_s"] / num_gen, 3)
    return [row]


def measure(threads: int, reps: int, num_gen: int) -> list[dict]:
    """All blend figures in the current process."""
    import torch

    from stylegan_blend.data.synthetic import write_domain

    torch.set_num_threads(threads)
    rows = bench_blend_build(reps)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "toon"
        write_domain(data_dir, "toon", NUM_REF, 32)
        ref_rows, ref_feats = bench_reference(data_dir, reps)
        rows += ref_rows + bench_cell(ref_feats, reps, num_gen)
    for r in rows:
        r.update(threads=threads, torch_threads=torch.get_num_threads())
    return rows


def run() -> list[dict]:
    """One subprocess per thread count, OMP_NUM_THREADS set before torch starts."""
    rows = []
    for threads in THREADS:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), "--reps", str(REPS),
                              "--num-gen", str(NUM_GEN)], env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE,
                             text=True)
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help="measure in this process and print JSON rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=REPS)
    ap.add_argument("--num-gen", type=int, default=NUM_GEN)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        print(json.dumps(measure(args.threads, args.reps, args.num_gen)))
    else:
        print(json.dumps(run(), indent=1))
