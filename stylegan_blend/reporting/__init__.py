"""The report: epoch × swap image grid with scores, heatmap, overfitting curves, one HTML page.

Names are imported lazily so that `stylegan-blend <any command>` does not pay for matplotlib/omegaconf.
"""
import importlib

_EXPORTS = {
    "build_report": "report", "load_sections": "report", "write_report": "report",
    "MetricRow": "rundir", "Run": "rundir", "load_run": "rundir", "read_diagnostics": "rundir",
    "read_metrics": "rundir",
    "BestCell": "scores", "best_cells": "scores", "default_metric": "scores", "is_proxy": "scores",
    "metric_label": "scores",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
