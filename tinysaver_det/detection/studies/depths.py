"""Multi-stage cascades simulated from cached predictions: sweeps and Pareto fronts of chains of every depth.

Every study here splits the images in two (:func:`~tinysaver_det.detection.cache.split_image_ids`):
threshold vectors are gridded and chosen on the **calibration** split, and the same vectors are then
evaluated on the **held-out** split, so that what a table promises is checked on images that played
no part in the choice (TinySaver Sec. 3.3: thresholds drift between splits).

* :func:`simulate_chain`: a chain of models (cheapest first) at given threshold vectors, on one split.
* :func:`compare_depths`: every 2-stage chain and the K-stage chain over a prediction cache, their
  Pareto fronts on calibration, and the held-out values of the front points (figure:
  :func:`tinysaver_det.plots.plot_depths`).

The operating-point picker built on :func:`simulate_chain` is in
:mod:`tinysaver_det.detection.studies.operating_points`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from tinysaver_det.core.cascade_model import StageRow, multistage_sweep, pareto_front, threshold_grid
from tinysaver_det.core.picker import Target, pick
from tinysaver_det.core.policy import ExitPolicy, stage_policies
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.core.tables import Table
from tinysaver_det.detection.cache import PredictionCache
from tinysaver_det.core.curves import curve_thresholds
from tinysaver_det.detection.studies.router_comparison import router_cost
from tinysaver_det.errors import TinySaverInputError

PRIMARY = "AP"
UNITS = ("GFLOPs", "ms")


#: What the studies here take as the exit rule of a chain: one :class:`ExitPolicy` for every exiting
#: stage, or one per exiting stage (thresholds, if any, are not used: the studies grid them).
StageRules = Union[ExitPolicy, Sequence[ExitPolicy]]


def stage_confidences(cache: PredictionCache, models: Sequence, rules: StageRules = ExitPolicy()):
    """``(K-1, N)`` confidences of each exiting stage of the chain ``models``, and the routers used."""
    routers = [resolve_router(policy) for policy in stage_policies(rules, len(models) - 1)]
    return np.stack([cache.confidences(m, r) for m, r in zip(models[:-1], routers)]), routers


def simulate_chain(
    cache: PredictionCache,
    models: Sequence,
    threshold_vectors,
    rules: StageRules = ExitPolicy(),
    units: Sequence[str] = UNITS,
) -> list[StageRow]:
    """The chain ``models`` (cheapest first) on ``cache``'s images at each threshold vector.

    Costs per unit include each exiting stage's router cost (0 for score functions).
    """
    models = [cache.names[cache.index(m)] for m in models]
    conf, routers = stage_confidences(cache, models, rules)
    costs = {}
    for unit in units:
        per_model = [cache.cost(m, unit) for m in models]
        for k, router in enumerate(routers):
            per_model[k] = per_model[k] + router_cost(router, cache.detections(models[k]), unit)
        costs[unit] = per_model
    return multistage_sweep(conf, threshold_vectors, cache.selection_metric(models), costs)


def calibration_grid(
    cache: PredictionCache, models: Sequence, rules: StageRules = ExitPolicy(), levels: int = 21
) -> np.ndarray:
    """``(P, K-1)`` threshold vectors: per stage, the confidences at ``levels`` exit ratios of ``cache``, and inf."""
    conf, _ = stage_confidences(cache, list(models), rules)
    return threshold_grid(*(curve_thresholds(row, levels) for row in conf))


def static_rows(cache: PredictionCache, units: Sequence[str] = UNITS) -> list[StageRow]:
    """Each model alone on every image, as a row with no threshold."""
    return [alone_row(cache, m, units) for m in cache.names]


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
    calibration: PredictionCache,
    held_out: PredictionCache,
    models: Sequence[str],
    rules: StageRules = ExitPolicy(),
    levels: int = 21,
    units: Sequence[str] = UNITS,
) -> ChainSweep:
    """Grid a chain's thresholds on calibration and evaluate every vector on both splits."""
    grid = calibration_grid(calibration, models, rules, levels)
    return ChainSweep(
        tuple(models),
        tuple(simulate_chain(calibration, models, grid, rules, units)),
        tuple(simulate_chain(held_out, models, grid, rules, units)),
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
    calibration: PredictionCache,
    held_out: PredictionCache,
    rule: ExitPolicy = ExitPolicy(),
    unit: str = "GFLOPs",
    levels: int = 21,
) -> DepthStudy:
    """Do cascades deeper than two stages extend the cost/AP front? Fronts on calibration, checked on held-out.

    Every chain of length 2 .. K of the ladder is swept on a grid of ``levels`` exit ratios per
    stage (gridded on calibration). The 2-stage front takes the static models and the 2-stage
    chains; the deep front adds every longer chain. Every exiting stage of every chain uses ``rule``'s
    confidence.
    """
    names = calibration.names
    if len(names) < 3:
        raise TinySaverInputError(f"a depth study needs at least 3 models (--model), got {list(names)}")
    sweeps = tuple(
        sweep_chain(calibration, held_out, chain, rule, levels, UNITS)
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


def alone_row(cache: PredictionCache, model, units: Sequence[str]) -> StageRow:
    """One model alone on every image of ``cache``, as a row with no thresholds."""
    return StageRow((), (1.0,), {u: float(cache.cost(model, u).mean()) for u in units}, cache.model_metrics(model))


def _chain_label(chain: Sequence[str]) -> str:
    return "->".join(chain)


def thresholds_label(row: StageRow) -> str:
    """A row's thresholds as tables print them (``never`` for inf, ``-`` for none)."""
    return ", ".join("never" if np.isinf(t) else f"{t:.6g}" for t in row.thresholds) or "-"


def front_mean_best_ap(points: Sequence[FrontPoint], unit: str, split: str = "calibration") -> float:
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
    """The point whose calibration row :func:`~tinysaver_det.core.picker.pick` chooses within ``budget``."""
    row = pick([p.calibration for p in points], Target("budget", budget, unit), PRIMARY)
    return None if row is None else next(p for p in points if p.calibration is row)


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
                line += [_chain_label(point.chain), thresholds_label(cal),
                         cal.metrics[PRIMARY], held.metrics[PRIMARY], held.costs[unit]]
        body.append(tuple(line))
    aucs = ", ".join(
        f"{name} front mean best AP {front_mean_best_ap(f, unit):.4f} (cal) / {front_mean_best_ap(f, unit, 'held_out'):.4f} (held-out)"
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
        (_chain_label(p.chain), thresholds_label(p.calibration),
         " / ".join(f"{r:.2f}" for r in p.calibration.stage_ratios),
         p.calibration.costs[unit], p.calibration.metrics[PRIMARY], p.held_out.costs[unit], p.held_out.metrics[PRIMARY])
        for p in points
    )
    return Table(header, body)
