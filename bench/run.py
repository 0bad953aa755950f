"""`make bench`: run every benchmark module `bench/bench_<name>.py` and append its records to
`bench/results.json`.

A benchmark module exposes `run() -> list[dict]`: one flat dict per measured figure (config, impl,
batch, s/img or s/kimg, ...). This runner adds `benchmark` (the module's <name>), `timestamp` and
`machine` (CPU model, cores, torch version and threads, load average) to each record, so figures
from different machines and days stay comparable. Speed claims are ratios against NVIDIA's code timed
in the same run: set NVIDIA_SG2ADA_DIR to a stylegan2-ada-pytorch checkout to include it.

    .venv/bin/python bench/run.py                    # all benchmarks
    .venv/bin/python bench/run.py --only generator   # just bench/bench_generator.py
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import importlib.util
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results.json"


def available() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # OpenMP settings change CPU timings several-fold on a loaded machine (spinning vs sleeping waits)
    omp_env = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_"))}
    return dict(cpu=cpu, cores=os.cpu_count(), usable_cores=len(os.sched_getaffinity(0)),
                torch=torch.__version__, torch_threads=torch.get_num_threads(), omp_env=omp_env,
                python=platform.python_version(), load_avg_1m=round(os.getloadavg()[0], 2))


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def append_results(records: list[dict], path: Path = RESULTS) -> None:
    """Append to the JSON list atomically (temp file in the same folder, then rename), holding a lock
    on the folder so benchmarks finishing at the same time do not drop each other's records."""
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.exists() else []
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(old + records, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        os.close(dir_fd)  # releases the lock


def main(argv=None) -> int:
    benches = available()
    ap = argparse.ArgumentParser(description="Run the benchmarks and append to bench/results.json.")
    ap.add_argument("--only", action="append", choices=sorted(benches), metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(sorted(benches))}")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results file (JSON list, appended)")
    ap.add_argument("--dry-run", action="store_true", help="print the records, write nothing")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    failed = []
    for name in args.only or sorted(benches):
        print(f"== {name}", flush=True)
        module = load_module(name, benches[name])
        if not callable(getattr(module, "run", None)):
            print(f"error: {benches[name]} defines no run() -> list[dict]; skipped", file=sys.stderr)
            failed.append(name)
            continue
        records = module.run()
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        machine = machine_info()
        records = [dict(benchmark=name, timestamp=stamp, **r, machine=machine) for r in records]
        for r in records:
            print(json.dumps({k: v for k, v in r.items() if k != "machine"}), flush=True)
        if not args.dry_run:
            append_results(records, args.out)  # per benchmark, so a later failure keeps earlier figures
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
