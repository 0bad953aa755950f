"""The run's two long-format tables: metrics.csv (one row per epoch × cell × metric) and diagnostics.csv.

`network_sha256` records the SHA-256 of the network file a metrics row was computed from, so a row can always be
matched with the file on disk; files written before the column existed are read and extended as they are.
Writers go through `append_metrics_rows` / `append_diagnostics` (whole-file atomic rewrites: a crash or a full
disk never leaves half a row); readers get `MetricRow` objects from `read_metrics`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .files import write_text_atomic
from .layout import REFERENCE_CELLS, cell_name

METRICS_COLUMNS = (
    "epoch",
    "kimg",
    "swap_res",
    "direction",
    "metric",
    "value",
    "n_gen",
    "n_ref",
    "extractor",
    "network_sha256",
)
METRICS_REQUIRED = METRICS_COLUMNS[:-1]  # what a reader needs: files from before network_sha256 lack the last
DIAGNOSTICS_COLUMNS = ("epoch", "kimg", "metric", "value")


@dataclass(frozen=True)
class MetricRow:
    """One score of one generator (a blend, the unblended fine-tuned G_ema, or the base) at one checkpoint."""

    epoch: int
    kimg: float
    swap_res: int | None  # None for the reference cells `base` / `none`
    direction: str
    metric: str
    value: float
    n_gen: int | None
    n_ref: int | None
    extractor: str
    cell: str
    network_sha256: str = ""  # the scored network file's hash ("" in files written before the column)


@dataclass(frozen=True)
class DiagnosticRow:
    epoch: int
    kimg: float
    metric: str
    value: float


# ------------------------------------------------------------------------------------ writing (plain dicts)


def read_metrics_rows(path: str | Path) -> list[dict]:
    """The rows of an existing metrics CSV as dicts (empty list if there is none); one UserError line if the file
    is not one of ours. What writers read before appending."""
    path = Path(path)
    if not path.exists():
        return []
    expected = f"expected a CSV with columns {','.join(METRICS_COLUMNS)}"
    if not path.is_file():
        raise UserError(f"metrics CSV {path}: not a file; {expected}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"metrics CSV {path}: not a text file; {expected}") from None
    if "\0" in text:
        raise UserError(f"metrics CSV {path}: binary data; {expected}")
    if not text.strip():
        return []
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = list(reader.fieldnames or [])
        if header not in (list(METRICS_COLUMNS), list(METRICS_REQUIRED)):
            raise UserError(f"metrics CSV {path}: header {','.join(header)!r} is not {','.join(METRICS_COLUMNS)}")
        return [{k: row.get(k) or "" for k in METRICS_COLUMNS} for row in reader]
    except csv.Error as exc:
        raise UserError(f"metrics CSV {path}: malformed ({exc})") from None


def write_metrics_rows(path: str | Path, rows: list[dict]) -> None:
    """Write the whole file through a temp file + rename."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        unknown = set(row) - set(METRICS_COLUMNS)
        if unknown:
            raise ValueError(f"metrics row has unknown columns {sorted(unknown)}")
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRICS_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def append_metrics_rows(path: str | Path, rows: list[dict], replace: Callable[[dict], bool] | None = None) -> None:
    """Add rows (dicts keyed by METRICS_COLUMNS; missing keys left empty). `replace(old_row)` marks
    existing rows the new ones supersede: they are dropped in the same atomic rewrite, never before."""
    old = read_metrics_rows(path)
    if replace is not None:
        old = [r for r in old if not replace(r)]
    write_metrics_rows(path, old + list(rows))


def cell_key(row: Mapping) -> tuple:
    """What identifies a score: epoch (none for the base model), cell, metric and extractor."""
    epoch = "" if str(row.get("swap_res")) == "base" else str(int(float(row.get("epoch") or 0)))
    return (
        epoch,
        str(row.get("swap_res")),
        str(row.get("direction") or ""),
        str(row.get("metric")),
        str(row.get("extractor") or ""),
    )


def scored_cells(path: str | Path, extractor: str | None = None) -> dict[int, set]:
    """{epoch: {(swap_res, direction), ...}} already scored in a metrics CSV (with `extractor` when given: another
    feature space does not count); base rows under key -1."""
    done: dict[int, set] = {}
    for row in read_metrics_rows(path):
        if extractor is not None and row["extractor"] != extractor:
            continue
        key = -1 if row["swap_res"] == "base" else int(float(row["epoch"]))
        done.setdefault(key, set()).add((row["swap_res"], row["direction"]))
    return done


def append_diagnostics(path: str | Path, epoch: int, kimg: float, row: Mapping[str, float]) -> None:
    """One epoch's diagnostics, whole rows only even if the process is killed (atomic rewrite)."""
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not path.exists():
        w.writerow(DIAGNOSTICS_COLUMNS)
    for k, v in row.items():
        w.writerow([epoch, f"{kimg:.3f}", k, f"{v:.6g}"])
    old = path.read_text() if path.exists() else ""
    write_text_atomic(path, old + buf.getvalue())


# ------------------------------------------------------------------------------------ reading (typed rows)


def _read_csv(path: Path, expected: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; one UserError line if the header lacks a contract column."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in expected if c not in header]
            if missing:
                raise UserError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected columns: {','.join(expected)}"
                )
            reader.fieldnames = header
            return [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a text CSV file ({exc.reason}); expected columns: {','.join(expected)}")
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV ({exc}); expected columns: {','.join(expected)}")


def _field(row: Mapping, key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def _number(where: str, row: Mapping, key: str, kind=float, optional: bool = False):
    raw = _field(row, key)
    if raw == "" and optional:
        return None
    if raw == "" and kind is float:
        return math.nan  # a score that failed to compute; shown as missing
    try:
        return int(float(raw)) if kind is int else float(raw)
    except ValueError:
        raise UserError(f"{where}: column {key} = {raw!r} is not a number") from None


def parse_metric_row(row: Mapping, where: str) -> MetricRow:
    """One metrics.csv row (strings, or plain values from a dict) -> MetricRow; `where` names it in errors."""
    swap_raw, direction, metric = _field(row, "swap_res"), _field(row, "direction"), _field(row, "metric")
    if swap_raw in REFERENCE_CELLS:
        swap_res, direction = None, ""
    else:
        swap_res = _number(where, row, "swap_res", int)
        if not direction:
            raise UserError(f"{where}: swap_res {swap_raw} has no direction; expected low_base or low_tuned")
    if not metric:
        raise UserError(f"{where}: empty metric name")
    return MetricRow(
        epoch=_number(where, row, "epoch", int),
        kimg=_number(where, row, "kimg"),
        swap_res=swap_res,
        direction=direction,
        metric=metric,
        value=_number(where, row, "value"),
        n_gen=_number(where, row, "n_gen", int, optional=True),
        n_ref=_number(where, row, "n_ref", int, optional=True),
        extractor=_field(row, "extractor"),
        cell=cell_name(swap_raw if swap_res is None else swap_res, direction),
        network_sha256=_field(row, "network_sha256"),
    )


def read_metrics(path: str | Path) -> list[MetricRow]:
    """Parse a metrics.csv (a run's, or any file with its columns); UserError when it has no rows."""
    path = Path(path)
    rows = [parse_metric_row(row, f"{path}:{line}") for line, row in _read_csv(path, METRICS_REQUIRED)]
    if not rows:
        raise UserError(
            f"{path}: no rows; expected one row per (epoch, swap_res, direction, metric) "
            f"with columns {','.join(METRICS_REQUIRED)}"
        )
    return rows


def as_metric_rows(rows: Iterable) -> list[MetricRow]:
    """MetricRow objects, dicts with metrics.csv keys, or a path to a metrics CSV -> MetricRows."""
    if isinstance(rows, (str, Path)):
        return read_metrics(Path(rows))
    return [r if isinstance(r, MetricRow) else parse_metric_row(r, f"row {i}") for i, r in enumerate(rows)]


def read_diagnostics(path: str | Path) -> list[DiagnosticRow]:
    path = Path(path)
    return [
        DiagnosticRow(
            epoch=_number(f"{path}:{line}", row, "epoch", int),
            kimg=_number(f"{path}:{line}", row, "kimg"),
            metric=_field(row, "metric"),
            value=_number(f"{path}:{line}", row, "value"),
        )
        for line, row in _read_csv(path, DIAGNOSTICS_COLUMNS)
    ]
