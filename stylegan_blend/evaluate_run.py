"""`stylegan-blend-eval`: score the exported networks of a finished run (a new swap grid needs no retraining)."""
from __future__ import annotations

import csv
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .errors import UserError
from .train import CONF_DIR

_EPOCH = re.compile(r"epoch=(\d+)\.pt$")


def run_config(run_dir: Path, overrides: DictConfig) -> dict:
    """The run's own config with every non-null blend/metrics override applied."""
    cfg_file = run_dir / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        raise UserError(f"{cfg_file}: not found; expected a run directory written by stylegan-blend-train")
    cfg = OmegaConf.load(cfg_file)  # Hydra saves it unresolved (${model.resolution}, ${model.init_from}, ...)
    for section in ("blend", "metrics"):
        for key, value in (OmegaConf.to_container(overrides[section]) or {}).items():
            if value is not None:
                OmegaConf.update(cfg, f"{section}.{key}", value, force_add=True)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 - an interpolation that cannot be resolved is a config problem
        raise UserError(f"{cfg_file}: cannot resolve the run's config ({e})") from None


def exported_networks(run_dir: Path) -> list[tuple[int, Path]]:
    nets = sorted((int(m.group(1)), p) for p in (run_dir / "networks").glob("epoch=*.pt")
                  if (m := _EPOCH.search(p.name)))
    if not nets:
        raise UserError(f"{run_dir / 'networks'}: no epoch=NNNN.pt files; expected a run with exported networks")
    return nets


def drop_cells(metrics_csv: Path, cells: set[tuple[int, str, str]]) -> None:
    """Remove rows of (epoch, swap_res, direction) cells so they can be scored again (atomic rewrite)."""
    if not metrics_csv.is_file():
        return
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    keep = [r for r in rows if (int(r["epoch"]), r["swap_res"], r["direction"]) not in cells]
    fd, tmp = tempfile.mkstemp(dir=metrics_csv.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(keep)
    os.replace(tmp, metrics_csv)


def evaluate_run(run_dir: Path, overrides: DictConfig, rescore: bool = False, device: str = "cpu") -> int:
    """Score every exported checkpoint; returns the number of metric rows added."""
    import torch

    from .callbacks.blend_eval import BlendScorer, isolated_rng, scored_cells
    from .checkpoints import load_network

    cfg = run_config(run_dir, overrides)
    cfg.setdefault("paths", {})
    scorer = BlendScorer.from_config(cfg, run_dir, device=device)
    added = 0
    networks = exported_networks(run_dir)
    start = time.monotonic()
    with isolated_rng():
        for i, (epoch, path) in enumerate(networks, 1):
            net = load_network(path, device=device)
            if rescore:
                drop_cells(run_dir / "metrics.csv", {(epoch, str(r), d) for r, d in scorer.cells(False)})
            done = scored_cells(run_dir / "metrics.csv")
            skip = set(done.get(epoch, set())) | done.get(-1, set())
            todo = [c for c in scorer.cells(("base", "") not in skip) if (str(c[0]), c[1]) not in skip]
            print(f"[{i}/{len(networks)}] epoch {epoch}: {len(todo)} cell(s) to score"
                  + ("" if todo else " (all present)"), flush=True)
            if todo:
                added += len(scorer.score_checkpoint(net.G_ema, epoch, float(net.meta.get("kimg") or 0), skip=skip))
                elapsed = time.monotonic() - start  # progress: post-hoc scoring of a sweep takes minutes
                print(f"[{i}/{len(networks)}] epoch {epoch} scored; {elapsed:.0f} s so far, "
                      f"about {elapsed / i * (len(networks) - i):.0f} s left", flush=True)
            del net
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return added


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    import torch

    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        added = evaluate_run(Path(cfg.run_dir), cfg, rescore=cfg.rescore, device=device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{added} metric row(s) added to {Path(cfg.run_dir) / 'metrics.csv'}")


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
