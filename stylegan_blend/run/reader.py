"""Read one run folder back: its scores, diagnostics, samples and saved config.

Everything the report and the selection show is derived from these files, so a run can be re-reported at any
time, on any machine, without W&B.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from ..errors import UserError
from .layout import (
    BLEND_SAMPLES_DIR,
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    REPORT_DIR,
    STYLE_REFERENCE_FILE,
    network_path,
)
from .tables import METRICS_REQUIRED, DiagnosticRow, MetricRow, read_diagnostics, read_metrics

STYLIZED_DIR = "stylized"  # `stylegan-blend stylize` outputs shown by the report (in the run or its report/)
_EPOCH_DIR = re.compile(r"^epoch=(\d+)$")


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
        return network_path(self.path, epoch)


def find_samples(run_dir: Path) -> dict[tuple[int, str], Path]:
    samples = {}
    blends = Path(run_dir) / BLEND_SAMPLES_DIR
    if blends.is_dir():
        for epoch_dir in sorted(blends.iterdir()):
            match = _EPOCH_DIR.match(epoch_dir.name)
            if match and epoch_dir.is_dir():
                for png in sorted(epoch_dir.glob("*.png")):
                    if not png.stem.endswith(".tmp"):  # a write-then-rename temp file of an older version
                        samples[(int(match.group(1)), png.stem)] = png
    return samples


def saved_config(run_dir: str | Path):
    """The run's .hydra/config.yaml as OmegaConf saved it (unresolved: `${model.init_from}` ...); None if absent."""
    path = Path(run_dir) / CONFIG_FILE
    return OmegaConf.load(path) if path.is_file() else None


def run_config(run_dir: str | Path, overrides: dict | None = None) -> dict:
    """The run's own config, resolved, with every non-null value of `overrides` ({"blend": {...}, "metrics": {...}})
    applied; UserError when the run has none or it does not resolve (its `${...}` resolvers must be registered)."""
    cfg_file = Path(run_dir) / CONFIG_FILE
    cfg = saved_config(run_dir)
    if cfg is None:
        raise UserError(f"{cfg_file}: not found; expected a run directory written by stylegan-blend-train")
    for section, values in (overrides or {}).items():
        for key, value in (values or {}).items():
            if value is not None:
                OmegaConf.update(cfg, f"{section}.{key}", value, force_add=True)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 - an interpolation that cannot be resolved is a config problem
        raise UserError(f"{cfg_file}: cannot resolve the run's config ({e})") from None
    resolved.setdefault("paths", {})
    return resolved


def saved_selection(run_dir: str | Path) -> dict | None:
    """The `selection:` node of a run's saved config (None when absent or unreadable)."""
    try:
        cfg = saved_config(run_dir)
        node = cfg.get("selection") if cfg is not None else None
        return OmegaConf.to_container(node, resolve=True) if node is not None else None
    except Exception:  # noqa: BLE001 - an unreadable config falls back to the default rule
        return None


def run_resolution(run_dir: str | Path) -> int | None:
    """data.resolution of the run's saved config (for the tie-break's count of fine-tuned layers)."""
    try:
        cfg = saved_config(run_dir)
        value = OmegaConf.select(cfg, "data.resolution", default=None, throw_on_resolution_failure=False)
        return int(value) if value is not None else None
    except Exception:  # noqa: BLE001 - unknown resolution: the tie-break infers it from the swap points
        return None


def sample_seeds(run_dir: str | Path, default: list[int]) -> list[int]:
    """blend.sample_seeds of the run's saved config, else `default`."""
    try:
        cfg = saved_config(run_dir)
        seeds = OmegaConf.select(cfg, "blend.sample_seeds", default=None, throw_on_resolution_failure=False)
        return [int(x) for x in seeds] if seeds else list(default)
    except Exception:  # noqa: BLE001 - an unreadable config only loses the column labels
        return list(default)


def _read_config(run_dir: Path) -> tuple[str | None, dict[str, object], str, list[str]]:
    """blend.base (+ width/mapping) and the Hydra overrides. The report is still useful without them, so
    an unreadable config becomes a note on the page rather than an error."""
    config_path = run_dir / CONFIG_FILE
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
        note = (
            f"{where}: replace <BASE> with the base network the run was fine-tuned from "
            f"(set blend.base in the training config for future runs)"
        )
    overrides_path = run_dir / OVERRIDES_FILE
    if overrides_path.is_file():
        try:
            overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides_path))]
        except Exception:  # noqa: BLE001 - overrides only label the run
            overrides = []
    return (str(base) if base is not None else None), options, note, overrides


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; UserError if it or its metrics.csv is missing or malformed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(
            f"{run_dir}: run directory not found; expected outputs/<experiment>/<run>/ containing {METRICS_FILE}"
        )
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise UserError(
            f"{metrics_path}: not found; expected a CSV with columns {','.join(METRICS_REQUIRED)} "
            f"(written by the blend callback at every checkpoint)"
        )
    diagnostics_path = run_dir / DIAGNOSTICS_FILE
    base, options, note, overrides = _read_config(run_dir)
    return Run(
        path=run_dir,
        metrics=read_metrics(metrics_path),
        diagnostics=read_diagnostics(diagnostics_path) if diagnostics_path.is_file() else None,
        samples=find_samples(run_dir),
        stylized_dirs=[d for d in (run_dir / REPORT_DIR / STYLIZED_DIR, run_dir / STYLIZED_DIR) if d.is_dir()],
        base_network=base,
        blend_options=options,
        config_note=note,
        overrides=overrides,
        style_reference=read_json(run_dir / STYLE_REFERENCE_FILE),
    )


def read_json(path: Path) -> dict | None:
    """A small JSON record of the run, None when absent or unreadable (it only annotates)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
