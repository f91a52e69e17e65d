"""Task-agnostic maths on a cascade's metric-vs-cost curve: the thresholds that trace it and its area.

A curve is a sequence of two-model rows (:class:`~tinysaver_det.core.cascade_model.StageRow` with one
cost unit). The best metric within a budget and the cheapest cost that reaches a level are
:func:`~tinysaver_det.core.picker.pick`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinysaver_det.core.cascade_model import StageRow


def curve_thresholds(confidences, levels: int | None = None) -> np.ndarray:
    """Thresholds tracing a router's curve, rising, ending with ``inf`` (nothing exits).

    ``levels=None``: every distinct confidence, so each reachable routing appears exactly once.
    ``levels=L``: the confidences at which about ``0, 1/(L-1), ..., 1`` of the images exit (the
    confidence ranked ``round(q * N)``-th), for long lists; ties still exit together.

    >>> curve_thresholds([0.2, 0.9, 0.5, 0.5]).tolist()
    [0.2, 0.5, 0.9, inf]
    >>> curve_thresholds([0.1, 0.2, 0.3, 0.4, 0.5], levels=3).tolist()  # exit 0, 2 (2.5 rounds to 2), 5 images
    [0.1, 0.4, inf]
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if levels is None or not conf.size:
        return np.append(np.unique(conf), np.inf)
    if levels < 2:
        raise ValueError(f"levels must be >= 2 (or None for every distinct confidence), got {levels!r}")
    falling = np.sort(conf)[::-1]
    counts = np.round(np.linspace(0, 1, levels) * len(conf)).astype(np.int64)
    return np.append(np.unique(falling[counts[counts > 0] - 1]), np.inf)


def curve_mean_ap(rows: Sequence[StageRow], primary: str = "AP") -> float:
    """The curve's mean metric over its cost range: the area under the metric-vs-cost curve
    (trapezoids between the curve's own points) divided by that range. Printed as "curve mean AP".

    Not :func:`~tinysaver_det.detection.studies.depths.front_mean_best_ap`, which averages the best
    metric reachable within each cost (a staircase over a front's points).
    """
    cost = np.array([r.cost for r in rows])
    perf = np.array([r.metrics[primary] for r in rows])
    order = np.lexsort((perf, cost))
    cost, perf = cost[order], perf[order]
    width = cost[-1] - cost[0]
    if width <= 0:
        return float(perf.max())
    return float(np.sum((cost[1:] - cost[:-1]) * (perf[1:] + perf[:-1]) / 2) / width)
