"""`make test-min`: the package at the lower bounds of its ranges, installed next to a lab's own torch.

In a throwaway venv (a temp folder, deleted afterwards unless --keep):
1. the "lab" environment: torch 2.13.0+cpu (the oldest torch the ranges allow) and the torchvision made for it,
   installed the way PyTorch's instructions do, as a pair;
2. `pip install .`, plain, with the ranges of pyproject.toml: torch and torchvision must stay as they were
   (the issue's acceptance: a library keeps the lab's torch);
3. every other direct dependency moved down to its lower bound (`uv pip install --resolution lowest-direct`;
   pip has no such mode), and each checked to sit exactly at the bound pyproject.toml states, so every bound
   is one that was run;
4. `import stylegan_blend`, `stylegan-blend --help`, `prepare images`, a tiny `stylegan-blend-train` (1 epoch,
   16 px), a fine-tune from it that blends and scores every checkpoint (randcnn proxy, style only), `report`;
5. the test files in --tests, run against the installed package.

Checks that need a working torchvision (MTCNN, LPIPS, clean-fid's own FID functions) are left out: PyPI's
torchvision for torch 2.13 is the CUDA build, whose compiled ops do not load beside the +cpu torch wheel.
Stdlib only, so it runs with any Python >= 3.11 before any venv exists.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TORCH = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
DEFAULT_TORCHVISION = "torchvision==0.28.0"  # the release for torch 2.13
DEFAULT_TESTS = ("tests/test_cli.py tests/test_training.py tests/test_data.py tests/test_report.py "
                 "tests/test_tracking.py tests/test_sweeps.py tests/test_diagnostics.py")
TINY = ["model.resolution=16", "model.G_kwargs.z_dim=16", "model.G_kwargs.w_dim=16",
        "model.G_kwargs.synthesis_kwargs.channel_base=128", "model.G_kwargs.synthesis_kwargs.channel_max=16",
        "model.D_kwargs.channel_base=128", "model.D_kwargs.channel_max=16",
        "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4", "augment=none",
        "trainer.enable_progress_bar=false", "train.diagnostics.num_images=4", "train.diagnostics.grid_size=4",
        "trainer.max_epochs=1", "checkpoint.every_n_epochs=1"]
START = time.time()


class Failed(Exception):
    pass


def say(msg: str) -> None:
    print(f"[test-min {time.time() - START:6.0f}s] {msg}", flush=True)


def run(cmd: list, env: dict, cwd: Path, quiet: bool = True) -> str:
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, text=True,
                       stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    if r.returncode != 0:
        tail = "\n".join((r.stdout or "").splitlines()[-40:])
        raise Failed(f"{' '.join(map(str, cmd[:6]))} ... exited {r.returncode}\n{tail}")
    return r.stdout or ""


def versions(py: Path, env: dict, names: list[str]) -> dict:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    return json.loads(run([py, "-c", code, *names], env, ROOT).strip().splitlines()[-1])


def lower_bounds(pyproject: dict) -> dict[str, str]:
    """{name: version} of every `>=` bound in [project.dependencies] and the dev extra."""
    out = {}
    for req in pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["dev"]:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
        name, spec = m.group(1), m.group(2)
        low = re.search(r">=\s*([0-9][0-9a-zA-Z.]*)", spec)
        if not low:
            raise Failed(f"pyproject.toml: {req!r} has no lower bound (>=); every dependency needs one")
        out[name] = low.group(1)
    return out


def at_bound(installed: str, bound: str) -> bool:
    """The installed release within the bound's precision: '2.13.0+cpu' at '2.13', '4.8.0.76' at '4.8',
    '1.3.0.post0' at '1.3' (the lowest release of that line; a higher line means a bound no one ran)."""
    def release(v: str) -> list[int]:
        return [int(p) for p in re.match(r"^(\d+(?:\.\d+)*)", v).group(1).split(".")]

    want = release(bound)
    have = release(installed) + [0] * len(want)
    return have[:len(want)] == want


def copy_source(dst: Path) -> Path:
    """The package's files only, so the build writes nothing into the checkout."""
    dst.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dst / name)
    for name in ("stylegan_blend", "conf"):
        shutil.copytree(ROOT / name, dst / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def dataset(py: Path, bin_dir: Path, env: dict, work: Path) -> Path:
    raw, data = work / "raw", work / "data"
    raw.mkdir()
    code = ("import sys, numpy as np\nfrom PIL import Image\nrng = np.random.default_rng(0)\n"
            "for i in range(20):\n"
            "    img = np.zeros((20, 20, 3), np.uint8); img[...] = rng.integers(0, 255, 3)\n"
            "    x0, y0 = rng.integers(2, 10, 2); img[y0:y0 + 8, x0:x0 + 8] = rng.integers(0, 255, 3)\n"
            "    Image.fromarray(img).save(f'{sys.argv[1]}/img{i:02d}.png')\n")
    run([py, "-c", code, raw], env, work)
    run([bin_dir / "stylegan-blend", "prepare", "images", raw, data, "--res", "16", "--val-fraction", "0.2"], env, work)
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torch", default=os.environ.get("TORCH_MIN", DEFAULT_TORCH),
                    help="the lab's torch: a wheel file or a requirement (default: %(default)s)")
    ap.add_argument("--torchvision", default=DEFAULT_TORCHVISION, help="its torchvision (default: %(default)s; '' for a torch-only venv)")
    ap.add_argument("--tests", default=DEFAULT_TESTS, help="test files run at the lower bounds ('' for none)")
    ap.add_argument("--keep", type=Path, help="build the venv in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()

    torch_wheel = Path(args.torch)
    if args.torch.endswith(".whl") and not torch_wheel.is_file():
        print(f"error: torch wheel {torch_wheel} not found; download torch 2.13.0+cpu for this Python from "
              "https://download.pytorch.org/whl/cpu and pass TORCH_MIN=<file>", file=sys.stderr)
        return 2
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="stylegan-blend-min-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = work / "venv"
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    pip = [py, "-m", "pip", "install", "-q"]
    try:
        say(f"venv in {venv}")
        run([sys.executable, "-m", "venv", venv], env, work)
        say(f"the lab's environment: {args.torch} + {args.torchvision}")
        run(pip + [args.torch], env, work)
        if args.torchvision:
            run(pip + ["--no-deps", args.torchvision], env, work)
        lab = {k: v for k, v in versions(py, env, ["torch", "torchvision"]).items() if v}

        src = copy_source(work / "src")
        say("pip install . (plain, with the ranges)")
        run(pip + [src], env, work)
        after = {k: v for k, v in versions(py, env, list(lab)).items()}
        if after != lab:
            raise Failed(f"pip install . replaced the lab's torch: {lab} -> {after}")
        say("kept: " + ", ".join(f"{k} {v}" for k, v in after.items()))

        say("every direct dependency down to its lower bound (uv, lowest-direct)")
        run(pip + ["--target", work / "uv", "uv>=0.9,<1"], env, work)  # beside the venv: the dev extra installs uv too
        keep = work / "keep.txt"
        keep.write_text("".join(f"{k}=={v}\n" for k, v in lab.items()))
        find_links = ["--find-links", torch_wheel.parent] if torch_wheel.is_file() else []
        run([work / "uv" / "bin" / "uv", "pip", "install", "--quiet", "--python", py, "--upgrade", "--resolution",
             "lowest-direct", "-c", keep, *find_links, f"{src}[dev]"], env, work)
        bounds = lower_bounds(tomllib.loads((ROOT / "pyproject.toml").read_text()))
        got = versions(py, env, list(bounds))
        off = {n: (got[n], b) for n, b in bounds.items() if got[n] is None or not at_bound(got[n], b)}
        if off:
            raise Failed("not at the lower bound pyproject.toml states (installed, bound): "
                         + ", ".join(f"{n} {v}" for n, v in off.items()))
        say("at the lower bounds: " + ", ".join(f"{n} {v}" for n, v in got.items()))

        say("import, --help, prepare, tiny train, fine-tune with blend scoring, report")
        run([py, "-c", "import stylegan_blend"], env, work)
        if "convert" not in run([bin_dir / "stylegan-blend", "--help"], env, work):
            raise Failed("stylegan-blend --help does not list the commands")
        data = dataset(py, bin_dir, env, work)
        base_run, tuned = work / "base", work / "tuned"
        train = bin_dir / "stylegan-blend-train"
        run([train, f"data.path={data}", f"paths.output_dir={base_run}", *TINY, "logger=none",
             "callbacks.blend_eval=false"], env, work)
        base = base_run / "networks" / "epoch=0001.pt"
        if not base.is_file() or not (base_run / "samples" / "epoch=0001.png").is_file():
            raise Failed(f"the tiny train wrote no {base} or no sample grid")
        run([train, f"data.path={data}", f"paths.output_dir={tuned}", *TINY, f"model.init_from='{base}'",  # quoted: the file name holds '='
             "logger=wandb", "metrics=proxy", "metrics.identity=null", "metrics.num_gen=8", "blend.swap_res=[8]",
             "blend.sample_seeds=[0,1]"], env, work)
        metrics = (tuned / "metrics.csv").read_text() if (tuned / "metrics.csv").is_file() else ""
        if "fd_randcnn" not in metrics:
            raise Failed(f"the fine-tune scored no blend ({tuned / 'metrics.csv'}):\n{metrics[:500]}")
        run([bin_dir / "stylegan-blend", "report", tuned], env, work)
        if not (tuned / "report" / "index.html").is_file():
            raise Failed("stylegan-blend report wrote no report/index.html")

        tests = args.tests.split()
        if tests:
            say(f"pytest at the lower bounds: {' '.join(tests)}")
            run([bin_dir / "pytest", "-q", "--disable-warnings", "-p", "no:cacheprovider", "--timeout=600", *tests], env, ROOT,
                quiet=False)
    except Failed as exc:
        say(f"FAILED: {exc}")
        say(f"venv kept for a look: {venv}")
        return 1
    say("passed")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
