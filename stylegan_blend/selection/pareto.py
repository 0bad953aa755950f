"""Pareto front of points where both coordinates are minimised."""
from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, sorted by the first coordinate (then the second).

    A point is dominated when another is <= on both axes and < on at least one. Exact duplicates do not
    dominate each other, so both stay. Points with a NaN coordinate are never on the front."""
    finite = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    order = sorted(finite, key=lambda i: (points[i][0], points[i][1]))
    front, best_y = [], math.inf
    for i in order:  # sweep by x: a point is on the front iff its y beats every point with smaller x
        y = points[i][1]
        if y < best_y or (front and points[front[-1]] == points[i]):
            front.append(i)
            best_y = min(best_y, y)
    return front
