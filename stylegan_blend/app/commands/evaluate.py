"""`stylegan-blend evaluate`: FID/KID (or proxy FD/KD) of one network against a prepared dataset."""
from __future__ import annotations

import logging

from ...checkpoints import load_network
from ...errors import UserError
from ...evaluation.extractors import EXTRACTORS, find_inception, make_extractor
from ...evaluation.reference import SPLITS, reference_features
from ...evaluation.scoring import generated_features, score
from ...run.files import file_sha256
from ...run.tables import append_metrics_rows, read_metrics_rows
from . import device_arg

_KINDS = {"fid": 0, "fd": 0, "kid": 1, "kd": 1}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="FID/KID of a network against a dataset folder",
        description="Generates --num-gen images from fixed seeds and scores them against the dataset's "
                    "reference features (cached on disk). Only --extractor inception gives fid/kid; "
                    "randcnn gives offline proxy metrics fd_randcnn/kd_randcnn, not comparable with published FID.")
    p.add_argument("--network", required=True, metavar="PATH", help="native .pt, Lightning .ckpt, NVIDIA .pkl or rosinality .pt")
    p.add_argument("--data", required=True, metavar="DIR", help="prepared target-domain image folder")
    p.add_argument("--metrics", default="fid,kid", help="comma list of fid, kid (default both)")
    p.add_argument("--extractor", default="auto", choices=("auto",) + tuple(EXTRACTORS),
                   help="feature space; auto (default) = inception when its weights file is found "
                        "(--inception-path, $STYLEGAN_BLEND_INCEPTION or clean-fid's folder), else the randcnn proxy "
                        "as in training")
    p.add_argument("--num-gen", type=int, default=1000, metavar="N", help="generated images (default 1000)")
    p.add_argument("--seeds-start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1.0)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--split", default="train", choices=SPLITS, help="dataset split to score against (default train)")
    p.add_argument("--max-ref", type=int, default=None, metavar="N", help="use at most N reference images")
    p.add_argument("--inception-path", default=None, metavar="FILE", help="inception-2015-12-05.pt")
    p.add_argument("--source-data", default=None, metavar="DIR", help="also score against this source-domain "
                   "folder (metrics prefixed src_)")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="reference-feature cache "
                   "(default $STYLEGAN_BLEND_CACHE or ~/.cache/stylegan_blend/ref_stats)")
    p.add_argument("--csv", default=None, metavar="FILE", help="append long-format rows to this metrics CSV")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda, cuda:N or auto (default cpu)")
    p.set_defaults(func=evaluate_command)


def parse_metric_kinds(text: str) -> list[int]:
    """'fid,kid' -> [0, 1] (0 = Fréchet, 1 = kernel), in the order given."""
    kinds = []
    for name in (t.strip().lower() for t in text.split(",")):
        if name not in _KINDS:
            raise UserError(f"metric {name!r} in --metrics {text!r}: expected fid and/or kid")
        if _KINDS[name] not in kinds:
            kinds.append(_KINDS[name])
    return kinds


def _extractor_name(args) -> str:
    """`auto`: Inception when its weights are there (a given --inception-path must exist), else the proxy."""
    if args.extractor != "auto":
        return args.extractor
    if args.inception_path:
        return "inception"
    try:
        find_inception(None)
        return "inception"
    except UserError:
        print("no Inception weights found: scoring with the randcnn proxy (as training does); "
              "--inception-path FILE for real FID/KID")
        return "randcnn"


def evaluate_command(args) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    kinds = parse_metric_kinds(args.metrics)
    if args.num_gen < 2:
        raise UserError(f"--num-gen {args.num_gen}: expected at least 2")
    if args.max_ref is not None and args.max_ref < 2:
        raise UserError(f"--max-ref {args.max_ref}: expected at least 2 reference images")
    if args.csv:
        read_metrics_rows(args.csv)  # a wrong or binary --csv fails now, not after the scoring
    extractor = make_extractor(_extractor_name(args), device=args.device, inception_path=args.inception_path)
    net = load_network(args.network, device=args.device)
    G = net.G_ema
    res = G.img_resolution
    refs = {"": reference_features(extractor, args.data, res, args.cache_dir, args.split, args.max_ref)}
    if args.source_data:
        refs["src_"] = reference_features(extractor, args.source_data, res, args.cache_dir, "all", args.max_ref)
    gen = generated_features(G, extractor, args.num_gen, args.seeds_start, args.batch_size, args.trunc,
                             device=args.device)
    names = [extractor.metric_names[k] for k in kinds]
    rows = []
    for prefix, ref in refs.items():
        values = score(gen, ref, extractor, prefix=prefix)
        rows += [dict(metric=prefix + n, value=f"{values[prefix + n]:.6g}", n_gen=len(gen), n_ref=len(ref),
                      extractor=extractor.name) for n in names]
    print(f"{'metric':<16} {'value':>12} {'n_gen':>6} {'n_ref':>6}  extractor")
    for r in rows:
        print(f"{r['metric']:<16} {r['value']:>12} {r['n_gen']:>6} {r['n_ref']:>6}  {r['extractor']}")
    if not extractor.comparable:
        print(f"({extractor.name}: proxy metrics, not comparable with published FID/KID)")
    if args.csv:
        meta = net.meta or {}
        blend = meta.get("blend") or {}
        cell = dict(epoch=meta.get("epoch"), kimg=meta.get("kimg"), swap_res=blend.get("swap_res", "none"),
                    direction="", network_sha256=file_sha256(args.network))
        append_metrics_rows(args.csv, [dict(cell, **r) for r in rows])
        print(f"appended {len(rows)} rows to {args.csv}")
    return 0
