"""`stylegan-blend blend`: write a layer-swapped generator as a native network file."""
from __future__ import annotations

from ...blending.swap import MAPPING_CHOICES
from . import device_arg


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "blend", help="layer-swap two generators into a new network file",
        description="Blocks b4..b{swap-res} come from LOW, the higher blocks from HIGH; --width > 0 ramps "
                    "between them with a sigmoid over log2(resolution). Both must share one architecture.")
    p.add_argument("--low", required=True, metavar="PATH", help="network for the low-resolution blocks (structure)")
    p.add_argument("--high", required=True, metavar="PATH", help="network for the high-resolution blocks (style)")
    p.add_argument("--swap-res", required=True, type=int, metavar="RES",
                   help="last resolution taken from LOW, e.g. 16 (a power of two, 4 ... R/2)")
    p.add_argument("--width", type=float, default=0.0, help="soft-swap width in octaves (default 0: hard swap)")
    p.add_argument("--mapping", default="low", choices=MAPPING_CHOICES,
                   help="which model's mapping network and w_avg to keep (default low)")
    p.add_argument("--out", required=True, metavar="PATH", help="native network file to write (.pt)")
    p.add_argument("--device", default="cpu", type=device_arg, help="device to blend on (default cpu)")
    p.set_defaults(func=blend_command)


def blend_command(args) -> int:
    from ...blending.swap import blend_generators, check_mapping, check_width
    from ...checkpoints import load_network, save_network

    check_width(args.width)
    check_mapping(args.mapping)
    low = load_network(args.low, device=args.device)
    high = load_network(args.high, device=args.device)
    G = blend_generators(low.G_ema, high.G_ema, args.swap_res, args.width, args.mapping)
    blend = dict(low=str(args.low), high=str(args.high), swap_res=int(args.swap_res), width=float(args.width),
                 mapping=args.mapping)
    save_network(args.out, G, meta=dict(blend=blend))
    kind = "hard" if args.width == 0 else f"soft (width {args.width:g})"
    print(f"wrote {args.out}: {kind} swap at {args.swap_res} px, b4..b{args.swap_res} from {args.low}, "
          f"b{2 * args.swap_res}..b{G.img_resolution} from {args.high}, mapping from {args.mapping}")
    return 0
