"""`stylegan-blend-eval`: score the exported networks of a finished run (a new swap grid needs no retraining),
or, with `--checkpoints DIR`, the checkpoints of any trainer (NVIDIA network-snapshot-*.pkl, rosinality .pt,
ours) against a base network and target data, into a run-like folder with metrics.csv, samples and report."""
from __future__ import annotations

import re
import sys
import time
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
    start = time.monotonic()
    added = []
    with isolated_rng():
        scorer.prepare()  # weights, extractor and reference features first: a missing file fails before any work
        for i, (epoch, path) in enumerate(nets, 1):
            done = scored_cells(run_dir / "metrics.csv", scorer.extractor.name)
            skip = set() if rescore else set(done.get(epoch, set())) | done.get(-1, set())
            if rescore and done.get(-1):
                skip = {("base", "")}
            todo = [c for c in scorer.cells(("base", "") not in skip) if (str(c[0]), c[1]) not in skip]
            print(f"[{i}/{len(nets)}] epoch {epoch}: {len(todo)} cell(s) to score"
                  + ("" if todo else " (all present)"), flush=True)
            if todo:
                net = load_network(path, device=device)
                added += scorer.score_checkpoint(net.G_ema, epoch, float(net.meta.get("kimg") or 0), skip=skip,
                                                 network_file=path, replace=rescore)
                del net
                elapsed = time.monotonic() - start  # progress: post-hoc scoring of a sweep takes minutes
                print(f"[{i}/{len(nets)}] epoch {epoch} scored; {elapsed:.0f} s so far, "
                      f"about {elapsed / i * (len(nets) - i):.0f} s left", flush=True)
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    from .train import run_selection

    sel = run_selection(run_dir, write=True)  # selection.json follows the new scores
    if sel is not None:
        print(f"{sel.header()}\n{sel.line()}")
    if added and log_wandb:
        from .hydra_callbacks import choice_text
        from .tracking import log_posthoc

        summary = {"best": choice_text(sel)} if sel is not None else None
        if log_posthoc(run_dir, added, summary=summary):  # the run it scores: W&B and metrics.csv agree
            print(f"logged {len(added)} metric row(s) to the run's W&B run")
    return len(added)


_KEYS = (re.compile(r"epoch=?(\d+)"), re.compile(r"network-snapshot-(\d+)\.pkl$"), re.compile(r"^(\d+)\.pt$"))
CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".ckpt")


def checkpoint_key(path: Path, meta: dict) -> tuple[int, float, str]:
    """(epoch, kimg, where the epoch came from) of an outside checkpoint. Metadata first (ours: epoch, kimg);
    else the name: `epoch=N` / `epochN`, NVIDIA's `network-snapshot-<kimg>.pkl` (no epochs: the kimg is
    used as the epoch key), rosinality's `<iteration>.pt` (kimg = iteration × args.batch / 1000)."""
    kimg = meta.get("kimg")
    if meta.get("epoch") is not None:
        return int(meta["epoch"]), float(kimg or 0), "metadata"
    name = path.name
    if (m := _KEYS[0].search(name)):
        return int(m.group(1)), float(kimg or 0), "file name"
    if (m := _KEYS[1].search(name)):
        return int(m.group(1)), float(m.group(1)), "NVIDIA snapshot kimg (no epochs)"
    if (m := _KEYS[2].match(name)):
        batch = (meta.get("args") or {}).get("batch")
        it = int(m.group(1))
        return it, (it * float(batch) / 1000 if batch else float(kimg or 0)), "rosinality iteration"
    raise UserError(f"{path}: cannot tell its epoch or kimg (no metadata, and the name matches none of "
                    f"epoch=N, network-snapshot-<kimg>.pkl, <iteration>.pt)")


def _link_network(out: Path, epoch: int, source: Path) -> None:
    """networks/epoch=NNNN.pt -> the outside file, so the report's export command points at a real file."""
    link = out / "networks" / f"epoch={epoch:04d}.pt"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source.resolve())


def score_outside_run(base: Path, checkpoints: Path, data: Path, out: Path, swap_res: list[int],
                      directions: list[str], extractor: str = "randcnn", num_gen: int = 200,
                      identity: str | None = "auto", identity_weights: str | None = None,
                      identity_num: int = 100, source_data: str | None = None, inception_path: str | None = None,
                      rule: str = "knee", device: str = "cpu", batch_size: int = 32) -> Path:
    """Score every checkpoint in `checkpoints` like our blend callback does; returns the report's index.html."""
    import torch
    import yaml

    from .callbacks.blend_eval import BlendScorer, isolated_rng, scored_cells
    from .checkpoints import load_network
    from .reporting import build_report
    from .selection import parse_rule

    parse_rule(rule)  # a bad rule fails before any scoring
    if not checkpoints.is_dir():
        raise UserError(f"--checkpoints {checkpoints}: not a folder; expected a folder of checkpoint files")
    files = sorted(p for p in checkpoints.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"--checkpoints {checkpoints}: no {', '.join(CHECKPOINT_SUFFIXES)} files")
    base_net = load_network(base)
    res = int(base_net.G_ema.img_resolution)
    del base_net
    scorer = BlendScorer(run_dir=out, base_path=str(base), data_dir=str(data), resolution=res, swap_res=swap_res,
                         directions=directions, extractor_name=extractor, num_gen=num_gen, batch_size=batch_size,
                         inception_path=inception_path, source_data=source_data, device=device,
                         identity_name=identity, identity_weights=identity_weights, num_identity=identity_num)
    scorer.prepare()  # a bad grid, data folder or weights file fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    config = {"data": {"resolution": res},
              "blend": {"base": str(Path(base).resolve()), "swap_res": swap_res, "directions": directions},
              "metrics": {"extractor": extractor, "num_gen": num_gen, "identity": identity},
              "selection": {"rule": rule.partition("=")[0], "param": (float(rule.partition("=")[2])
                                                                       if "=" in rule else None)},
              "scored_from": str(checkpoints.resolve())}
    (out / ".hydra").mkdir(exist_ok=True)  # the report and re-runs read blend.base / selection from here
    (out / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    seen: dict[int, Path] = {}
    with isolated_rng():
        for path in files:
            net = load_network(path, device=device)
            epoch, kimg, how = checkpoint_key(path, net.meta or {})
            if epoch in seen:
                raise UserError(f"{path} and {seen[epoch]} both map to epoch {epoch}; keep one of them")
            seen[epoch] = path
            _link_network(out, epoch, path)
            scorer.prepare()
            done = scored_cells(out / "metrics.csv", scorer.extractor.name)
            skip = set(done.get(epoch, set())) | done.get(-1, set())
            rows = scorer.score_checkpoint(net.G_ema, epoch, kimg, skip=skip, network_file=path)
            print(f"{path.name}: epoch {epoch} ({how}), {kimg:g} kimg, {len(rows)} metric row(s)")
            del net
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return build_report([out], rule=rule)


def outside_main(argv: list[str]) -> int:
    import argparse

    from .cli import _Parser

    p = _Parser(prog="stylegan-blend-eval", description="Score the checkpoints of any trainer: blends with the "
                "base network at every swap resolution, style + identity per cell, metrics.csv and a report.")
    p.add_argument("--base", type=Path, required=True, help="base (real-face) network: .pkl, .pt or ours")
    p.add_argument("--checkpoints", type=Path, required=True,
                   help="folder of fine-tuned checkpoints (network-snapshot-*.pkl, rosinality .pt, ours)")
    p.add_argument("--data", type=Path, required=True, help="target (stylised) image folder, prepared")
    p.add_argument("--out", type=Path, required=True, help="output folder (metrics.csv, samples/, report/)")
    p.add_argument("--swap-res", default="16,32,64", help="comma-separated swap resolutions")
    p.add_argument("--directions", default="low_base", help="low_base and/or low_tuned, comma-separated")
    p.add_argument("--extractor", default="randcnn", help="inception (real FID/KID) or randcnn (offline proxy)")
    p.add_argument("--inception-path", default=None)
    p.add_argument("--num-gen", type=int, default=200)
    p.add_argument("--identity", default="auto", help="auto (identity_dlib from 64 px when installed, else "
                   "proxy), identity_dlib, proxy, identity_facenet, lpips, or none")
    p.add_argument("--identity-weights", default=None,
                   help="local weights file for identity_facenet / lpips (identity_dlib: another .dat)")
    p.add_argument("--identity-num", type=int, default=100, help="seeds paired with the base per cell")
    p.add_argument("--source-data", default=None, help="also score against the source set (src_ metrics)")
    p.add_argument("--rule", default="knee", help="selection rule: knee, min_identity=X, weighted=A")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    try:
        swaps = [int(r) for r in args.swap_res.split(",") if r]
    except ValueError:
        raise UserError(f"--swap-res {args.swap_res!r}: expected comma-separated integers like 16,32,64") from None
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    index = score_outside_run(args.base, args.checkpoints, args.data, args.out, swaps,
                              [d for d in args.directions.split(",") if d], args.extractor, args.num_gen,
                              None if args.identity == "none" else args.identity, args.identity_weights,
                              args.identity_num, args.source_data, args.inception_path, args.rule, device)
    from .train import run_selection

    sel = run_selection(args.out, write=True)
    print(f"report: {index}")
    if sel is not None:
        print(sel.header())
        for choice in [*sel.per_epoch, sel.overall]:
            print(f"  {sel.line(choice)}")
    return 0


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
    if "--checkpoints" in sys.argv[1:] or any(a.startswith("--checkpoints=") for a in sys.argv[1:]):
        try:
            sys.exit(outside_main(sys.argv[1:]))
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
    _hydra_main()


if __name__ == "__main__":
    main()
