"""The report: epoch × swap image grid with scores, heatmap, overfitting curves, comparison sheets, one HTML page.

`report.build_report` writes it; `model` is the page's data, `scores` the grids, `figures` the matplotlib plots,
`sheet` the labelled PNG sheets (Pillow only: `generate --grid` and `stylize` draw them without matplotlib, which
is why this package imports no submodule itself).
"""
