"""`stylegan-blend-eval`: score the exported networks of a finished run (a new swap grid needs no retraining),
or, with `--checkpoints DIR`, the checkpoints of any trainer (NVIDIA network-snapshot-*.pkl, rosinality .pt,
ours) against a base network and target data, into a run-like folder with metrics.csv, samples and report."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from ..blending.config import BlendConfig
from ..checkpoints import load_network
from ..errors import UserError, check_device, report_failure
from ..evaluation.blend_scorer import BlendScorer, isolated_rng
from ..evaluation.config import MetricsConfig
from ..evaluation.run_scoring import score_exported
from ..evaluation.run_selection import run_selection
from ..reporting.report import build_report
from ..run.files import write_text_atomic
from ..run.layout import CONFIG_FILE, METRICS_FILE, network_path
from ..run.reader import run_config
from ..run.tables import scored_cells
from ..selection import DEFAULT_RULE, parse_rule
from .commands import Parser
from .config import CONF_DIR, register_config
from .hydra_hooks import choice_text
from .tracking import log_posthoc

register_config()

def evaluate_run(run_dir: Path, overrides: DictConfig, rescore: bool = False, device: str = "cpu",
                 log_wandb: bool = True) -> int:
    """Score every exported checkpoint (evaluation.run_scoring) with the run's config and `overrides`' non-null
    blend/metrics values; returns the number of metric rows added (also logged into the run's W&B run when it has
    one), and re-makes selection.json."""
    cfg = run_config(run_dir, OmegaConf.to_container(overrides))
    added = score_exported(run_dir, cfg, rescore=rescore, device=device, progress=lambda line: print(line, flush=True))
    sel = run_selection(run_dir, write=True)  # selection.json follows the new scores
    if sel is not None:
        print(f"{sel.header()}\n{sel.line()}")
    if added and log_wandb:
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
    link = network_path(out, epoch)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source.resolve())


def score_outside_run(base: Path, checkpoints: Path, data: Path, out: Path, blend: BlendConfig,
                      metrics: MetricsConfig, rule: str = DEFAULT_RULE, device: str = "cpu") -> Path:
    """Score every checkpoint in `checkpoints` like our blend callback does; returns the report's index.html."""
    parse_rule(rule)  # a bad rule fails before any scoring
    if not checkpoints.is_dir():
        raise UserError(f"--checkpoints {checkpoints}: not a folder; expected a folder of checkpoint files")
    files = sorted(p for p in checkpoints.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"--checkpoints {checkpoints}: no {', '.join(CHECKPOINT_SUFFIXES)} files")
    base_net = load_network(base)
    res = int(base_net.G_ema.img_resolution)
    del base_net
    scorer = BlendScorer(run_dir=out, base_path=str(base), data_dir=str(data), resolution=res,
                         swap_res=list(blend.swap_res), directions=list(blend.directions),
                         extractor_name=metrics.extractor, num_gen=metrics.num_gen, batch_size=metrics.batch_size,
                         inception_path=metrics.inception_path, source_data=metrics.source_data, device=device,
                         identity_name=metrics.identity, identity_weights=metrics.identity_weights,
                         num_identity=metrics.identity_num)
    scorer.prepare()  # a bad grid, data folder or weights file fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    config = {"data": {"resolution": res},
              "blend": {"base": str(Path(base).resolve()), "swap_res": list(blend.swap_res),
                        "directions": list(blend.directions)},
              "metrics": {"extractor": metrics.extractor, "num_gen": metrics.num_gen, "identity": metrics.identity},
              "selection": {"rule": rule.partition("=")[0], "param": (float(rule.partition("=")[2])
                                                                       if "=" in rule else None)},
              "scored_from": str(checkpoints.resolve())}
    # the report and re-runs read blend.base / selection from here
    write_text_atomic(out / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
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
            done = scored_cells(out / METRICS_FILE, scorer.extractor.name)
            skip = set(done.get(epoch, set())) | done.get(-1, set())
            rows = scorer.score_checkpoint(net.G_ema, epoch, kimg, skip=skip, network_file=path)
            print(f"{path.name}: epoch {epoch} ({how}), {kimg:g} kimg, {len(rows)} metric row(s)")
            del net
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return build_report([out], rule=rule)


def outside_main(argv: list[str]) -> int:
    p = Parser(prog="stylegan-blend-eval", description="Score the checkpoints of any trainer: blends with the "
                "base network at every swap resolution, style + identity per cell, metrics.csv and a report.")
    p.add_argument("--base", type=Path, required=True, help="base (real-face) network: .pkl, .pt or ours")
    p.add_argument("--checkpoints", type=Path, required=True,
                   help="folder of fine-tuned checkpoints (network-snapshot-*.pkl, rosinality .pt, ours)")
    p.add_argument("--data", type=Path, required=True, help="target (stylised) image folder, prepared")
    p.add_argument("--out", type=Path, required=True, help="output folder (metrics.csv, samples/, report/)")
    b, m = BlendConfig(), MetricsConfig()  # the defaults of blend.* / metrics.* / selection.rule
    p.add_argument("--swap-res", default=",".join(map(str, b.swap_res)), help="comma-separated swap resolutions")
    p.add_argument("--directions", default=",".join(b.directions), help="low_base and/or low_tuned, comma-separated")
    p.add_argument("--extractor", default=m.extractor, help="inception (real FID/KID) or randcnn (offline proxy)")
    p.add_argument("--inception-path", default=m.inception_path)
    p.add_argument("--num-gen", type=int, default=m.num_gen)
    p.add_argument("--identity", default=m.identity, help="auto (identity_dlib from 64 px when installed, else "
                   "proxy), identity_dlib, proxy, identity_facenet, lpips, or none")
    p.add_argument("--identity-weights", default=m.identity_weights,
                   help="local weights file for identity_facenet / lpips (identity_dlib: another .dat)")
    p.add_argument("--identity-num", type=int, default=m.identity_num, help="seeds paired with the base per cell")
    p.add_argument("--source-data", default=m.source_data, help="also score against the source set (src_ metrics)")
    p.add_argument("--rule", default=DEFAULT_RULE, help="selection rule: knee, min_identity=X, weighted=A")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    try:
        swaps = [int(r) for r in args.swap_res.split(",") if r]
    except ValueError:
        raise UserError(f"--swap-res {args.swap_res!r}: expected comma-separated integers like 16,32,64") from None
    blend = BlendConfig(swap_res=swaps, directions=[d for d in args.directions.split(",") if d])
    metrics = MetricsConfig(extractor=args.extractor, num_gen=args.num_gen, inception_path=args.inception_path,
                            source_data=args.source_data, identity=None if args.identity == "none" else args.identity,
                            identity_weights=args.identity_weights, identity_num=args.identity_num)
    index = score_outside_run(args.base, args.checkpoints, args.data, args.out, blend, metrics, args.rule,
                              check_device(args.device))
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
    print(f"{added} metric row(s) added to {Path(cfg.run_dir) / METRICS_FILE}")


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
