"""`stylegan-blend` command line: every command adapter in `commands/` adds its subcommands."""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from ..errors import report_failure
from .commands import Parser, blend, checkpoints, data, evaluate, identity, report, stylize

COMMANDS = (checkpoints, data, blend, evaluate, report, stylize, identity)  # the order of `--help`


def _version() -> str:
    try:
        return version("stylegan-blend")
    except PackageNotFoundError:  # a checkout on PYTHONPATH without `pip install`
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="stylegan-blend", description="StyleGAN2 transfer learning and layer-swap blending.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / usage error: return the code so main() can be called in-process
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # expected failures -> one line (errors.report_failure)
        code = report_failure(exc)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
