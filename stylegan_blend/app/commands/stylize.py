"""`stylegan-blend stylize`: photos -> aligned crop | base reconstruction | blended render(s), plus w (.npz)."""
from __future__ import annotations

from pathlib import Path

from ...blending.swap import DIRECTIONS
from ...errors import UserError, check_device
from ...evaluation.config import MetricsConfig
from ...run.layout import network_path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stylize", help="project real face photos into the base model and render them with a blend",
        description="For each photo: FFHQ-style alignment (MTCNN landmarks), projection into the base "
                    "generator's W space, then renders of the same w by the base model and by the blend. "
                    "Writes <name>_stylized.png, a labelled row [aligned | base reconstruction | one column per "
                    "blend or --swap-res entry, in the order given], and <name>.npz (NVIDIA's projected_w format).")
    p.add_argument("photo", metavar="PHOTO|DIR", type=Path, help="a photo, or a folder of photos")
    p.add_argument("--base", required=True, metavar="PATH", help="base (real-face) network: any supported format")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--blend", metavar="PATH", help="a blended network file (from `stylegan-blend blend`)")
    which.add_argument("--run", metavar="RUN_DIR", type=Path,
                       help="training run: blend its networks/epoch=NNNN.pt with --base on the fly")
    p.add_argument("--epoch", type=int, help="with --run: which exported epoch")
    p.add_argument("--swap-res", metavar="R[,R...]",
                   help="with --run: swap resolution(s), e.g. 16 or 16,32,64 (one column each); "
                        "'none' = the fine-tuned model unblended")
    p.add_argument("--direction", default="low_base", choices=DIRECTIONS,
                   help="with --run: low_base = base coarse blocks + tuned fine blocks (default); "
                        "low_tuned = the reverse ('toonify')")
    p.add_argument("--outdir", required=True, type=Path, help="output folder (created)")
    p.add_argument("--w", dest="w_path", metavar="NPZ", type=Path,
                   help="re-render this saved w instead of projecting (one photo only)")
    p.add_argument("--steps", type=int, default=1000, help="projection steps (default 1000)")
    p.add_argument("--w-plus", action="store_true", help="optimise one w per layer (W+) instead of one w")
    p.add_argument("--all-faces", action="store_true", help="stylise every face found, not only the largest")
    p.add_argument("--no-align", action="store_true", help="centre-crop instead of detecting and aligning a face")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if present")
    p.add_argument("--seed", type=int, default=0, help="seed of the projection's noise (default 0)")
    p.add_argument("--identity", default="auto",
                   choices=("auto", "identity_dlib", "proxy", "identity_facenet", "lpips", "none"),
                   help="print each render's identity distance to the input photo with this extractor, also "
                        "normalised by the base model's another-person distance (idbase over seeds 0-99); auto "
                        "(default) = identity_dlib from 64 px when installed, else proxy; none = skip")
    p.add_argument("--lpips-path", metavar="PATH",
                   help="VGG LPIPS weights (NVIDIA's vgg16.pt or an lpips.LPIPS(net='vgg') state dict); "
                        "default $STYLEGAN_BLEND_LPIPS, else the offline pyramid + D-feature loss")
    p.set_defaults(func=stylize_command)


def resolve_device(choice: str) -> str:
    return check_device(choice)


def parse_swap_res(text: str | None) -> list[int | None]:
    """'16,32' -> [16, 32]; 'none' -> None (the fine-tuned model itself)."""
    if not text:
        raise UserError("--run needs --swap-res, e.g. --swap-res 16 or 16,32,64")
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "none":
            out.append(None)
        elif part.isdigit() and int(part) >= 4:
            out.append(int(part))
        else:
            raise UserError(f"--swap-res {text!r}: bad item {part!r}; expected resolutions like 16,32 or 'none'")
    return out


def _check_args(args) -> None:
    if args.run is None and (args.epoch is not None or args.swap_res is not None):
        raise UserError("--epoch and --swap-res go with --run; --blend takes a ready blended network")
    if args.run is not None and args.epoch is None:
        raise UserError("--run needs --epoch (an exported networks/epoch=NNNN.pt)")
    if args.steps < 1:
        raise UserError(f"--steps {args.steps}: expected a positive number of projection steps")
    if args.w_path is not None and not args.w_path.is_file():
        raise UserError(f"{args.w_path}: no such .npz file (--w)")


def build_blends(args, base, device) -> list:
    """The generators that render the stylised column(s), each checked against the base model's W space."""
    from ...blending.swap import blend_generators, direction_pair
    from ...checkpoints import load_network
    from ...projection.stylize import check_compatible

    if args.blend is not None:
        G = load_network(args.blend, device=device).G_ema
        check_compatible(base.G_ema, G, str(args.blend))
        return [G]
    path = network_path(args.run, args.epoch)
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("epoch=*.pt"))
        raise UserError(f"{path}: no exported network for epoch {args.epoch}; found {', '.join(found) or 'none'}")
    tuned = load_network(path, device=device).G_ema
    check_compatible(base.G_ema, tuned, str(path))
    blends = []
    for swap_res in parse_swap_res(args.swap_res):
        if swap_res is None:
            blends.append(tuned)
        else:
            low, high = direction_pair(base.G_ema, tuned, args.direction)
            blends.append(blend_generators(low, high, swap_res, width=0.0, mapping="low").eval())
    return blends


def blend_labels(args) -> list[str]:
    """What each stylised column shows, for the sheet's labels (same order as `build_blends`)."""
    if args.blend is not None:
        return [f"blend {Path(args.blend).stem}"]
    return [f"fine-tuned\n(epoch {args.epoch})" if r is None else f"swap {r}\n({args.direction})"
            for r in parse_swap_res(args.swap_res)]


def stylize_command(args) -> int:
    from ...checkpoints import load_network
    from ...projection.align import aligned_faces
    from ...projection.project import load_w, resolve_lpips_path
    from ...projection.stylize import list_photos, save_outputs, sheet_labels, stylize_aligned

    _check_args(args)
    device = resolve_device(args.device)
    photos = list_photos(args.photo)
    if args.w_path is not None and (len(photos) > 1 or args.all_faces):
        raise UserError(f"--w {args.w_path}: one saved w re-renders one face; give a single photo without --all-faces")
    lpips_path = resolve_lpips_path(args.lpips_path)
    base = load_network(args.base, device=device)
    G = base.G_ema
    w = None if args.w_path is None else load_w(args.w_path, G.num_ws, G.w_dim)
    blends = build_blends(args, base, device)

    # Detect and align everything first: a photo without a face fails before minutes of projection.
    jobs = []
    for photo in photos:
        crops = aligned_faces(photo, G.img_resolution, align=not args.no_align, all_faces=args.all_faces,
                              device=device)
        for k, (crop, found) in enumerate(crops):
            print(f"{photo}: {found}", flush=True)
            jobs.append((f"{photo.stem}_face{k}" if args.all_faces else photo.stem, crop))

    identity = identity_check(args.identity, G, device)
    args.outdir.mkdir(parents=True, exist_ok=True)
    labels = sheet_labels(blend_labels(args), aligned=not args.no_align)
    for i, (name, crop) in enumerate(jobs):
        result = stylize_aligned(G, blends, crop, steps=args.steps, w=w, w_plus=args.w_plus, D=base.D,
                                 seed=args.seed, device=device, lpips_path=lpips_path, progress=True,
                                 description=f"face {i + 1}/{len(jobs)} {name}")
        png, _npz = save_outputs(args.outdir, name, result, labels)
        how = "given w" if result.loss_name is None else f"{args.steps} steps, loss {result.loss_name}"
        print(f"{png} ({how}, {result.seconds:.1f} s on {device})")
        if identity is not None:
            print(identity_line(*identity, result, labels[1:]))
    return 0


IDENTITY_SEEDS = MetricsConfig.identity_num  # the same idbase a run's idnorm_* uses


def identity_check(name: str, G, device) -> tuple | None:
    """(extractor, the base model's idbase over seeds 0-99) for the per-render identity line; None for 'none'."""
    if name == "none":
        return None
    from ...evaluation.identity import identity_baseline, make_identity
    from ...evaluation.scoring import identity_features

    extractor = make_identity(name, device=device, resolution=G.img_resolution)
    return extractor, identity_baseline(extractor, identity_features(G, extractor, IDENTITY_SEEDS, device=device))


def identity_line(extractor, idbase: float, result, labels: list[str]) -> str:
    """`  identity to the input photo (...): base reconstruction 0.312 (0.60), swap 16 (low_base) ...`"""
    from ...projection.stylize import identity_to_input

    parts = [f"{label.replace(chr(10), ' ')} {d:.3f} ({d / idbase:.2f})"
             for label, d in zip(labels, identity_to_input(extractor, result))]
    proxy = ", a proxy, not a face network" if extractor.name == "proxy" else ""
    return (f"  identity to the input photo ({extractor.metric}{proxy}; in brackets / the base model's "
            f"another-person distance {idbase:.3f}, 1.0 = another person): " + ", ".join(parts))


__all__ = ["register", "stylize_command", "parse_swap_res", "resolve_device", "identity_check", "identity_line"]
