"""Long-format metrics CSV of the run directory (contract: one row per epoch x swap cell x metric).

`network_sha256` records the SHA-256 of the network file a row was computed from, so a row can always be
matched with the file on disk (files written before the column existed are read and extended as they are).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

from ..errors import UserError

METRICS_CSV_COLUMNS = ("epoch", "kimg", "swap_res", "direction", "metric", "value", "n_gen", "n_ref", "extractor",
                       "network_sha256")
_LEGACY_COLUMNS = METRICS_CSV_COLUMNS[:-1]


def read_metrics_rows(path) -> list[dict]:
    """The rows of an existing metrics CSV (empty list if there is none); one UserError line if it is not one."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise UserError(f"metrics CSV {path}: not a file; expected a CSV with columns {','.join(METRICS_CSV_COLUMNS)}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"metrics CSV {path}: not a text file; expected a CSV with columns "
                        f"{','.join(METRICS_CSV_COLUMNS)}") from None
    if "\0" in text:
        raise UserError(f"metrics CSV {path}: binary data; expected a CSV with columns {','.join(METRICS_CSV_COLUMNS)}")
    if not text.strip():
        return []
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = list(reader.fieldnames or [])
        if header not in (list(METRICS_CSV_COLUMNS), list(_LEGACY_COLUMNS)):
            raise UserError(f"metrics CSV {path}: header {','.join(header)!r} is not {','.join(METRICS_CSV_COLUMNS)}")
        return [{k: row.get(k) or "" for k in METRICS_CSV_COLUMNS} for row in reader]
    except csv.Error as exc:
        raise UserError(f"metrics CSV {path}: malformed ({exc})") from None


def write_metrics_rows(path, rows: list[dict]) -> None:
    """Write the whole file through a temp file + rename (a crash or a full disk never leaves half a file)."""
    from ..checkpoints.network import atomic_write

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        unknown = set(row) - set(METRICS_CSV_COLUMNS)
        if unknown:
            raise ValueError(f"metrics row has unknown columns {sorted(unknown)}")
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRICS_CSV_COLUMNS})
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def append_metrics_rows(path, rows: list[dict], replace: Callable[[dict], bool] | None = None) -> None:
    """Add rows (dicts keyed by METRICS_CSV_COLUMNS; missing keys left empty). `replace(old_row)` marks
    existing rows the new ones supersede: they are dropped in the same atomic rewrite, never before."""
    old = read_metrics_rows(path)
    if replace is not None:
        old = [r for r in old if not replace(r)]
    write_metrics_rows(path, old + list(rows))


def cell_key(row: dict) -> tuple:
    """What identifies a score: epoch (none for the base model), cell, metric and extractor."""
    epoch = "" if str(row.get("swap_res")) == "base" else str(int(float(row.get("epoch") or 0)))
    return (epoch, str(row.get("swap_res")), str(row.get("direction") or ""), str(row.get("metric")),
            str(row.get("extractor") or ""))
