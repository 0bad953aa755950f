"""Read one training run directory (DESIGN §3): metrics.csv, diagnostics.csv, blend samples, Hydra config.

Everything the report shows is derived from these files, so a run can be re-reported at any time,
on any machine, without W&B.
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

METRICS_COLUMNS = ("epoch", "kimg", "swap_res", "direction", "metric", "value", "n_gen", "n_ref", "extractor")
DIAGNOSTICS_COLUMNS = ("epoch", "kimg", "metric", "value")
REFERENCE_CELLS = ("base", "none")  # the two unblended generators every blend is compared with
_EPOCH_DIR = re.compile(r"^epoch=(\d+)$")


def cell_name(swap_res: str | int, direction: str) -> str:
    """The cell id shared by metrics.csv rows and sample file names: `base`, `none` or `swap<r>_<direction>`."""
    if str(swap_res) in REFERENCE_CELLS:
        return str(swap_res)
    return f"swap{int(swap_res)}_{direction}"


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


@dataclass
class Run:
    """Everything the report needs from one run directory."""
    path: Path
    metrics: list[MetricRow]
    diagnostics: list[DiagnosticRow] | None  # None: the run has no diagnostics.csv
    samples: dict[tuple[int, str], Path]  # (epoch, cell) -> samples/blends/epoch=NNNN/<cell>.png
    stylized_dirs: list[Path]
    base_network: str | None  # blend.base from .hydra/config.yaml
    blend_options: dict[str, object] = field(default_factory=dict)  # width / mapping the scores were made with
    config_note: str = ""  # why base_network could not be read, if so
    overrides: list[str] = field(default_factory=list)  # Hydra overrides: what distinguishes sweep members
    style_reference: dict | None = None  # scores/style_reference.json: the split style is scored against, and why

    @property
    def name(self) -> str:
        return self.path.name

    def sample(self, epoch: int, cell: str) -> Path | None:
        """The cell's sample strip; the base model's (drawn once) stands in for every epoch."""
        if (epoch, cell) in self.samples or cell != "base":
            return self.samples.get((epoch, cell))
        drawn = [e for e, c in self.samples if c == "base"]
        return self.samples[(max(drawn), "base")] if drawn else None

    def network_path(self, epoch: int) -> Path:
        return self.path / "networks" / f"epoch={epoch:04d}.pt"


def _read_csv(path: Path, expected: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; one UserError line if the header lacks a contract column."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in expected if c not in header]
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(missing)}; "
                                f"expected columns: {','.join(expected)}")
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
    return MetricRow(epoch=_number(where, row, "epoch", int), kimg=_number(where, row, "kimg"),
                     swap_res=swap_res, direction=direction, metric=metric, value=_number(where, row, "value"),
                     n_gen=_number(where, row, "n_gen", int, optional=True),
                     n_ref=_number(where, row, "n_ref", int, optional=True),
                     extractor=_field(row, "extractor"),
                     cell=cell_name(swap_raw if swap_res is None else swap_res, direction),
                     network_sha256=_field(row, "network_sha256"))


def read_metrics(path: Path) -> list[MetricRow]:
    """Parse metrics.csv (long format, contract 5)."""
    rows = [parse_metric_row(row, f"{path}:{line}") for line, row in _read_csv(path, METRICS_COLUMNS)]
    if not rows:
        raise UserError(f"{path}: no rows; expected one row per (epoch, swap_res, direction, metric) "
                        f"with columns {','.join(METRICS_COLUMNS)}")
    return rows


def read_diagnostics(path: Path) -> list[DiagnosticRow]:
    return [DiagnosticRow(epoch=_number(f"{path}:{line}", row, "epoch", int),
                          kimg=_number(f"{path}:{line}", row, "kimg"), metric=_field(row, "metric"),
                          value=_number(f"{path}:{line}", row, "value"))
            for line, row in _read_csv(path, DIAGNOSTICS_COLUMNS)]


def find_samples(run_dir: Path) -> dict[tuple[int, str], Path]:
    samples = {}
    blends = run_dir / "samples" / "blends"
    if blends.is_dir():
        for epoch_dir in sorted(blends.iterdir()):
            match = _EPOCH_DIR.match(epoch_dir.name)
            if match and epoch_dir.is_dir():
                for png in sorted(epoch_dir.glob("*.png")):
                    if not png.stem.endswith(".tmp"):  # the callback's write-then-rename temp file
                        samples[(int(match.group(1)), png.stem)] = png
    return samples


def _read_config(run_dir: Path) -> tuple[str | None, dict[str, object], str, list[str]]:
    """blend.base (+ width/mapping) and the Hydra overrides. The report is still useful without them, so
    an unreadable config becomes a note on the page rather than an error."""
    from omegaconf import OmegaConf  # only here: keeps omegaconf out of every CLI start

    config_path = run_dir / ".hydra" / "config.yaml"
    base, options, note, overrides = None, {}, "", []
    if config_path.is_file():
        try:
            cfg = OmegaConf.load(config_path)
            blend = OmegaConf.select(cfg, "blend", default=None, throw_on_resolution_failure=False)
            raw = OmegaConf.to_container(blend, resolve=False) if OmegaConf.is_dict(blend) else {}
            base = OmegaConf.select(cfg, "blend.base", default=None, throw_on_resolution_failure=False)
            if base is None and raw.get("base") not in (None, ""):
                base = str(raw["base"])
                note = f"blend.base in {config_path} is an interpolation that only resolves inside Hydra; check it"
            if raw.get("width"):
                options["width"] = raw["width"]
            if raw.get("mapping"):
                options["mapping"] = raw["mapping"]
        except Exception as exc:  # noqa: BLE001 - any YAML/OmegaConf failure just loses the convenience
            note = f"could not read {config_path}: {exc}".splitlines()[0]
    if base is None and not note:
        where = f"blend.base is not set in {config_path}" if config_path.is_file() else f"no {config_path}"
        note = (f"{where}: replace <BASE> with the base network the run was fine-tuned from "
                f"(set blend.base in the training config for future runs)")
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    if overrides_path.is_file():
        try:
            overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides_path))]
        except Exception:  # noqa: BLE001 - overrides only label the run
            overrides = []
    return (str(base) if base is not None else None), options, note, overrides


def load_run(run_dir: Path) -> Run:
    """Read a run directory; UserError if it or its metrics.csv is missing or malformed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run directory not found; expected outputs/<experiment>/<run>/ "
                        f"containing metrics.csv")
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.is_file():
        raise UserError(f"{metrics_path}: not found; expected a CSV with columns {','.join(METRICS_COLUMNS)} "
                        f"(written by the blend callback at every checkpoint)")
    diagnostics_path = run_dir / "diagnostics.csv"
    base, options, note, overrides = _read_config(run_dir)
    return Run(path=run_dir, metrics=read_metrics(metrics_path),
               diagnostics=read_diagnostics(diagnostics_path) if diagnostics_path.is_file() else None,
               samples=find_samples(run_dir),
               stylized_dirs=[d for d in (run_dir / "report" / "stylized", run_dir / "stylized") if d.is_dir()],
               base_network=base, blend_options=options, config_note=note, overrides=overrides,
               style_reference=_read_json(run_dir / "scores" / "style_reference.json"))


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
