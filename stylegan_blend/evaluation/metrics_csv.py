"""Long-format metrics CSV of the run directory (contract: one row per epoch x swap cell x metric)."""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from ..errors import UserError

METRICS_CSV_COLUMNS = ("epoch", "kimg", "swap_res", "direction", "metric", "value", "n_gen", "n_ref", "extractor")


def append_metrics_rows(path, rows: list[dict]) -> None:
    """Append rows (dicts keyed by METRICS_CSV_COLUMNS; missing keys are left empty), writing the header for a
    new file. The file is rewritten through a temp file + rename, so a crash never leaves half a row."""
    path = Path(path)
    old = ""
    if path.is_file():
        old = path.read_text()
        header = old.splitlines()[0] if old.strip() else ""
        if header and header.split(",") != list(METRICS_CSV_COLUMNS):
            raise UserError(f"metrics CSV {path}: header {header!r} is not {','.join(METRICS_CSV_COLUMNS)}")
        if old and not old.endswith("\n"):
            old += "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_CSV_COLUMNS, lineterminator="\n")
    if not old.strip():
        writer.writeheader()
    for row in rows:
        unknown = set(row) - set(METRICS_CSV_COLUMNS)
        if unknown:
            raise ValueError(f"metrics row has unknown columns {sorted(unknown)}")
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRICS_CSV_COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(old + buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
