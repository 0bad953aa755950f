"""`stylegan-blend` command line: each feature package contributes its subcommands via `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import report_failure

# Feature packages that add subcommands; one not written yet is skipped so the CLI always starts.
COMMAND_MODULES = (
    "stylegan_blend.checkpoints.commands",
    "stylegan_blend.data.commands",
    "stylegan_blend.blending.commands",
    "stylegan_blend.evaluation.commands",
    "stylegan_blend.reporting.commands",
    "stylegan_blend.projection.commands",
    "stylegan_blend.projection.identity_command",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `error: ...` line (exit 2), without the usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stylegan-blend",
                     description="StyleGAN2 transfer learning and layer-swap blending.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that feature package does not exist (yet)
            raise
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
