"""Multi-stage cascades simulated from cached predictions: sweeps, Pareto fronts, and the operating-point picker.

Every study here splits the images in two (:func:`~tinysaver_det.detection.ladder.split_image_ids`):
threshold vectors are gridded and chosen on the **calibration** split, and the same vectors are then
evaluated on the **held-out** split, so that what a table promises is checked on images that played
no part in the choice (TinySaver Sec. 3.3: thresholds drift between splits).

* :func:`simulate`: a chain of models (cheapest first) at given threshold vectors, on one split.
* :func:`compare_depths`: every 2-stage chain and the K-stage chain over a ladder, their Pareto
  fronts on calibration, and the held-out values of the front points.
* :func:`pick_operating_points`: targets (largest AP drop vs the last model, a GFLOPs or a latency
  budget) -> thresholds on calibration -> held-out result and gap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tinysaver_det.core.multistage import StageRow, multistage_sweep, threshold_grid
from tinysaver_det.core.picker import OperatingPoint, Target, held_out_gap
from tinysaver_det.core.policy import DEFAULT_MIN_SCORE
from tinysaver_det.core.router import resolve_router
from tinysaver_det.core.sweep import pareto_front
from tinysaver_det.core.tables import Table
from tinysaver_det.detection.ladder import Ladder
from tinysaver_det.detection.router_study import curve_thresholds, router_cost
from tinysaver_det.plots import pyplot, save_figure

PRIMARY = "AP"
UNITS = ("GFLOPs", "ms")


def _routers(confidence, n: int, min_score: float) -> list:
    options = list(confidence) if isinstance(confidence, (list, tuple)) else [confidence] * n
    if len(options) != n:
        raise ValueError(f"confidence: {len(options)} given for {n} exiting stages")
    return [resolve_router(option, min_score) for option in options]


def stage_confidences(ladder: Ladder, models: Sequence, confidence="mean", min_score: float = DEFAULT_MIN_SCORE):
    """``(K-1, N)`` confidences of each exiting stage of the chain ``models``, and the routers used."""
    routers = _routers(confidence, len(models) - 1, min_score)
    return np.stack([ladder.confidences(m, r) for m, r in zip(models[:-1], routers)]), routers


def simulate(
    ladder: Ladder,
    models: Sequence,
    threshold_vectors,
    confidence="mean",
    units: Sequence[str] = UNITS,
    min_score: float = DEFAULT_MIN_SCORE,
) -> list[StageRow]:
    """The chain ``models`` (cheapest first) on ``ladder``'s images at each threshold vector.

    Costs per unit include each exiting stage's router cost (0 for score functions).
    """
    models = [ladder.names[ladder.index(m)] for m in models]
    conf, routers = stage_confidences(ladder, models, confidence, min_score)
    costs = {}
    for unit in units:
        per_model = [ladder.cost(m, unit) for m in models]
        for k, router in enumerate(routers):
            per_model[k] = per_model[k] + router_cost(router, ladder.detections(models[k]), unit)
        costs[unit] = per_model
    return multistage_sweep(conf, threshold_vectors, ladder.selection_metric(models), costs)


def calibration_grid(
    ladder: Ladder, models: Sequence, confidence="mean", levels: int = 21, min_score: float = DEFAULT_MIN_SCORE
) -> np.ndarray:
    """``(P, K-1)`` threshold vectors: per stage, the confidences at ``levels`` exit ratios of ``ladder``, and inf."""
    conf, _ = stage_confidences(ladder, list(models), confidence, min_score)
    return threshold_grid(*(curve_thresholds(row, levels) for row in conf))


def static_rows(ladder: Ladder, units: Sequence[str] = UNITS) -> list[StageRow]:
    """Each model alone on every image, as a row with no threshold."""
    return [_alone(ladder, m, units) for m in ladder.names]


def chains(names: Sequence[str], lengths: Sequence[int]) -> list[tuple[str, ...]]:
    """Every chain of the ladder (models kept in order, cheapest first) of the given lengths.

    >>> chains(["pico", "n", "s"], [2])
    [('pico', 'n'), ('pico', 's'), ('n', 's')]
    """
    return [c for length in lengths for c in itertools.combinations(names, length)]


@dataclass(frozen=True)
class ChainSweep:
    """One chain's threshold vectors (gridded on calibration) on both splits.

    Attributes:
        models: the chain, cheapest first.
        calibration, held_out: one row per threshold vector, same order on both splits.
    """

    models: tuple[str, ...]
    calibration: tuple[StageRow, ...]
    held_out: tuple[StageRow, ...]


def sweep_chain(
    calibration: Ladder,
    held_out: Ladder,
    models: Sequence[str],
    confidence="mean",
    levels: int = 21,
    units: Sequence[str] = UNITS,
    min_score: float = DEFAULT_MIN_SCORE,
) -> ChainSweep:
    """Grid a chain's thresholds on calibration and evaluate every vector on both splits."""
    grid = calibration_grid(calibration, models, confidence, levels, min_score)
    return ChainSweep(
        tuple(models),
        tuple(simulate(calibration, models, grid, confidence, units, min_score)),
        tuple(simulate(held_out, models, grid, confidence, units, min_score)),
    )


@dataclass(frozen=True)
class FrontPoint:
    """A point of a calibration Pareto front and what the same choice gives on held-out."""

    chain: tuple[str, ...]
    calibration: StageRow
    held_out: StageRow


@dataclass(frozen=True)
class DepthStudy:
    """2-stage chains against the deepest chain of a ladder (:func:`compare_depths`).

    Attributes:
        unit: the cost unit of the fronts.
        names: the ladder's models, cheapest first.
        static: each model alone (in ``names`` order), on (calibration, held_out).
        sweeps: every chain's :class:`ChainSweep`.
        two_stage_front: the calibration Pareto front of the static models and every 2-stage chain.
        deep_front: the calibration Pareto front of the static models and every chain (K-stage included).
    """

    unit: str
    names: tuple[str, ...]
    static: tuple[tuple[StageRow, StageRow], ...]
    sweeps: tuple[ChainSweep, ...]
    two_stage_front: tuple[FrontPoint, ...]
    deep_front: tuple[FrontPoint, ...]


def _front(candidates: list[FrontPoint], unit: str) -> tuple[FrontPoint, ...]:
    index = pareto_front([p.calibration.costs[unit] for p in candidates],
                         [p.calibration.metrics[PRIMARY] for p in candidates])
    return tuple(candidates[i] for i in index)


def compare_depths(
    calibration: Ladder,
    held_out: Ladder,
    confidence="mean",
    unit: str = "GFLOPs",
    levels: int = 21,
    min_score: float = DEFAULT_MIN_SCORE,
) -> DepthStudy:
    """Do cascades deeper than two stages extend the cost/AP front? Fronts on calibration, checked on held-out.

    Every chain of length 2 .. K of the ladder is swept on a grid of ``levels`` exit ratios per
    stage (gridded on calibration). The 2-stage front takes the static models and the 2-stage
    chains; the deep front adds every longer chain.
    """
    names = calibration.names
    if len(names) < 3:
        raise ValueError(f"compare_depths needs at least 3 models, got {list(names)}")
    sweeps = tuple(
        sweep_chain(calibration, held_out, chain, confidence, levels, UNITS, min_score)
        for chain in chains(names, range(2, len(names) + 1))
    )
    static = tuple(zip(static_rows(calibration), static_rows(held_out)))
    candidates = {
        length: [FrontPoint((name,), cal, held) for name, (cal, held) in zip(names, static)]
        + [
            FrontPoint(s.models, c, h)
            for s in sweeps
            if len(s.models) <= length
            for c, h in zip(s.calibration, s.held_out)
        ]
        for length in (2, len(names))
    }
    fronts = _front(candidates[2], unit), _front(candidates[len(names)], unit)
    return DepthStudy(unit, tuple(names), static, sweeps, *fronts)


def pick_operating_points(
    calibration: Ladder,
    held_out: Ladder,
    models: Sequence[str],
    targets: Sequence[Target],
    confidence="mean",
    levels: int = 21,
    min_score: float = DEFAULT_MIN_SCORE,
) -> list[OperatingPoint]:
    """For each target: thresholds chosen on calibration, and what they give on held-out.

    The reference of a ``max_drop`` target is the chain's last model alone on the same split. That
    model alone is also a candidate (a row with no thresholds): when no cascade point is cheaper at
    the same target, the picker says so instead of returning a cascade that costs more.
    """
    units = sorted({t.unit for t in targets} | set(UNITS))
    grid = calibration_grid(calibration, models, confidence, levels, min_score)
    rows = simulate(calibration, models, grid, confidence, units, min_score)
    last = models[-1]
    reference = (calibration.model_metrics(last)[PRIMARY], held_out.model_metrics(last)[PRIMARY])

    alone = {split: _alone(split, last, units) for split in (calibration, held_out)}

    def evaluate_held_out(thresholds) -> StageRow:
        if not thresholds:  # the fallback: the last model alone
            return alone[held_out]
        return simulate(held_out, models, [thresholds], confidence, units, min_score)[0]

    return [held_out_gap(t, rows, evaluate_held_out, PRIMARY, *reference, alone[calibration]) for t in targets]


def _alone(ladder: Ladder, model, units: Sequence[str]) -> StageRow:
    return StageRow((), (1.0,), {u: float(ladder.cost(model, u).mean()) for u in units}, ladder.model_metrics(model))


def _chain_label(chain: Sequence[str]) -> str:
    return "->".join(chain)


def _thresholds_label(row: StageRow) -> str:
    return ", ".join("never" if np.isinf(t) else f"{t:.6g}" for t in row.thresholds) or "-"


def front_auc(points: Sequence[FrontPoint], unit: str, split: str = "calibration") -> float:
    """Mean over the cost range of the best AP reachable within each cost, from a front's points on ``split``.

    The staircase ``c -> max AP of the points costing <= c``, integrated from the cheapest to the
    costliest point and divided by that range. Unlike trapezoids, it never falls when points are
    added, so a front with more options never scores lower.
    """
    rows = [getattr(p, split) for p in points]
    cost = np.array([r.costs[unit] for r in rows])
    perf = np.array([r.metrics[PRIMARY] for r in rows])
    order = np.argsort(cost, kind="stable")
    cost, best = cost[order], np.maximum.accumulate(perf[order])
    if cost[-1] <= cost[0]:
        return float(best[-1])
    return float(np.sum(np.diff(cost) * best[:-1]) / (cost[-1] - cost[0]))


def _best_within(points: Sequence[FrontPoint], budget: float, unit: str) -> FrontPoint | None:
    within = [p for p in points if p.calibration.costs[unit] <= budget + 1e-9]
    return max(within, key=lambda p: (p.calibration.metrics[PRIMARY], -p.calibration.costs[unit])) if within else None


def depth_table(study: DepthStudy, budgets: Sequence[float]) -> Table:
    """At each budget: the best calibration point of the 2-stage and of the deep front, with held-out values."""
    unit = study.unit
    header = ("budget", "2-stage: chain", "thresholds", "cal AP", "held AP", f"held {unit}",
              "deep: chain", "thresholds", "cal AP", "held AP", f"held {unit}")
    body = []
    for budget in budgets:
        line: list = [f"<= {budget:.3g} {unit}"]
        for front in (study.two_stage_front, study.deep_front):
            point = _best_within(front, budget, unit)
            if point is None:
                line += ["-"] * 5
            else:
                cal, held = point.calibration, point.held_out
                line += [_chain_label(point.chain), _thresholds_label(cal),
                         cal.metrics[PRIMARY], held.metrics[PRIMARY], held.costs[unit]]
        body.append(tuple(line))
    aucs = ", ".join(
        f"{name} front AUC {front_auc(f, unit):.4f} (cal) / {front_auc(f, unit, 'held_out'):.4f} (held-out)"
        for name, f in (("2-stage", study.two_stage_front), ("deep", study.deep_front))
    )
    n_deep = sum(len(p.chain) > 2 for p in study.deep_front)
    note = (f"Fronts and thresholds chosen on calibration; held-out columns apply the same thresholds. {aucs}; "
            f"{n_deep} of the deep front's {len(study.deep_front)} points are chains of more than 2 stages. "
            "'never': that stage never answers.")
    return Table(header, tuple(body), note)


def front_table(points: Sequence[FrontPoint], unit: str) -> Table:
    """Every point of a front: chain, thresholds, stage ratios and both splits' AP and cost."""
    header = ("chain", "thresholds", "cal stage ratios", f"cal {unit}", "cal AP", f"held {unit}", "held AP")
    body = tuple(
        (_chain_label(p.chain), _thresholds_label(p.calibration),
         " / ".join(f"{r:.2f}" for r in p.calibration.stage_ratios),
         p.calibration.costs[unit], p.calibration.metrics[PRIMARY], p.held_out.costs[unit], p.held_out.metrics[PRIMARY])
        for p in points
    )
    return Table(header, body)


def plot_depths(study: DepthStudy, path) -> Path:
    """PNG: each chain's calibration points, both fronts, the single models (left); the fronts on held-out (right)."""
    unit = study.unit
    figure, axes = pyplot().subplots(1, 2, figsize=(13, 5), sharey=True)
    for sweep_ in study.sweeps:
        axes[0].scatter([r.costs[unit] for r in sweep_.calibration], [r.metrics[PRIMARY] for r in sweep_.calibration],
                        s=6, alpha=0.35, label=_chain_label(sweep_.models))
    for ax, split in zip(axes, ("calibration", "held_out")):
        for front, style, label in ((study.two_stage_front, "-o", "best 2-stage front"),
                                    (study.deep_front, "--s", "front with deeper chains")):
            rows = [getattr(p, split) for p in front]
            ax.plot([r.costs[unit] for r in rows], [r.metrics[PRIMARY] for r in rows], style, ms=3, lw=1.5, label=label)
        statics = [pair[0 if split == "calibration" else 1] for pair in study.static]
        ax.scatter([r.costs[unit] for r in statics], [r.metrics[PRIMARY] for r in statics], marker="*", s=160,
                   color="black", zorder=5, label="single models")
        for name, row in zip(study.names, statics):
            ax.annotate(name, (row.costs[unit], row.metrics[PRIMARY]), textcoords="offset points", xytext=(6, -12))
        ax.set_xlabel(f"{unit} per image")
        ax.set_title("calibration (fronts chosen here)" if split == "calibration" else "held-out (same thresholds)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("COCO AP")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)


def picker_table(points: Sequence[OperatingPoint], units: Sequence[str] = UNITS) -> Table:
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
        thresholds = _thresholds_label(cal) if cal.thresholds else "last model alone"
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
