"""Hydra hooks of `stylegan-blend-train` (conf/hydra/default.yaml lists them).

- `job_name`: the job folder names of a sweep (a config resolver, registered by app.config);
- `RunStart` (single runs): the preflight check before Hydra creates the run folder, and `ckpt_path=last`
  without `paths.output_dir` pointed at the newest resumable run of the same experiment.
- `SweepStart` / `SweepSummary` (multirun): the swept keys (job names are made of them only), and at the
  end a table of every job's outcome, written to the sweep folder; the command exits 1 if any job failed.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..errors import UserError
from ..evaluation.run_selection import run_selection
from ..run.files import write_text_atomic
from ..run.layout import CONFIG_DIR, CONFIG_FILE, FAILED_FILE, JOB_FILE, SELECTION_FILE
from ..run.lifecycle import newest_resumable_run
from ..run.records import read_job_record
from .preflight import preflight

SWEPT_FILE = "swept_keys.json"

# ------------------------------------------------------------------ job names


def _short_value(value: str) -> str:
    v = str(value).strip()
    if "/" in v or os.sep in v:
        v = Path(v.rstrip("/")).name or v
    try:
        f = float(v)
        if not v.lstrip("-").isdigit() and f == f:
            v = f"{f:.4g}"
    except ValueError:
        pass
    v = re.sub(r"[\[\]{}()'\" ]", "", v).replace(",", "-")
    return re.sub(r"[^A-Za-z0-9._+-]", "-", v) or "none"


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.lstrip("+~").partition("=")
    return key, value


def swept_keys(task_overrides: list[str], sweeper_params: dict | None) -> list[str]:
    """Keys that vary across the jobs of a sweep: sweep syntax on the command line + the sweeper's params."""
    keys = []
    for o in OverridesParser.create().parse_overrides(list(task_overrides)):
        if o.is_sweep_override():
            keys.append(o.get_key_element().lstrip("+~"))
    return keys + [k for k in (sweeper_params or {}) if k not in keys]


def job_name(num, sweep_dir, task_overrides, sweeper_params=None, limit: int = 120) -> str:
    """`<num>_<key>-<value>_...` from the swept keys only: short keys and values, unique by the job number."""
    path = Path(str(sweep_dir)) / SWEPT_FILE
    if path.is_file():
        keys = json.loads(path.read_text())
    else:  # launched without SweepStart: the sweeper's own params are what varies
        keys = list(sweeper_params or {})
    values = dict(_key_value(o) for o in task_overrides or [])
    items = [(k, values[k]) for k in keys if k in values]
    tails = [k.rsplit(".", 1)[-1].rsplit("/", 1)[-1] for k, _ in items]
    parts = []
    for (k, v), tail in zip(items, tails):
        label = tail if tails.count(tail) == 1 else k.replace("/", ".")
        parts.append(f"{label}-{_short_value(v)}")
    name = f"{num}_" + "_".join(parts) if parts else str(num)
    return name if len(name) <= limit else name[:limit].rstrip("_-") + "~"  # the number keeps it unique


# ------------------------------------------------------------------ job outcome


def choice_text(sel) -> str | None:
    """`best by knee: e9·s8 (stable 71 %; also e12·s8, e15·s8)`: the sweep summary's best column."""
    if sel is None:
        return None
    return f"best by {sel.rule}: {sel.summary()}"


def best_cell_text(run_dir: Path) -> str | None:
    """The run's chosen blend under its own selection rule (the rule is named in the text): from its
    selection.json when there is one, else computed."""
    path = Path(run_dir) / SELECTION_FILE
    try:
        if path.is_file():
            record = json.loads(path.read_text())
            return f"best by {record['rule']}: {record['summary']}"
        return choice_text(run_selection(Path(run_dir), None))
    except Exception:  # noqa: BLE001 - an unreadable metrics file leaves the cell blank
        return None


def sweep_rows(sweep_dir: Path) -> list[dict]:
    rows = []
    def is_job(p: Path) -> bool:  # a job refused before its record was written still has its outcome file
        return p.is_dir() and any((p / f).exists() for f in (CONFIG_DIR, JOB_FILE, FAILED_FILE))

    for job in sorted((p for p in Path(sweep_dir).iterdir() if is_job(p)),
                      key=lambda p: (int(p.name.split("_")[0]) if p.name.split("_")[0].isdigit() else 1 << 30, p.name)):
        rec = {}
        if (job / JOB_FILE).is_file():
            rec = read_job_record(job)
        elif (job / FAILED_FILE).is_file():
            rec = {"status": "failed"}
        status = rec.get("status") or "unfinished"
        error = rec.get("error") or ""
        if status == "failed" and not error and (job / FAILED_FILE).is_file():
            lines = [line for line in (job / FAILED_FILE).read_text().splitlines() if line.strip()]
            error = lines[-1] if lines else ""
        rows.append({"job": job.name.split("_")[0], "status": status, "folder": job.name,
                     "best": rec.get("best") or best_cell_text(job) or "", "error": error})
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ["job", "status", "folder", "best", "error"]
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(lines)


class SweepStart(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hc = config.hydra
        sweep_dir = Path(str(hc.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        params = hc.sweeper.get("params") if "sweeper" in hc else None
        params = OmegaConf.to_container(params) if params is not None else {}
        keys = swept_keys(OmegaConf.to_container(hc.overrides.task), params)
        (sweep_dir / SWEPT_FILE).write_text(json.dumps(keys) + "\n")


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows = sweep_rows(sweep_dir)
        table = format_table(rows)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["job", "status", "folder", "best", "error"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        for name, text in (("summary.csv", buf.getvalue()), ("summary.txt", table + "\n")):
            write_text_atomic(sweep_dir / name, text)
        failed = [r for r in rows if r["status"] != "completed"]
        print(f"sweep {sweep_dir}: {len(rows) - len(failed)} of {len(rows)} job(s) completed\n{table}")
        if failed:
            print(f"error: {len(failed)} of {len(rows)} sweep job(s) did not complete; see {sweep_dir / 'summary.txt'}",
                  file=sys.stderr)
            sys.stdout.flush()
            sys.exit(1)


# ------------------------------------------------------------------ single runs


class RunStart(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        task_overrides = [str(o) for o in config.hydra.overrides.task]
        given = any(_key_value(o)[0] in ("paths.output_dir", "hydra.run.dir") for o in task_overrides + [
            str(o) for o in config.hydra.overrides.hydra])
        if config.get("ckpt_path") == "last":
            if given:
                run_dir = Path(str(config.hydra.run.dir))
            else:
                root = Path(str(config.paths.output_dir)).parent
                run_dir = newest_resumable_run(root)
                if run_dir is None:
                    print(f"error: ckpt_path=last: no run of experiment {config.name!r} with checkpoints/last.ckpt "
                          f"under {root}; give paths.output_dir=RUN_DIR or start without ckpt_path", file=sys.stderr)
                    sys.exit(1)
                print(f"ckpt_path=last: resuming the newest run of {config.name!r}: {run_dir.resolve()}", file=sys.stderr)
                with read_write(config), open_dict(config):
                    config.paths.output_dir = str(run_dir)
                    config.hydra.run.dir = str(run_dir)
            if (run_dir / ".hydra" / "overrides.yaml").is_file():  # keep the first launch's record
                with read_write(config), open_dict(config):
                    config.hydra.output_subdir = f"{CONFIG_DIR}/resume-{datetime.now():%Y-%m-%d_%H-%M-%S}"
        task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        try:
            preflight(task, Path(str(config.hydra.run.dir)))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)


class EvalStart(Callback):
    """`stylegan-blend-eval`: a run_dir that is not a training run is refused before Hydra creates
    `<run_dir>/.eval/...` (a mistyped path used to become a new folder)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.run_dir))
        if not (run_dir / CONFIG_FILE).is_file():
            what = "not found" if not run_dir.exists() else "has no .hydra/config.yaml"
            print(f"error: run_dir={run_dir}: {what}; expected a run directory written by stylegan-blend-train",
                  file=sys.stderr)
            sys.exit(1)
