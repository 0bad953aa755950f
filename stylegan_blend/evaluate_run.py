"""`stylegan-blend-eval`: score the exported networks of a finished run (a new swap grid needs no retraining)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .errors import UserError, check_device, report_failure
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


def evaluate_run(run_dir: Path, overrides: DictConfig, rescore: bool = False, device: str = "cpu",
                 log_wandb: bool = True) -> int:
    """Score every exported checkpoint; returns the number of metric rows added (also logged into the run's
    W&B run when it has one).

    A cell counts as done only when it has rows of this extractor. `rescore` scores the cells again and
    replaces their rows once the new values exist (never deleting first)."""
    import torch

    from .callbacks.blend_eval import BlendScorer, isolated_rng, scored_cells
    from .checkpoints import load_network

    cfg = run_config(run_dir, overrides)
    cfg.setdefault("paths", {})
    scorer = BlendScorer.from_config(cfg, run_dir, device=device)
    nets = exported_networks(run_dir)
    added = []
    with isolated_rng():
        scorer.prepare()  # weights, extractor and reference features first: a missing file fails before any work
        for epoch, path in nets:
            done = scored_cells(run_dir / "metrics.csv", scorer.extractor.name)
            skip = set() if rescore else set(done.get(epoch, set())) | done.get(-1, set())
            if rescore and done.get(-1):
                skip = {("base", "")}
            todo = [c for c in scorer.cells(("base", "") not in skip) if (str(c[0]), c[1]) not in skip]
            print(f"epoch {epoch}: {len(todo)} cell(s) to score" + ("" if todo else " (all present)"))
            if todo:
                net = load_network(path, device=device)
                added += scorer.score_checkpoint(net.G_ema, epoch, float(net.meta.get("kimg") or 0), skip=skip,
                                                 network_file=path, replace=rescore)
                del net
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    if added and log_wandb:
        from .tracking import log_posthoc

        if log_posthoc(run_dir, added):  # the run it scores: W&B and metrics.csv agree
            print(f"logged {len(added)} metric row(s) to the run's W&B run")
    return len(added)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        device = check_device(cfg.device)
        added = evaluate_run(Path(cfg.run_dir), cfg, rescore=bool(cfg.rescore), device=device)
    except Exception as e:  # noqa: BLE001 - expected failures become one line; a bug keeps its traceback
        code = report_failure(e)
        if code is None:
            raise
        sys.exit(code)
    print(f"{added} metric row(s) added to {Path(cfg.run_dir) / 'metrics.csv'}")


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
