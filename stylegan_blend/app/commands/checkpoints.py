"""`stylegan-blend convert | inspect | generate`: network files in, network files / images out."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from ...checkpoints import load_network, save_network
from ...checkpoints.export import export
from ...errors import UserError, check_device
from ...networks.sampling import generate_images, parse_seeds
from ...reporting.sheet import comparison_sheet, save_sheet, wrap
from ...run.files import atomic_write


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="any supported checkpoint -> stylegan-blend, NVIDIA or rosinality file",
                              description="Convert a checkpoint (native, Lightning .ckpt, NVIDIA .pkl, TensorFlow "
                                          "StyleGAN2(-ADA) .pkl, rosinality .pt; detected from content) into a "
                                          "stylegan-blend network file (default), an NVIDIA stylegan2-ada-pytorch .pkl "
                                          "(loads with its legacy.load_network_pkl inside NVIDIA's checkout) or a "
                                          "rosinality .pt, keeping G, D and G_ema.")
    p.add_argument("src", type=Path, help="checkpoint to read")
    p.add_argument("dst", type=Path, help="file to write")
    p.add_argument("--to", choices=("native", "nvidia-pkl", "rosinality"), default="native",
                   help="output format (default native)")
    p.set_defaults(func=convert_command)

    p = subparsers.add_parser("inspect", help="show a checkpoint's format, architecture and sizes")
    p.add_argument("path", type=Path, help="checkpoint to describe")
    p.set_defaults(func=inspect_command)

    p = subparsers.add_parser("generate", help="images for seeds (NVIDIA generate.py's seed convention)",
                              description="Write OUTDIR/seed0000.png ... with z = RandomState(seed).randn(1, z_dim), "
                                          "so a published seed gives the published image.")
    p.add_argument("--network", type=Path, required=True, help="checkpoint of any supported format")
    p.add_argument("--seeds", required=True, help="seeds, e.g. 0-3,7")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1.0 = none)")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const")
    p.add_argument("--outdir", type=Path, required=True, help="folder for the PNGs (created if missing)")
    p.add_argument("--grid", action="store_true", help="also write grid.png: all images labelled with their seeds, small ones enlarged")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.set_defaults(func=generate_command)


def convert_command(args) -> int:
    net = load_network(args.src)
    kept = ", ".join(k for k in ("G_ema", "G", "D") if getattr(net, k) is not None)
    if getattr(args, "to", "native") == "native":
        meta = dict(net.meta, source=str(args.src), source_format=net.format)
        save_network(args.dst, net.G_ema, G=net.G, D=net.D, meta=meta)
        print(f"{args.src} ({net.format}) -> {args.dst}: {kept}")
        return 0
    notes = export(net, args.to, args.dst)
    print(f"{args.src} ({net.format}) -> {args.dst} ({args.to}): {kept}" + "".join(f"; {n}" for n in notes))
    return 0


def _count(module) -> str:
    return "-" if module is None else f"{sum(p.numel() for p in module.parameters()):,}"


def inspect_command(args) -> int:
    from rich.console import Console
    from rich.table import Table

    net = load_network(args.path)
    G = net.G_ema
    channels = {b.resolution: b.out_channels for b in G.synthesis.blocks()}
    table = Table(title=str(args.path), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [("format", net.format), ("resolution", f"{G.img_resolution} px, {G.img_channels} channels"),
            ("z_dim / w_dim", f"{G.z_dim} / {G.w_dim}"), ("num_ws", str(G.num_ws)),
            ("mapping layers", str(G.mapping.num_layers)),
            ("G channels", "  ".join(f"{r}:{c}" for r, c in channels.items())),
            ("params G_ema", _count(G)), ("params G", _count(net.G)), ("params D", _count(net.D))]
    rows += [(key, str(net.meta[key])) for key in ("kimg", "epoch", "ada_p", "source_format", "tf_family", "blend")
             if key in net.meta]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _device(name: str) -> torch.device:
    return torch.device(check_device(name))


def _prepare_outdir(outdir: Path) -> None:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--outdir {outdir}: cannot create folder ({exc.strerror or exc})") from None
    if not outdir.is_dir():
        raise UserError(f"--outdir {outdir}: not a folder")


def _write_png(path: Path, image: torch.Tensor) -> None:
    array = image.numpy()
    mode = "L" if array.shape[-1] == 1 else "RGB"
    pil = Image.fromarray(array[..., 0] if mode == "L" else array, mode)
    atomic_write(path, lambda f: pil.save(f, format="PNG"))


def generate_command(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    seeds = parse_seeds(args.seeds)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: expected >= 1")
    if not math.isfinite(args.trunc):
        raise UserError(f"--trunc {args.trunc}: expected a finite number")
    device = _device(args.device)
    net = load_network(args.network, device=device)
    _prepare_outdir(args.outdir)
    images = []
    with Progress(console=Console(stderr=True), transient=True, disable=len(seeds) <= args.batch_size) as progress:
        task = progress.add_task("generating", total=len(seeds))
        for i in range(0, len(seeds), args.batch_size):
            chunk = seeds[i:i + args.batch_size]
            batch = generate_images(net.G_ema, chunk, truncation_psi=args.trunc, noise_mode=args.noise_mode,
                                    batch_size=args.batch_size, device=device)
            for seed, image in zip(chunk, batch):
                _write_png(args.outdir / f"seed{seed:04d}.png", image)
            if args.grid:
                images.append(batch)
            progress.advance(task, len(chunk))
    if args.grid:
        n_cols = math.ceil(math.sqrt(len(seeds)))
        tiles = [image.numpy() for image in torch.cat(images)]
        title = f"{args.network.name}: truncation {args.trunc:g}, noise {args.noise_mode}"
        sheet = comparison_sheet(wrap(tiles, n_cols), captions=wrap([f"seed {s}" for s in seeds], n_cols),
                                 title=title)
        save_sheet(args.outdir / "grid.png", sheet)
    print(f"wrote {len(seeds)} image(s) to {args.outdir}" + (" and grid.png" if args.grid else ""))
    return 0
