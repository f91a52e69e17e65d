"""The paper's Table 1 columns, read off a threshold sweep.

TinySaver's Table 1 reports, per base model, the computation the cascade needs when its performance
may drop by at most 1%, 0.5%, 0.01% and 0% relative to the base alone, and the best performance
any threshold reaches with its cost. The paper gives accuracy in % and the drop in percentage
points, so here a drop is an **absolute** difference of the primary metric (a fraction):
"drop <= 1%" means ``metric >= base - 0.01``, never ``metric >= 0.99 * base``.

Only cascade points (rows of a sweep) count; the base alone is the reference, not a candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from tinysaver_det.core.cascade_model import COST, StageRow
from tinysaver_det.core.picker import Target, pick

#: Table 1's columns as absolute drops of a fraction-valued metric: 1, 0.5, 0.01 and 0 points.
TABLE1_MAX_DROPS = (0.01, 0.005, 0.0001, 0.0)


@dataclass(frozen=True)
class CostAtDrop:
    """The cheapest threshold whose performance is within ``max_drop`` of the base.

    Every field but ``max_drop`` is None when no threshold of the sweep gets there.

    Attributes:
        max_drop: allowed absolute drop of the primary metric (0.01 = one percentage point).
        threshold: the cheapest qualifying threshold.
        exit_ratio: its exit ratio.
        cost: its mean cost per sample, in the sweep's unit.
        relative_cost: ``cost / C_B``.
        performance: its primary metric.
    """

    max_drop: float
    threshold: float | None = None
    exit_ratio: float | None = None
    cost: float | None = None
    relative_cost: float | None = None
    performance: float | None = None


@dataclass(frozen=True)
class Table1Row:
    """Table 1 for one (saver, base) pair.

    Attributes:
        primary: name of the metric (``"top1"``, ``"AP"``).
        base_performance: the base alone on all samples.
        base_cost: the base alone, mean cost per sample (``C_B``).
        at_drop: one :class:`CostAtDrop` per allowed drop, in the requested order.
        best: the highest performance of the sweep (cheapest of the ties), as a
            :class:`CostAtDrop` whose ``max_drop`` is ``base_performance - performance`` (negative
            when the cascade beats the base).
    """

    primary: str
    base_performance: float
    base_cost: float
    at_drop: tuple[CostAtDrop, ...]
    best: CostAtDrop


def _point(row: StageRow, primary: str, max_drop: float, base_cost: float) -> CostAtDrop:
    return CostAtDrop(
        max_drop=max_drop,
        threshold=row.threshold,
        exit_ratio=row.exit_ratio,
        cost=row.cost,
        relative_cost=row.cost / base_cost,
        performance=row.metrics[primary],
    )


def _scored(rows: Sequence[StageRow], primary: str) -> list[tuple[float, StageRow]]:
    try:
        scored = [(float(row.metrics[primary]), row) for row in rows]
    except KeyError:
        raise KeyError(f"sweep rows have no metric {primary!r}; they have {sorted(rows[0].metrics)}") from None
    return [(perf, row) for perf, row in scored if not math.isnan(perf)]


def cost_at_drop(
    rows: Sequence[StageRow], primary: str, base_performance: float, base_cost: float, max_drop: float
) -> CostAtDrop:
    """The cheapest row with ``metric >= base_performance - max_drop`` (ties: better, then first):
    :func:`~tinysaver_det.core.picker.pick` with a ``max_drop`` target in the rows' one cost unit.

    >>> rows = [StageRow((0.5,), (0.8, 0.2), {"cost": 3.0}, {"top1": 0.90}),
    ...         StageRow((0.9,), (0.5, 0.5), {"cost": 6.0}, {"top1": 0.95})]
    >>> cost_at_drop(rows, "top1", 0.95, 10.0, 0.01).cost
    6.0
    >>> cost_at_drop(rows, "top1", 0.95, 10.0, 0.05).relative_cost
    0.3
    >>> cost_at_drop(rows, "top1", 0.96, 10.0, 0.0).cost is None
    True
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0 (an absolute drop, 0.01 = one point), got {max_drop!r}")
    _scored(rows, primary)  # names a missing metric
    unit = next(iter(rows[0].costs)) if rows else COST
    chosen = pick(rows, Target("max_drop", max_drop, unit), primary, base_performance)
    return CostAtDrop(max_drop) if chosen is None else _point(chosen, primary, max_drop, base_cost)


def table1_row(
    rows: Sequence[StageRow],
    primary: str,
    base_performance: float,
    base_cost: float,
    max_drops: Sequence[float] = TABLE1_MAX_DROPS,
) -> Table1Row:
    """Table 1 columns of one sweep: cost at each allowed drop, and the best performance with its cost.

    Args:
        rows: a sweep (:func:`~tinysaver_det.core.cascade_model.sweep`).
        primary: the metric to read from ``row.metrics``.
        base_performance: the base alone (e.g. ``metric.routed(np.zeros(n, bool))[primary]``).
        base_cost: the base alone, mean cost per sample; costs are also reported divided by it.
        max_drops: absolute drops of the metric (fractions), Table 1's 1%, 0.5%, 0.01%, 0% by default.

    >>> rows = [StageRow((0.5,), (0.8, 0.2), {"cost": 3.0}, {"top1": 0.90}),
    ...         StageRow((0.9,), (0.5, 0.5), {"cost": 6.0}, {"top1": 0.96})]
    >>> row = table1_row(rows, "top1", 0.95, 10.0)
    >>> [c.relative_cost for c in row.at_drop], row.best.performance, row.best.cost
    ([0.6, 0.6, 0.6, 0.6], 0.96, 6.0)
    """
    if not rows:
        raise ValueError("table1_row needs at least one sweep row")
    scored = _scored(rows, primary)
    if not scored:
        raise ValueError(f"every sweep row has a NaN {primary!r}")
    best_perf = max(perf for perf, _ in scored)
    best_row = min((row for perf, row in scored if perf == best_perf), key=lambda row: row.cost)
    return Table1Row(
        primary=primary,
        base_performance=float(base_performance),
        base_cost=float(base_cost),
        at_drop=tuple(cost_at_drop(rows, primary, base_performance, base_cost, d) for d in max_drops),
        best=_point(best_row, primary, float(base_performance) - best_perf, base_cost),
    )
