"""Fine-tune quality parity: the demo's fine-tune run by our trainer and by NVIDIA's own training_loop(), scored alike.

From the demo's base (`experiments/demo/base.pt`) on the demo's toon set (made by `experiments/demo/demo.py`'s `make_data`), with
the demo's settings as `stylegan-blend-train experiment=demo` composes them from `conf/experiment/demo.yaml` (so the
benchmark follows whatever the demo becomes), once per data-order seed s in SEEDS:

  ours    `python -m stylegan_blend.train experiment=demo seed=s ...`: the real Hydra app and Lightning module as the
          demo runs it, blend scoring off (`callbacks.blend_eval=false`); s seeds its data order, z and augmentation.
  nvidia  NVIDIA's `training/training_loop.py` (checkout in NVIDIA_SG2ADA_DIR; without one the benchmark is skipped),
          run on the CPU from the same start by `tools/nvidia_train_step.py` (its --resume path): `random_seed=s` orders
          its data, a torch generator seeded with s makes every other draw (plain float32 normals, not a fixture's grid).

Both see the train split of the toon set for the same number of minibatches: the demo's epochs x (train images //
batch), as our loader drops the last partial batch. Each final G_ema is scored with the project's evaluation code: the
demo's extractor (`metrics.extractor`, randcnn), generated seeds 0..N-1 with N = `metrics.num_gen`, Fréchet and kernel
distance to the features of the toon train split (the set both fine-tunes saw; the demo scores against the val split
only when it has >= `metrics.style_min_val` images, and its 32 do not). The summary record asks whether ours lies within
NVIDIA's run-to-run spread: our mean inside NVIDIA's min-max, and the difference of means over its pooled standard error
(Student's t, equal variances, with its two-sided p). The side-by-side sample sheet (same seeds, after the same kimg)
goes to docs/finetune_parity.png.

How each of our settings reaches NVIDIA's loop (its train.py would pass the same):
  batch, lr, betas, eps, R1 gamma + interval, path length weight/interval/decay/shrink, style mixing: the same values
    (the lazy-regularisation Adam correction is applied by NVIDIA's loop itself);
  ema_kimg null -> batch * 10 / 32 (train.py's auto cfg); ema_rampup null -> None, ada_kimg null -> 100 (train.py's
    --resume); r1_gamma null -> 0.0002 * res^2 / batch (auto cfg); augment ada with preset P -> AugmentPipe with
    train.py's augpipe_specs[P], augment_p = initial_p, ada_target / ada_interval; target null -> fixed p; kind none ->
    no pipe; data.mirror -> the dataset's xflip (NVIDIA adds a mirrored copy of every image, ours flips each image with
    probability 0.5 per epoch: the same distribution); freeze_d -> D's block_kwargs.freeze_layers; mbstd_group_size ->
    its epilogue_kwargs;
  train.freeze_noise: NVIDIA has no such option. Its G optimizer gets every G parameter except the per-layer noise
    strengths (the only 0-dim parameters NVIDIA's Generator has): their gradient is computed and never applied, as ours
    leaves them out of its optimizer.
  augment.kind diffaug has no NVIDIA counterpart: an error.

Jobs run as subprocesses, `JOBS` at a time with `THREADS` compute threads each, ours and NVIDIA's of the same seed side
by side so both see the same machine load; wall and CPU seconds are measured around each subprocess (interpreter start
and imports included on both sides).

    NVIDIA_SG2ADA_DIR=/path/to/stylegan2-ada-pytorch nice .venv/bin/python bench/run.py --only finetune
    BENCH_FINETUNE_SEEDS=0,1,2 BENCH_FINETUNE_JOBS=1 ...   (defaults: 0,1,2,3,4 and 2)
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench" / "finetune"
SHEET = ROOT / "docs" / "finetune_parity.png"
SEEDS = tuple(int(s) for s in os.environ.get("BENCH_FINETUNE_SEEDS", "0,1,2,3,4").split(","))
JOBS = int(os.environ.get("BENCH_FINETUNE_JOBS", "2"))
THREADS = int(os.environ.get("BENCH_FINETUNE_THREADS", "1"))
EPOCHS = os.environ.get("BENCH_FINETUNE_EPOCHS")  # shorter than the demo: a trial run of the benchmark's plumbing
DEMO_PHOTO, DEMO_TOON = 2000, 300  # experiments/demo/demo.py's --photo / --toon defaults
SHEET_SEEDS = range(8)  # sample seeds (columns)
SHEET_RUNS = 3  # data seeds per implementation shown (rows); all are scored
NVIDIA_ENV = "NVIDIA_SG2ADA_DIR"
# NVIDIA's train.py for a run that resumes a pretrained network (--resume), and its auto cfg's EMA / R1 heuristics
RESUME_ADA_KIMG, RESUME_EMA_RAMPUP = 100.0, None


def demo_config() -> dict:
    """The sections of `train.yaml` + `experiment=demo` the fine-tune and its scoring use, as the trainer composes them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo"])
    return {k: OmegaConf.to_container(cfg[k], resolve=True)
            for k in ("model", "train", "augment", "data", "trainer", "metrics")}


def nvidia_settings(cfg: dict, G_kwargs: dict, D_kwargs: dict, augpipe_specs: dict) -> dict:
    """NVIDIA training_loop() arguments for our composed config: (loop_kwargs, G_kwargs, D_kwargs, xflip), in the
    loop's words, as NVIDIA's train.py would pass them for a --resume run (the module docstring lists each mapping)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from make_nvidia_fixtures import nvidia_loop_kwargs

    t, a = dict(cfg["train"]), dict(cfg["augment"])
    batch, res = int(t["batch_size"]), int(G_kwargs["img_resolution"])
    if t.get("r1_gamma") is None:
        t["r1_gamma"] = 0.0002 * res ** 2 / batch
    if t.get("ema_kimg") is None:
        t["ema_kimg"] = batch * 10 / 32
    t["ema_rampup"] = RESUME_EMA_RAMPUP if t.get("ema_rampup") is None else (float(t["ema_rampup"]) or None)
    kind = a.get("kind", "none")
    if kind == "ada":
        augpipe = augpipe_specs[a.get("preset", "bgc")]
        a = dict(a, ada_kimg=RESUME_ADA_KIMG if a.get("ada_kimg") is None else float(a["ada_kimg"]))
        a.setdefault("target", 0.6)
    elif kind == "none":
        augpipe, a = {}, dict(initial_p=0.0, target=None)
    else:
        raise SystemExit(f"error: augment.kind={kind!r} has no counterpart in NVIDIA's loop; the benchmark takes ada or "
                         f"none")
    loop = nvidia_loop_kwargs(t, a, augpipe)
    if kind == "none":
        loop["augment_kwargs"] = None
    if t.get("freeze_noise"):
        loop["G_opt_kwargs"]["class_name"] = f"{KEEP_NOISE_MODULE}.AdamKeepNoise"
    common = ("c_dim", "img_resolution", "img_channels")  # the loop takes these from the training set
    G_kw = {k: v for k, v in G_kwargs.items() if k not in common}
    D_kw = copy.deepcopy({k: v for k, v in D_kwargs.items() if k not in common})
    if t.get("freeze_d"):
        D_kw.setdefault("block_kwargs", {})["freeze_layers"] = int(t["freeze_d"])
    if t.get("mbstd_group_size") is not None:
        D_kw.setdefault("epilogue_kwargs", {})["mbstd_group_size"] = int(t["mbstd_group_size"])
    return dict(loop_kwargs=loop, G_kwargs=G_kw, D_kwargs=D_kw, xflip=bool(cfg["data"].get("mirror", False)))


KEEP_NOISE_MODULE = "_bench_finetune_optim"


def _register_keep_noise() -> None:
    """Make `_bench_finetune_optim.AdamKeepNoise` constructible by name in NVIDIA's loop (dnnlib imports by name)."""
    import types

    import torch

    class AdamKeepNoise(torch.optim.Adam):
        """Adam over all but the 0-dim parameters: in NVIDIA's Generator those are exactly the noise strengths."""

        def __init__(self, params, **kwargs):
            super().__init__([p for p in params if p.ndim > 0], **kwargs)

    sys.modules[KEEP_NOISE_MODULE] = types.SimpleNamespace(AdamKeepNoise=AdamKeepNoise)


# ------------------------------------------------------------------------------------------------ statistics
def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (n - 1), min, max and n of one implementation's runs."""
    return dict(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else float("nan"),
                min=min(values), max=max(values), n=len(values))


def compare(ours: list[float], nvidia: list[float]) -> dict:
    """Is ours within NVIDIA's run-to-run spread? Both spreads; our mean inside NVIDIA's [min, max] and how many of our
    runs are; the difference of means over its pooled standard error sqrt(s_p^2 (1/n1 + 1/n2)) (Student's t with
    n1 + n2 - 2 degrees of freedom: equal variances is the hypothesis under test) and its two-sided p."""
    from scipy import stats

    a, b = spread(ours), spread(nvidia)
    dof = a["n"] + b["n"] - 2
    pooled_var = ((a["n"] - 1) * a["std"] ** 2 + (b["n"] - 1) * b["std"] ** 2) / dof if dof > 0 else float("nan")
    se = math.sqrt(pooled_var * (1 / a["n"] + 1 / b["n"]))
    diff = a["mean"] - b["mean"]
    t = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return dict({f"ours_{k}": v for k, v in a.items()}, **{f"nvidia_{k}": v for k, v in b.items()},
                diff_of_means=diff, pooled_se=se, diff_over_pooled_se=t,
                p_value=float(2 * stats.t.sf(abs(t), dof)) if dof > 0 else float("nan"),
                ours_mean_within_nvidia_range=b["min"] <= a["mean"] <= b["max"],
                ours_runs_within_nvidia_range=sum(b["min"] <= v <= b["max"] for v in ours))


def summary_records(runs: list[dict]) -> list[dict]:
    """Quality (kd, fd) and ADA's final p: one record each comparing the `ours` and `nvidia` runs; time: mean wall and
    CPU seconds per run and ours / NVIDIA's ratio (a speed figure, not a parity test). Rounded for the results file."""
    by = {impl: [r for r in runs if r["impl"] == impl] for impl in ("ours", "nvidia")}
    if min(len(v) for v in by.values()) < 2:
        return []
    out = [dict(impl="ours_vs_nvidia", metric=metric,
                **{k: _round(v) for k, v in compare([r[metric] for r in by["ours"]],
                                                    [r[metric] for r in by["nvidia"]]).items()})
           for metric in ("kd", "fd", "ada_p")]
    means = {f"{impl}_{t}_mean": statistics.fmean(r[t] for r in rows) for impl, rows in by.items()
             for t in ("wall_s", "cpu_s")}
    out.append(dict(impl="ours_vs_nvidia", metric="time", **{k: _round(v) for k, v in means.items()},
                    cpu_ratio=_round(means["ours_cpu_s_mean"] / means["nvidia_cpu_s_mean"]),
                    wall_ratio=_round(means["ours_wall_s_mean"] / means["nvidia_wall_s_mean"])))
    return out


def _round(v):
    return float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v


# ------------------------------------------------------------------------------------------------ the runs
def prepare_data() -> Path:
    """The demo's synthetic toon set, made by the demo's own data step (once; reused while its manifest exists)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", ROOT / "experiments" / "demo" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    _, toon = demo.make_data(OUT, DEMO_PHOTO, DEMO_TOON)
    return toon


def _env() -> dict:
    n = str(THREADS)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
                OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), WANDB_MODE="offline", WANDB_SILENT="true")


def _timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall s, CPU s of the child and its waited-for descendants); a failure names the log."""
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); see {log}")
    return wall, usage.ru_utime + usage.ru_stime


def run_ours(seed: int, base: Path, toon: Path, epochs: int, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "stylegan_blend.train", "experiment=demo", f"model.init_from={base}",
           f"data.path={toon}", f"paths.output_dir={run_dir}", f"trainer.max_epochs={epochs}", f"seed={seed}",
           "callbacks.blend_eval=false", "logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
    wall, cpu = _timed(cmd, run_dir.parent / f"{run_dir.name}.log")
    stats = (run_dir / "stats.jsonl").read_text().splitlines()
    return dict(network=str(sorted((run_dir / "networks").glob("epoch=*.pt"))[-1]), wall_s=wall, cpu_s=cpu,
                ada_p=json.loads(stats[-1]).get("ada_p") if stats else None)


def run_nvidia(seed: int, settings: dict, run_dir: Path) -> dict:
    run_dir.mkdir(parents=True)
    (run_dir / "settings.json").write_text(json.dumps(dict(settings, seed=seed), indent=1))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(run_dir)]
    wall, cpu = _timed(cmd, run_dir.parent / f"{run_dir.name}.log")
    return dict(json.loads((run_dir / "result.json").read_text()), wall_s=wall, cpu_s=cpu)


def nvidia_worker(run_dir: Path) -> None:
    """One NVIDIA fine-tune in this process, as `settings.json` in `run_dir` says; writes `result.json`."""
    import numpy as np
    from PIL import Image

    s = json.loads((run_dir / "settings.json").read_text())
    sys.path.insert(0, str(ROOT / "tools"))
    from nvidia_train_step import DrawLog, final_snapshot, import_nvidia, run_training_loop

    from stylegan_blend.checkpoints import load_network
    from stylegan_blend.evaluation import list_images

    class Draws(DrawLog):
        NORMAL_SCALE = None  # NVIDIA's own float32 normals: this run is measured, not replayed

    warnings.filterwarnings("ignore", message="grid_sample_gradfix not supported")  # once per augment call on CPU
    _register_keep_noise()
    networks, _, _ = import_nvidia(s["nvidia_dir"])
    base = load_network(s["base"])
    G = networks.Generator(**base.G_ema.init_kwargs).train().requires_grad_(False)
    D = networks.Discriminator(**dict(base.D.init_kwargs, **s["D_kwargs"])).train().requires_grad_(False)
    G.load_state_dict(base.G_ema.state_dict())  # the demo's base stores G_ema only: ours starts G from it too
    D.load_state_dict(base.D.state_dict())
    if s["loop_kwargs"]["G_opt_kwargs"]["class_name"].startswith(KEEP_NOISE_MODULE):
        kept_out = [n for n, p in G.named_parameters() if p.ndim == 0]
        assert kept_out and all(n.endswith("noise_strength") for n in kept_out), kept_out
    images = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
                       for p in list_images(s["data"], "train")])
    run = run_training_loop(s["nvidia_dir"], run_dir / "loop", images, s["G_kwargs"], s["D_kwargs"], s["loop_kwargs"],
                            dict(G=G, D=D, G_ema=copy.deepcopy(G)), Draws(s["seed"]), s["minibatches"],
                            random_seed=s["seed"], xflip=s["xflip"])
    (run_dir / "result.json").write_text(json.dumps(dict(network=str(final_snapshot(run_dir / "loop")), ada_p=run["p"])))


def score(runs: list[dict], base: Path, toon: Path, cfg: dict) -> dict:
    """kd/fd of every final G_ema and of the base against the toon train split (same extractor, seeds and N)."""
    from stylegan_blend.checkpoints import load_network
    from stylegan_blend.evaluation import evaluate_generator, make_extractor, reference_features

    m = cfg["metrics"]
    extractor = make_extractor(m["extractor"], inception_path=m.get("inception_path"))
    ref = reference_features(extractor, toon, cfg["model"]["resolution"], split="train")
    fd_name, kd_name = extractor.metric_names
    common = dict(extractor=extractor.name, num_gen=int(m["num_gen"]), n_ref=len(ref), reference="toon train split")
    base_row = dict(impl="base", network=str(base))
    for r in (*runs, base_row):
        s = evaluate_generator(load_network(r["network"]).G_ema, ref, extractor, int(m["num_gen"]))
        r.update(kd=s[kd_name], fd=s[fd_name], **common)
    return base_row


def sheet(runs: list[dict], base_row: dict, toon: Path, kimg: float) -> Path:
    """Rows: target images, the base, then ours and NVIDIA's for the first SHEET_RUNS data seeds; columns: the same
    sample seeds. Images come from the `generate` command (NVIDIA's seed convention), so any row can be redone by hand."""
    import tempfile

    import numpy as np
    from PIL import Image

    from stylegan_blend.evaluation import list_images
    from stylegan_blend.reporting.sheet import comparison_sheet, save_sheet

    seeds = f"{SHEET_SEEDS[0]}-{SHEET_SEEDS[-1]}"
    shown = sorted(SEEDS)[:SHEET_RUNS]
    picked = [r for impl in ("ours", "nvidia") for r in sorted(runs, key=lambda r: r["seed"])
              if r["impl"] == impl and r["seed"] in shown]
    rows = [[np.asarray(Image.open(p).convert("RGB")) for p in list_images(toon, "train")[:len(SHEET_SEEDS)]]]
    labels = ["toon set\n(train)"]
    names = {"base": "base", "ours": "ours", "nvidia": "NVIDIA"}
    with tempfile.TemporaryDirectory() as tmp:
        for i, r in enumerate([base_row, *picked]):
            out = Path(tmp) / str(i)
            subprocess.run([sys.executable, "-m", "stylegan_blend", "generate", "--network", r["network"], "--seeds",
                            seeds, "--outdir", str(out)], cwd=ROOT, env=_env(), check=True, stdout=subprocess.DEVNULL)
            rows.append([np.asarray(Image.open(out / f"seed{s:04d}.png")) for s in SHEET_SEEDS])
            seed = f",\ndata seed {r['seed']}" if "seed" in r else ""
            labels.append(f"{names[r['impl']]}{seed}\nkd {r['kd']:.4f}")
    title = (f"Fine-tuned {kimg:g} kimg from the demo base, ours vs NVIDIA's training_loop (same data, settings and "
             f"kimg); columns: sample seeds {seeds}")
    return save_sheet(SHEET, comparison_sheet(rows, row_labels=labels, col_labels=[str(s) for s in SHEET_SEEDS],
                                              title=title, min_tile=96))


def run() -> list[dict]:
    nvidia_dir = os.environ.get(NVIDIA_ENV)
    if not nvidia_dir:
        print(f"finetune: skipped, set {NVIDIA_ENV} to a stylegan2-ada-pytorch checkout (the comparison needs it)",
              file=sys.stderr)
        return []
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tools"))
    from make_nvidia_fixtures import augpipe_presets

    from stylegan_blend.checkpoints import load_network
    from stylegan_blend.evaluation import list_images

    cfg = demo_config()
    base = (ROOT / cfg["model"]["init_from"]).resolve()
    toon = prepare_data().resolve()
    batch, n_train = int(cfg["train"]["batch_size"]), len(list_images(toon, "train"))
    if n_train < batch:
        raise SystemExit(f"error: {toon}: {n_train} train images < batch {batch}")
    epochs = int(EPOCHS or cfg["trainer"]["max_epochs"])
    minibatches = epochs * (n_train // batch)
    kimg = minibatches * batch / 1000
    net = load_network(base)
    settings = dict(nvidia_settings(cfg, net.G_ema.init_kwargs, net.D.init_kwargs, augpipe_presets(nvidia_dir)),
                    nvidia_dir=str(Path(nvidia_dir).resolve()), base=str(base), data=str(toon), minibatches=minibatches)
    runs_dir = OUT / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs_dir.mkdir(parents=True)
    print(f"finetune: {len(SEEDS)} seeds x (ours, nvidia), {minibatches} minibatches = {kimg:g} kimg each, {JOBS} "
          f"jobs x {THREADS} threads; logs in {runs_dir}", flush=True)

    def one(job):
        impl, seed = job
        run_dir = runs_dir / f"{impl}_seed{seed}"
        got = run_ours(seed, base, toon, epochs, run_dir) if impl == "ours" else run_nvidia(seed, settings, run_dir)
        print(f"finetune: {impl} seed {seed} done in {got['wall_s']:.0f} s", flush=True)
        return dict(impl=impl, seed=seed, kimg=kimg, minibatches=minibatches, batch=batch, threads=THREADS, **got)

    with ThreadPoolExecutor(JOBS) as pool:
        runs = list(pool.map(one, [(impl, s) for s in SEEDS for impl in ("ours", "nvidia")]))
    for r in runs:
        if r["impl"] == "ours":
            done = load_network(r["network"]).meta.get("kimg")
            if done is None or abs(float(done) - kimg) > 1e-9:
                raise RuntimeError(f"ours stopped at {done} kimg, NVIDIA's at {kimg}: the runs are not comparable")
    base_row = score(runs, base, toon, cfg)
    figure = sheet(runs, base_row, toon, kimg)
    keep = ("impl", "seed", "kimg", "minibatches", "batch", "threads", "kd", "fd", "wall_s", "cpu_s", "ada_p",
            "extractor", "num_gen", "n_ref", "reference")
    rows = [{k: _round(r[k]) for k in keep if k in r} for r in (*runs, base_row)]
    return rows + [dict(r, kimg=kimg, sheet=str(figure.relative_to(ROOT))) for r in summary_records(runs)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=Path, metavar="RUN_DIR", help="run one NVIDIA fine-tune as RUN_DIR/settings.json says")
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT))
        nvidia_worker(args.worker)
    else:
        print(json.dumps(run(), indent=1))
