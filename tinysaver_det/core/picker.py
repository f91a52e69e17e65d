"""Picking a sweep row that meets a target: the one picker, and its check on a held-out split.

Words: a :class:`TargetPick` is what the picker returns for one :class:`Target` (the calibration
row, the same thresholds on held-out, whether the target still holds); an *operating point file*
(:class:`tinysaver_det.operating_point.OperatingPointFile`) is the deployable record written from
one pick (models, confidence rule, ``t``, measurements); a benchmark table's "operating point"
column only labels how a row's threshold was set (``t = 0.25``, ``AP drop <= 1 pt``, ``static``).

Every "cheapest point that meets a target" and "best point within a budget" of the package is
:func:`pick` over :class:`~tinysaver_det.core.cascade_model.StageRow` rows, with one tolerance
(:data:`TOLERANCE`): Table 1's cost at a drop (:func:`tinysaver_det.core.summary.cost_at_drop`),
the router study's AP at a budget and cost to reach a level, the largest exit ratio at a level
(cost unit :data:`~tinysaver_det.core.cascade_model.DEFERRED`), the depth study's best point within
a budget, and the threshold picker of ``tinysaver pick``.

TinySaver warns (Sec. 3.3) that a threshold chosen on one split drifts on another. The picker makes
that visible: a :class:`Target` (largest drop of the primary metric against a reference, or a cost
budget in some unit) selects one row of a calibration sweep (:func:`pick`), and
:func:`held_out_gap` reports what the same thresholds give on held-out data, gap included.

Rules:
    * ``max_drop``: the cheapest row (in ``unit``) whose metric is ``>= reference - drop``
      (``reference``: e.g. the last model alone on the same split); ties: better metric, then first row.
    * ``budget``: the best row whose cost in ``unit`` is ``<= value``; ties: cheaper, then first row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from tinysaver_det.core.cascade_model import DEFERRED, StageRow

#: The one tolerance of every pick: absorbs float rounding in ``reference - drop`` (``0.95 - 0.01 =
#: 0.9399999999999999``) and in budgets; far below one sample in 1e9.
TOLERANCE = 1e-9

_KINDS = ("max_drop", "budget")


@dataclass(frozen=True)
class Target:
    """What the operating point must achieve.

    Attributes:
        kind: ``"max_drop"`` (absolute drop of the primary metric, 0.01 = one point) or ``"budget"``.
        value: the drop, or the budget in ``unit``.
        unit: the cost unit: the one a budget is in, or the one a ``max_drop`` pick minimises: a key
            of the rows' ``costs``, or :data:`~tinysaver_det.core.cascade_model.DEFERRED` (the share of
            samples that reach the last model: minimising it maximises the exit ratio).
    """

    kind: str
    value: float
    unit: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"target kind must be one of {_KINDS}, got {self.kind!r}")
        if not self.value >= 0:
            raise ValueError(f"target value must be a number >= 0, got {self.value!r}")

    @property
    def label(self) -> str:
        """``"AP drop <= 1pt"``-style text for tables (the metric name is added by the caller)."""
        if self.kind == "max_drop":
            return f"drop <= {self.value * 100:g}pt ({self.unit})"
        return f"{self.unit} <= {self.value:g}"

    def cost(self, row: StageRow) -> float:
        """The row's cost in this target's unit."""
        return row.stage_ratios[-1] if self.unit == DEFERRED else row.costs[self.unit]

    def met(self, row: StageRow, primary: str, reference: float) -> bool:
        """Whether ``row`` satisfies the target against ``reference`` (for ``max_drop``)."""
        if self.kind == "max_drop":
            return row.metrics[primary] >= reference - self.value - TOLERANCE
        return self.cost(row) <= self.value + TOLERANCE


def pick(
    rows: Sequence[StageRow],
    target: Target,
    primary: str,
    reference: float = math.nan,
    fallback: StageRow | None = None,
) -> StageRow | None:
    """The row chosen for ``target``; None when no row meets it. Rows with a NaN metric never are.

    ``reference`` is what a ``max_drop`` is measured from (a ``budget`` ignores it). ``fallback``
    is one more candidate, conventionally the last model alone (a row with no thresholds): a
    cascade point is only worth picking when it beats simply running that model.

    >>> rows = [StageRow((0.2,), (0.8, 0.2), {"GFLOPs": 1.0}, {"AP": 0.40}),
    ...         StageRow((0.5,), (0.3, 0.7), {"GFLOPs": 3.0}, {"AP": 0.49})]
    >>> pick(rows, Target("max_drop", 0.01, "GFLOPs"), "AP", 0.50).thresholds
    (0.5,)
    >>> pick(rows, Target("budget", 2.0, "GFLOPs"), "AP", 0.50).thresholds
    (0.2,)
    >>> pick(rows, Target("budget", 0.5, "GFLOPs"), "AP", 0.50) is None
    True
    """
    candidates = list(rows) + ([fallback] if fallback is not None else [])
    valid = [(i, r) for i, r in enumerate(candidates) if not math.isnan(r.metrics[primary])]
    meeting = [(i, r) for i, r in valid if target.met(r, primary, reference)]
    if not meeting:
        return None
    if target.kind == "max_drop":
        key = lambda item: (target.cost(item[1]), -item[1].metrics[primary], item[0])  # noqa: E731
    else:
        key = lambda item: (-item[1].metrics[primary], target.cost(item[1]), item[0])  # noqa: E731
    return min(meeting, key=key)[1]


@dataclass(frozen=True)
class TargetPick:
    """What the picker chose for one target: the thresholds picked on calibration, and what they give on both splits.

    Attributes:
        target: what was asked.
        calibration: the picked calibration row (None: not reachable on calibration).
        held_out: the same thresholds applied on the held-out split (None when nothing was picked).
        reference_calibration, reference_held_out: the last model alone on each split (primary metric).
        met_held_out: whether the held-out row still meets the target (against the held-out reference).
    """

    target: Target
    calibration: StageRow | None
    held_out: StageRow | None
    reference_calibration: float
    reference_held_out: float
    met_held_out: bool | None

    def gap(self, primary: str, unit: str) -> tuple[float, float] | None:
        """Held-out minus calibration: (primary metric, cost in ``unit``); None when nothing was picked."""
        if self.calibration is None or self.held_out is None:
            return None
        return (
            self.held_out.metrics[primary] - self.calibration.metrics[primary],
            self.held_out.costs[unit] - self.calibration.costs[unit],
        )


def held_out_gap(
    target: Target,
    calibration_rows: Sequence[StageRow],
    evaluate_held_out,
    primary: str,
    reference_calibration: float,
    reference_held_out: float,
    fallback: StageRow | None = None,
) -> TargetPick:
    """Pick on calibration, apply the same thresholds on held-out, and say whether the target still holds.

    Args:
        target: the :class:`Target`.
        calibration_rows: the calibration sweep.
        evaluate_held_out: ``thresholds -> StageRow`` on the held-out split (``()``: the fallback).
        primary: the metric key.
        reference_calibration, reference_held_out: the last model alone on each split.
        fallback: see :func:`pick`.
    """
    chosen = pick(calibration_rows, target, primary, reference_calibration, fallback)
    held_out = None if chosen is None else evaluate_held_out(chosen.thresholds)
    met = None if held_out is None else target.met(held_out, primary, reference_held_out)
    return TargetPick(target, chosen, held_out, reference_calibration, reference_held_out, met)
