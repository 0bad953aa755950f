"""One adapter per `stylegan-blend` command: `register(subparsers)` adds its arguments; the handler turns them into
calls of the domain packages, imported inside the handler so that `stylegan-blend --help` starts fast."""
from __future__ import annotations

import argparse

from ...errors import UserError, check_device


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `error: ...` line (exit 2), without the usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def device_arg(text: str) -> str:
    """argparse `type=` for --device: a bad or unavailable device is a usage error (one line, exit 2)."""
    try:
        return check_device(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
