"""`stylegan-blend report RUN_DIR [RUN_DIR ...] [--out DIR] [--metric NAME]`."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="HTML report: epoch × swap grid, heatmap, overfitting curves, best blend",
        description="Score-annotated epoch × swap grid, metric heatmap, overfitting diagnostics and the "
                    "command that exports the best blend, as one self-contained folder.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directory (outputs/<experiment>/<run>/) with metrics.csv")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="report folder (default RUN_DIR/report; required for several runs)")
    parser.add_argument("--metric", default=None, metavar="NAME",
                        help="style metric (default kid, else fid, else a proxy kd_*/fd_*)")
    parser.add_argument("--rule", default=None, metavar="RULE",
                        help="selection rule over (style, identity loss): knee, min_identity=X or weighted=A "
                             "(default: the run's selection config, else knee)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...reporting.report import default_out_dir, load_sections, write_report  # matplotlib: only when reporting

    target = default_out_dir(args.run_dirs, args.out)
    sections = load_sections(args.run_dirs, args.metric, args.rule)
    index = write_report(sections, target)
    print(f"report: {index}")
    for section in sections:
        print(f"\n{section.run.path} — {section.label} (lower is better)")
        sel = section.selection
        if sel is not None:
            print(f"  {sel.header()}")
            print(f"  style reference: {section.style_reference}")
            if sel.bootstrap is None:
                print(f"  stability unknown: {sel.uncertainty_note}")
            for choice in sel.per_epoch:
                if choice.point is not None:
                    print(f"  {sel.line(choice)}")
        else:
            print("  no identity scores in this run: one-sided minima only, not a choice")
            for best in section.per_epoch:
                print(f"  {section.best_label}: {best}")
        if section.overall is None:  # the same sentence the page shows
            print(f"  best by {sel.rule}: no cell ({sel.overall.note})" if sel is not None and sel.points
                  else f"  no blend cell scored with {section.metric}")
            continue
        print(f"  {sel.line()}" if sel is not None else f"  {section.best_label}: {section.overall}")
        if section.best_of_all:
            print(f"  {section.best_of_all_text}")
        if section.lowest is not None and section.selection is not None:
            print(f"  one-sided lowest {section.metric} (ignores identity): {section.lowest}")
        if section.command:
            print(f"  export: {section.command}")
        if section.command_note:
            print(f"  note: {section.command_note}")
    return 0
