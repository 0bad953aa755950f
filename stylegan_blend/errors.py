"""Expected failures and the one place that turns them into a single `error: ...` line and an exit code.

Every command (`stylegan-blend *`, `stylegan-blend-train`, `stylegan-blend-eval`) ends through
`report_failure`, so a bad value or a problem of the environment (full disk, missing device, not enough
memory) reads the same everywhere and never as a traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import importlib
import re
import sys


class UserError(Exception):
    """Bad input (missing/corrupt file, wrong value). The message names the file or value and what was expected."""


class Terminated(UserError):
    """The run was stopped by SIGTERM after saving its checkpoint; schedulers must see a failure."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended


def failure_line(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for an expected failure; None for a bug."""
    import torch

    if type(exc).__name__ == "ProcessRaisedException":  # a ddp_spawn worker's failure, as traceback text
        inner = _worker_exception(str(exc))
        return failure_line(inner) if inner is not None else None
    if isinstance(exc, UserError) or getattr(exc, "expected", False):
        return str(exc), getattr(exc, "exit_code", 1)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if type(exc).__name__ == "MisconfigurationException":  # Lightning's word for a bad trainer setting
        return f"trainer: {str(exc).strip().splitlines()[0]}", 1
    if type(exc).__module__.startswith("omegaconf"):  # a key or value of the composed config
        text = str(exc).strip().splitlines()
        return f"config: {text[0] if text else type(exc).__name__}", 1
    if isinstance(exc, torch.cuda.OutOfMemoryError) or isinstance(exc, MemoryError):
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else "allocation failed"
        return (f"not enough memory ({what[:160]}); use a smaller resolution, batch, --num-gen or number of "
                f"seeds"), 1
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        if exc.errno == errno.ENOSPC:
            return f"{where}no space left on device; free some space and run again", 1
        return f"{where}{exc.strerror or exc}", 1
    if isinstance(exc, RuntimeError) and _is_device_error(str(exc)):
        return f"device not available ({str(exc).strip().splitlines()[0][:160]}); expected cpu or an available cuda[:N]", 1
    return None


def _worker_exception(text: str) -> BaseException | None:
    """torch.multiprocessing hands the parent only the worker's formatted traceback; rebuild the exception from its
    last line (`package.module.Class: message`) so an expected failure in a worker still reads as one line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    m = re.match(r"^([A-Za-z_][\w.]*)\.([A-Za-z_]\w*): (.+)$", lines[-1]) if lines else None
    if m is None:
        return None
    module, name, message = m.groups()
    try:
        cls = getattr(importlib.import_module(module), name)
        return cls(message) if isinstance(cls, type) and issubclass(cls, BaseException) else None
    except Exception:  # noqa: BLE001 - not importable or not constructible from a message: keep the traceback
        return None


def _is_device_error(text: str) -> bool:
    t = text.lower()
    return any(s in t for s in ("expected one of cpu, cuda", "invalid device", "torch not compiled with cuda",
                                "no cuda gpus are available", "invalid device ordinal", "found no nvidia driver"))


def report_failure(exc: BaseException) -> int | None:
    """Print the one error line of an expected failure and return its exit code; None for a bug."""
    found = failure_line(exc)
    if found is None:
        return None
    message, code = found
    print(f"error: {message}", file=sys.stderr)
    return code


def check_device(name) -> str:
    """'auto' -> cuda when present; otherwise the name must parse and the device must exist."""
    import torch

    text = str(name).strip()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"device {text!r}: not a device name; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {text!r}: CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {text!r}: only {torch.cuda.device_count()} CUDA device(s) here "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type not in ("cpu", "mps"):
        raise UserError(f"device {text!r}: not supported; expected auto, cpu, cuda or cuda:N")
    return text
