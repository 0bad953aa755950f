"""CLI start-up: `stylegan-blend --help` and `stylegan-blend generate --help` against a bare `import torch`.

Each command runs in a fresh interpreter (what a user pays); the figure is the median wall time over
repetitions, measured after one warm-up run so the file cache is hot for both. Target: --help costs no
more than `import torch` plus 0.3 s (the commands import only what they use).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPS = int(os.environ.get("BENCH_CLI_REPS", "7"))
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "stylegan-blend --help": [sys.executable, "-m", "stylegan_blend", "--help"],
    "stylegan-blend generate --help": [sys.executable, "-m", "stylegan_blend", "generate", "--help"],
}


def _time(cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    return time.perf_counter() - start


def run() -> list[dict]:
    for cmd in COMMANDS.values():
        _time(cmd)  # warm-up: page cache
    times = {name: [] for name in COMMANDS}
    for _ in range(REPS):  # interleaved, so machine load affects every command alike
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd))
    torch_s = statistics.median(times["import torch"])
    return [dict(command=name, reps=REPS, s_median=round(statistics.median(t), 3), s_min=round(min(t), 3),
                 overhead_vs_import_torch_s=round(statistics.median(t) - torch_s, 3),
                 load_avg_1m=round(os.getloadavg()[0], 2))
            for name, t in times.items()]


if __name__ == "__main__":
    for record in run():
        print(record)
