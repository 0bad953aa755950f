"""Score the exported networks of a finished run after the fact: a new swap grid, direction or metric needs no
retraining, only the networks/epoch=NNNN.pt files and the run's data."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoints import load_network
from ..errors import UserError
from ..run.layout import METRICS_FILE, NETWORKS_DIR
from ..run.tables import scored_cells
from .blend_scorer import BlendScorer, isolated_rng

_EPOCH = re.compile(r"epoch=(\d+)\.pt$")


def exported_networks(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, file) of every network the run exported, by epoch."""
    nets = sorted(
        (int(m.group(1)), p) for p in (Path(run_dir) / NETWORKS_DIR).glob("epoch=*.pt") if (m := _EPOCH.search(p.name))
    )
    if not nets:
        raise UserError(
            f"{Path(run_dir) / NETWORKS_DIR}: no epoch=NNNN.pt files; expected a run with exported networks"
        )
    return nets


def score_exported(
    run_dir: Path, cfg: dict, rescore: bool = False, device: str = "cpu", progress: Callable[[str], None] | None = None
) -> list[dict]:
    """Score every exported checkpoint of `run_dir` under the resolved run config `cfg` (its blend/metrics/data
    settings); returns the metrics.csv rows added.

    A cell counts as done only when it has rows of this extractor. `rescore` scores the cells again and replaces
    their rows once the new values exist (never deleting first). `progress` gets one line per checkpoint."""
    run_dir = Path(run_dir)
    say = progress or (lambda line: None)
    scorer = BlendScorer.from_config(cfg, run_dir, device=device)
    nets = exported_networks(run_dir)
    start = time.monotonic()
    added = []
    with isolated_rng():
        scorer.prepare()  # weights, extractor and reference features first: a missing file fails before any work
        for i, (epoch, path) in enumerate(nets, 1):
            done = scored_cells(run_dir / METRICS_FILE, scorer.extractor.name)
            skip = set() if rescore else set(done.get(epoch, set())) | done.get(-1, set())
            if rescore and done.get(-1):
                skip = {("base", "")}
            todo = scorer.pending_cells(skip)
            say(f"[{i}/{len(nets)}] epoch {epoch}: {len(todo)} cell(s) to score" + ("" if todo else " (all present)"))
            if todo:
                net = load_network(path, device=device)
                added += scorer.score_checkpoint(
                    net.G_ema, epoch, float(net.meta.get("kimg") or 0), skip=skip, network_file=path, replace=rescore
                )
                del net
                elapsed = time.monotonic() - start  # progress: post-hoc scoring of a sweep takes minutes
                say(
                    f"[{i}/{len(nets)}] epoch {epoch} scored; {elapsed:.0f} s so far, "
                    f"about {elapsed / i * (len(nets) - i):.0f} s left"
                )
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return added
