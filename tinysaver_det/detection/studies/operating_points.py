"""The operating-point picker: targets (largest AP drop vs the last model, a GFLOPs or a latency budget)
-> thresholds chosen on the calibration split -> the held-out result and its gap.
"""

from __future__ import annotations

from typing import Sequence

from tinysaver_det.core.cascade_model import StageRow
from tinysaver_det.core.picker import Target, TargetPick, held_out_gap
from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ExitPolicy
from tinysaver_det.core.tables import Table
from tinysaver_det.detection.cache import PredictionCache
from tinysaver_det.detection.studies.depths import (
    PRIMARY,
    UNITS,
    alone_row,
    calibration_grid,
    simulate_chain,
    thresholds_label,
)


def pick_operating_points(
    calibration: PredictionCache,
    held_out: PredictionCache,
    models: Sequence[str],
    targets: Sequence[Target],
    confidence="mean",
    levels: int = 21,
    min_score: float = DEFAULT_MIN_SCORE,
) -> list[TargetPick]:
    """For each target: thresholds chosen on calibration, and what they give on held-out.

    The reference of a ``max_drop`` target is the chain's last model alone on the same split. That
    model alone is also a candidate (a row with no thresholds): when no cascade point is cheaper at
    the same target, the picker says so instead of returning a cascade that costs more.
    """
    units = sorted({t.unit for t in targets} | set(UNITS))
    rule = ExitPolicy(confidence=confidence, min_score=min_score)
    grid = calibration_grid(calibration, models, rule, levels)
    rows = simulate_chain(calibration, models, grid, rule, units)
    last = models[-1]
    reference = (calibration.model_metrics(last)[PRIMARY], held_out.model_metrics(last)[PRIMARY])

    alone = {split: alone_row(split, last, units) for split in (calibration, held_out)}

    def evaluate_held_out(thresholds) -> StageRow:
        if not thresholds:  # the fallback: the last model alone
            return alone[held_out]
        return simulate_chain(held_out, models, [thresholds], rule, units)[0]

    return [held_out_gap(t, rows, evaluate_held_out, PRIMARY, *reference, alone[calibration]) for t in targets]


def picker_table(points: Sequence[TargetPick], units: Sequence[str] = UNITS) -> Table:
    """One line per target: thresholds picked on calibration, both splits' AP and costs, the gap, whether it holds."""
    header = ("target", "thresholds", "cal AP", *(f"cal {u}" for u in units), "held AP", *(f"held {u}" for u in units),
              "AP gap", *(f"{u} gap" for u in units), "met on held-out")
    body = []
    for point in points:
        label = (f"AP drop <= {point.target.value * 100:g}pt, cheapest {point.target.unit}"
                 if point.target.kind == "max_drop" else f"{point.target.unit} <= {point.target.value:g}")
        if point.calibration is None:
            body.append((label, "not reachable on calibration", *["-"] * (2 + 2 * len(units) + len(units) + 1)))
            continue
        cal, held = point.calibration, point.held_out
        thresholds = thresholds_label(cal) if cal.thresholds else "last model alone"
        body.append((
            label, thresholds, cal.metrics[PRIMARY], *(cal.costs[u] for u in units), held.metrics[PRIMARY],
            *(held.costs[u] for u in units), held.metrics[PRIMARY] - cal.metrics[PRIMARY],
            *(held.costs[u] - cal.costs[u] for u in units), "yes" if point.met_held_out else "NO",
        ))
    reference = points[0] if points else None
    note = None
    if reference is not None:
        note = (f"Reference (last model alone) AP {reference.reference_calibration:.4f} (cal) / "
                f"{reference.reference_held_out:.4f} (held-out); a drop target is checked against each split's own "
                "reference. Gap = held-out - calibration.")
    return Table(header, tuple(body), note)
