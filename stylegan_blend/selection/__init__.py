"""Pick a blend cell by a declared rule over two axes: style distance ↓ and identity loss ↓.

Every (epoch, swap, direction) cell is a point in that plane. The Pareto front (no other cell is at
least as good on both axes and better on one) holds every defensible choice; a rule picks one of them:

- `knee` (default): scale each axis between the run front's ideal and nadir points, draw the line through
  the front's two ends, take the front cell farthest from it on the ideal side (the corner where trading
  more identity buys least style); a straight or concave front has no knee, and the declared fallback
  (lowest normalised sum) picks, saying so;
- `min_identity=<x>`: the most stylised cell whose identity score (1 − identity loss) is at least x;
- `weighted=<α>`: minimise α·style + (1 − α)·identity on the normalised axes.

A one-sided minimum of the style distance always picks the cell with most fine-tuned layers, which is
why it is never called "best" here. Exact ties break by fewest fine-tuned layers, then earliest epoch.
"""
from .config import DEFAULT_RULE, SelectionConfig
from .pareto import pareto_front
from .rules import Choice, Point, Rule, parse_rule, points_from_rows, select
from .run import Selection, default_identity_metric, default_style_metric, select_rows, selection_options

__all__ = ["DEFAULT_RULE", "Choice", "Point", "Rule", "Selection", "SelectionConfig", "default_identity_metric",
           "default_style_metric", "pareto_front", "parse_rule", "points_from_rows", "select", "select_rows",
           "selection_options"]
