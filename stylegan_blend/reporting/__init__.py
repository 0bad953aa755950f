"""The report: epoch × swap image grid with scores, heatmap, overfitting curves, one HTML page."""
from .report import build_report, load_sections, write_report
from .rundir import MetricRow, Run, load_run, read_diagnostics, read_metrics
from .scores import BestCell, best_cells, default_metric, is_proxy, metric_label

__all__ = ["BestCell", "MetricRow", "Run", "best_cells", "build_report", "default_metric", "is_proxy",
           "load_run", "load_sections", "metric_label", "read_diagnostics", "read_metrics", "write_report"]
