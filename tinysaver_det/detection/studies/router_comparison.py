"""Which router should decide when the saver answers? Score functions, a learned post-evaluator, the oracle.

For one saver/base pair of a :class:`~tinysaver_det.detection.cache.PredictionCache`, every router gives
one confidence per image; sweeping the threshold over all its distinct values traces the cascade's
AP-vs-cost curve (:func:`router_curve`). Routers are ranked on a calibration split and reported on
a held-out split (:func:`compare_routers`).

The **oracle** (:func:`oracle_confidences`) is the per-image best choice between saver and base,
as a ranking: images are ordered by the base's per-image gain over the saver (the difference of
their per-image COCO AP, each image evaluated alone from the cached matching), smallest gain first,
and the cut sweeps through that order. It shows how much of the gap to the base is lost to routing
and how much to the saver itself. COCO AP is not a sum over images (precision is pooled across
images by score), so this ordering is a heuristic upper bound, not a proven optimum: some routing
could in principle score a little higher, and the oracle uses the labels of the split it is
evaluated on, so no deployable router can be expected to reach it.

The **learned router** (:func:`train_router`) is the paper's post-evaluator (Sec. 3.2): a logistic
regression over features of the saver's output (:func:`~tinysaver_det.detection.output_features.detection_features`),
trained on the calibration split to predict "the saver's per-image AP is >= the base's". Eq. 5 of
the paper says such an evaluator of cost ``C_E`` pays for itself at matched performance only when
``C_S + C_E + (1 - r_E) C_B < C_S + (1 - r) C_B``, i.e. ``C_E < (r_E - r) * C_B``, where ``r`` and
``r_E`` are the exit ratios without and with it at the same AP (:func:`evaluator_condition`).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det.core.policy import CONFIDENCE_FUNCTIONS, DEFAULT_MIN_SCORE
from tinysaver_det.core.score_routers import Router
from tinysaver_det.detection.feature_router import gain_target
from tinysaver_det.detection.logistic_router import LogisticRouter
from tinysaver_det.detection.output_features import feature_matrix
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.core.selection import r_match
from tinysaver_det.core.cascade_model import COST, DEFERRED, StageRow, sweep
from tinysaver_det.core.curves import curve_mean_ap, curve_thresholds
from tinysaver_det.core.picker import Target, pick
from tinysaver_det.core.tables import Table
from tinysaver_det.detection.cache import PredictionCache

ORACLE = "oracle"


def oracle_confidences(saver_quality, base_quality) -> np.ndarray:
    """Confidences that rank images by the base's per-image gain over the saver, smallest gain first.

    ``gain = base_quality - saver_quality`` (:func:`~tinysaver_det.detection.feature_router.gain_target`); an image whose quality is -1 under either model (no
    ground truth: per-image AP is undefined) has gain 0. Ties are broken by the saver's quality
    (better first), then by position. The result is ``1 - rank / N``: distinct values in (0, 1],
    so a threshold sweep cuts the ranking at every position.

    >>> oracle_confidences([1.0, 0.2, 0.5], [1.0, 0.9, 0.5]).tolist()  # gains 0, 0.7, 0
    [1.0, 0.33333333333333337, 0.6666666666666667]
    """
    saver = np.asarray(saver_quality, dtype=np.float64).reshape(-1)
    base = np.asarray(base_quality, dtype=np.float64).reshape(-1)
    if saver.shape != base.shape:
        raise ValueError(f"saver_quality ({saver.size}) and base_quality ({base.size}) must cover the same images")
    gain = gain_target(saver, base)
    order = np.lexsort((np.arange(len(gain)), -saver, gain))
    confidences = np.empty(len(gain), dtype=np.float64)
    confidences[order] = 1.0 - np.arange(len(gain)) / max(len(gain), 1)
    return confidences


def router_labels(cache: PredictionCache, saver, base) -> np.ndarray:
    """``(N,)`` True where the saver's per-image AP is >= the base's (images without ground truth: True).

    That is: the base gains nothing on the image (:func:`~tinysaver_det.detection.feature_router.gain_target`
    ``<= 0``), so the logistic router's label and the feature post-evaluator's and the oracle's gain
    are one definition (for per-image APs, which are finite, ``base - saver <= 0`` exactly when ``saver >= base``).
    """
    return gain_target(cache.per_image_ap(saver), cache.per_image_ap(base)) <= 0


def train_router(
    cache: PredictionCache, saver, base, l2: float = 1.0, min_score: float = DEFAULT_MIN_SCORE, name: str = "learned"
) -> LogisticRouter:
    """Fit the learned post-evaluator on ``cache`` (the calibration split): saver features -> saver as good as base.

    The router records the saver's weights sha256 when the cache knows it (the predictions' provenance), so a
    cascade with another saver refuses it."""
    labels = router_labels(cache, saver, base)
    info = {
        "saver": cache.names[cache.index(saver)],
        "base": cache.names[cache.index(base)],
        "label": "per-image COCO AP of the saver >= that of the base",
        "n_images": cache.n_images,
    }
    return LogisticRouter.fit(feature_matrix(cache.detections(saver), min_score), labels, l2, min_score, name, info,
                              saver=cache.models[cache.index(saver)].sha256)


def router_cost(router: Router, detections: Sequence, unit: str) -> np.ndarray:
    """``(N,)`` the router's own cost per image: its GFLOPs, or its measured milliseconds."""
    if unit == "GFLOPs":
        return np.array([router.gflops(d) for d in detections], dtype=np.float64)
    costs = np.empty(len(detections), dtype=np.float64)
    for i, d in enumerate(detections):
        start = perf_counter()
        router(d)
        costs[i] = (perf_counter() - start) * 1e3
    return costs


@dataclass(frozen=True)
class CurveSummary:
    """One router's cascade on one split.

    Attributes:
        rows: the sweep over every distinct confidence (:func:`curve_thresholds`).
        r_match: largest exit ratio at which the saver matches the base on the exited images (Eq. 6).
        curve_mean_ap: mean AP over the cost range: the area under the AP-vs-cost curve (trapezoids, points
            by rising cost) divided by the width of that range.
        ap_at_budgets: best AP at cost ``<=`` each budget (None: no point that cheap).
        cost_to_reach: cheapest cost at which AP ``>=`` the reference AP (None: never).
    """

    rows: tuple[StageRow, ...]
    r_match: float
    curve_mean_ap: float
    ap_at_budgets: tuple[float | None, ...]
    cost_to_reach: float | None


def router_curve(
    cache: PredictionCache,
    saver,
    base,
    confidences,
    unit: str,
    extra_saver_cost=0.0,
    budgets: Sequence[float] = (),
    reference_ap: float | None = None,
    levels: int | None = None,
    with_r_match: bool = True,
) -> CurveSummary:
    """Sweep one router's confidences on one split and summarise the curve.

    Args:
        cache: the split's models and evaluations.
        saver, base: the pair (names or indices).
        confidences: ``(N,)`` the router's confidence per image.
        unit: ``"GFLOPs"`` or ``"ms"``.
        extra_saver_cost: the router's own cost, scalar or ``(N,)``, added to the saver's.
        budgets: costs at which to report the best AP.
        reference_ap: report the cheapest cost reaching it (e.g. a mid-size model's AP).
        levels: see :func:`curve_thresholds`; ``r_match`` is read on the same cut points.
        with_r_match: False skips ``r_match`` (reported as NaN) when only the curve is needed.
    """
    metric = cache.pair_metric(saver, base)
    cost_saver = cache.cost(saver, unit) + extra_saver_cost
    thresholds = curve_thresholds(confidences, levels)
    rows = tuple(sweep(confidences, thresholds, metric, cost_saver, cache.cost(base, unit)))
    return CurveSummary(
        rows=rows,
        r_match=r_match(confidences, metric, None if levels is None else thresholds[:-1]).r_match
        if with_r_match
        else float("nan"),
        curve_mean_ap=curve_mean_ap(rows),
        ap_at_budgets=tuple(best_ap_within(rows, b) for b in budgets),
        cost_to_reach=None if reference_ap is None else cost_to_ap(rows, reference_ap),
    )


@dataclass(frozen=True)
class RouterResult:
    """A router on the calibration and held-out splits.

    Attributes:
        name: the router's name (``"oracle"`` for the oracle, evaluated on each split's own labels).
        cost: its own mean cost per image (unit of the comparison).
        calibration, held_out: its :class:`CurveSummary` on each split.
    """

    name: str
    cost: float
    calibration: CurveSummary
    held_out: CurveSummary


@dataclass(frozen=True)
class RouterComparison:
    """:func:`compare_routers`' result; ``results`` are in the order routers were given, oracle last."""

    saver: str
    base: str
    reference: str | None
    unit: str
    budgets: tuple[float, ...]
    reference_ap: tuple[float | None, float | None]
    base_ap: tuple[float, float]
    saver_cost: float
    base_cost: float
    results: tuple[RouterResult, ...]
    learned: LogisticRouter | None

    def ranks(self, key: str) -> dict[str, int]:
        """Rank (1 = best) of each non-oracle router on calibration by ``"r_match"`` or ``"curve_mean_ap"``."""
        routers = [r for r in self.results if r.name != ORACLE]
        ordered = sorted(routers, key=lambda r: -getattr(r.calibration, key))
        return {r.name: ordered.index(r) + 1 for r in routers}


def compare_routers(
    calibration: PredictionCache,
    held_out: PredictionCache,
    saver,
    base,
    unit: str = "GFLOPs",
    routers: Mapping[str, object] | None = None,
    learned: bool = True,
    reference=None,
    budgets: Sequence[float] | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    l2: float = 1.0,
    levels: int | None = 101,
) -> RouterComparison:
    """Every router's cascade on both splits, the learned router trained on calibration, and the oracle.

    Args:
        calibration, held_out: the two splits (same models).
        saver, base: the pair (names or indices).
        unit: the cost unit.
        routers: ``{name: confidence option}`` (see :func:`~tinysaver_det.detection.router_files.resolve_router`);
            default: every registered confidence function.
        learned: also train and compare the learned post-evaluator.
        reference: a model whose cost and AP (per split) are the comparison points, e.g. a mid-size
            model the cascade should beat.
        budgets: costs at which to report the best held-out AP; default: the reference's cost and
            ``C_S + C_B / 2`` (held-out means).
        levels: cut points per curve (:func:`curve_thresholds`); None for every distinct confidence.
    """
    options = dict(routers) if routers is not None else {name: name for name in CONFIDENCE_FUNCTIONS}
    resolved = {name: resolve_router(option, min_score) for name, option in options.items()}
    trained = None
    if learned:
        trained = train_router(calibration, saver, base, l2=l2, min_score=min_score)
        resolved[trained.name] = trained
    reference_ap = tuple(None if reference is None else split.model_metrics(reference)["AP"]
                         for split in (calibration, held_out))
    saver_cost = float(held_out.cost(saver, unit).mean())
    base_cost = float(held_out.cost(base, unit).mean())
    if budgets is None:
        budgets = ([float(held_out.cost(reference, unit).mean())] if reference is not None else []) + [
            saver_cost + base_cost / 2
        ]
    budgets = tuple(float(b) for b in budgets)

    def summary(split: PredictionCache, confidences, extra, reference_level, split_budgets) -> CurveSummary:
        return router_curve(split, saver, base, confidences, unit, extra, split_budgets, reference_level, levels)

    results = []
    for name, router in resolved.items():
        curves = []
        for split, level, split_budgets in ((calibration, reference_ap[0], ()), (held_out, reference_ap[1], budgets)):
            detections = split.detections(saver)
            extra = router_cost(router, detections, unit)
            curves.append(summary(split, split.confidences(saver, router), extra, level, split_budgets))
        cost = float(router_cost(router, held_out.detections(saver), unit).mean())
        results.append(RouterResult(name, cost, *curves))
    oracle_curves = [
        summary(split, oracle_confidences(split.per_image_ap(saver), split.per_image_ap(base)), 0.0, level, b)
        for split, level, b in ((calibration, reference_ap[0], ()), (held_out, reference_ap[1], budgets))
    ]
    results.append(RouterResult(ORACLE, 0.0, *oracle_curves))
    return RouterComparison(
        saver=calibration.names[calibration.index(saver)],
        base=calibration.names[calibration.index(base)],
        reference=None if reference is None else calibration.names[calibration.index(reference)],
        unit=unit,
        budgets=budgets,
        reference_ap=reference_ap,
        base_ap=(calibration.model_metrics(base)["AP"], held_out.model_metrics(base)["AP"]),
        saver_cost=saver_cost,
        base_cost=base_cost,
        results=tuple(results),
        learned=trained,
    )


@dataclass(frozen=True)
class EvaluatorCheck:
    """Eq. 5 at one AP level: is the evaluator worth its cost?

    Attributes:
        level: the AP both cascades must reach.
        r: the plain router's largest exit ratio reaching ``level`` (None: never reaches it).
        r_evaluator: the evaluator's.
        cost_evaluator: ``C_E``, its mean cost per image.
        saving: ``(r_E - r) * C_B``, what its extra exits save.
        holds: ``C_E < (r_E - r) * C_B`` (None when either never reaches the level).
    """

    level: float
    r: float | None
    r_evaluator: float | None
    cost_evaluator: float
    saving: float | None
    holds: bool | None


def best_ap_within(rows: Sequence[StageRow], budget: float) -> float | None:
    """Best AP among rows costing at most ``budget`` (None when none does)."""
    row = pick(rows, Target("budget", budget, COST), "AP")
    return None if row is None else row.metrics["AP"]


def cost_to_ap(rows: Sequence[StageRow], level: float) -> float | None:
    """Cheapest cost among rows with AP ``>= level`` (None when none reaches it)."""
    row = pick(rows, Target("max_drop", 0.0, COST), "AP", level)
    return None if row is None else row.cost


def _largest_exit_ratio(rows: Sequence[StageRow], level: float) -> float | None:
    """Largest exit ratio among rows with AP ``>= level`` (None when none reaches it)."""
    row = pick(rows, Target("max_drop", 0.0, DEFERRED), "AP", level)
    return None if row is None else row.exit_ratio


def evaluator_condition(
    plain_rows: Sequence[StageRow],
    evaluator_rows: Sequence[StageRow],
    cost_evaluator: float,
    cost_base: float,
    levels: Sequence[float],
) -> list[EvaluatorCheck]:
    """The paper's Eq. 5 condition ``C_E < (r_E - r) * C_B`` at each AP level.

    >>> def row(t, r, cost, ap): return StageRow((t,), (r, 1 - r), {"cost": cost}, {"AP": ap})
    >>> plain = [row(0.5, 0.2, 4.0, 0.50), row(0.3, 0.5, 2.5, 0.45)]
    >>> learned = [row(0.7, 0.4, 3.0, 0.50), row(0.4, 0.6, 2.0, 0.45)]
    >>> checks = evaluator_condition(plain, learned, 0.1, 5.0, [0.5])
    >>> [(c.r, c.r_evaluator, round(c.saving, 2), c.holds) for c in checks]
    [(0.2, 0.4, 1.0, True)]
    """
    checks = []
    for level in levels:
        r, r_e = _largest_exit_ratio(plain_rows, level), _largest_exit_ratio(evaluator_rows, level)
        if r is None or r_e is None:
            checks.append(EvaluatorCheck(float(level), r, r_e, cost_evaluator, None, None))
            continue
        saving = (r_e - r) * cost_base
        checks.append(EvaluatorCheck(float(level), r, r_e, cost_evaluator, saving, cost_evaluator < saving))
    return checks


def evaluator_checks(
    comparison: RouterComparison,
    plain: str = "mean",
    evaluator: str = "learned",
    drops: Sequence[float] = (0.0, 0.005, 0.01, 0.02, 0.05),
) -> list[EvaluatorCheck]:
    """Eq. 5 on the held-out split: ``evaluator`` against the ``plain`` router at AP levels.

    Levels: the base's held-out AP minus each drop, and the reference model's held-out AP.
    """
    by_name = {r.name: r for r in comparison.results}
    levels = [comparison.base_ap[1] - d for d in drops]
    if comparison.reference_ap[1] is not None:
        levels.append(comparison.reference_ap[1])
    return evaluator_condition(
        by_name[plain].held_out.rows,
        by_name[evaluator].held_out.rows,
        by_name[evaluator].cost,
        comparison.base_cost,
        levels,
    )


def router_table(comparison: RouterComparison) -> Table:
    """One line per router: calibration ranks and curve numbers, then the held-out results."""
    unit = comparison.unit
    ranks_r, ranks_mean_ap = comparison.ranks("r_match"), comparison.ranks("curve_mean_ap")
    reference = comparison.reference or "reference"
    header = (
        "router", f"C_E ({unit})", "cal r_match", "cal curve mean AP", "rank r_match", "rank curve mean AP",
        "held r_match", "held curve mean AP", *(f"held AP @<={b:.3g} {unit}" for b in comparison.budgets),
        f"held {unit} to reach {reference} AP",
    )
    body = tuple(
        (
            r.name, f"{r.cost:.2e}", r.calibration.r_match, r.calibration.curve_mean_ap,
            ranks_r.get(r.name, "-"), ranks_mean_ap.get(r.name, "-"),
            r.held_out.r_match, r.held_out.curve_mean_ap, *r.held_out.ap_at_budgets, r.held_out.cost_to_reach,
        )
        for r in comparison.results
    )
    note = (
        f"saver {comparison.saver} -> base {comparison.base}; base AP {comparison.base_ap[0]:.4f} (cal) / "
        f"{comparison.base_ap[1]:.4f} (held-out)"
        + (f"; {reference} alone: AP {comparison.reference_ap[1]:.4f} (held-out)" if comparison.reference else "")
        + f". Curve mean AP: the area under the AP-vs-cost curve (trapezoids) over the {unit} range "
        f"C_S .. C_S + C_B, divided by that range. Ranks on calibration; oracle uses each "
        "split's own per-image AP (an upper-bound heuristic, not a deployable router)."
    )
    return Table(header, body, note)


def evaluator_table(checks: Sequence[EvaluatorCheck], unit: str, plain: str = "mean") -> Table:
    """Eq. 5 checks as a table."""
    header = ("AP level", f"r ({plain})", "r_E (learned)", f"C_E ({unit})", f"(r_E - r) * C_B ({unit})",
              "C_E < (r_E - r) C_B")
    body = tuple(
        (c.level, c.r, c.r_evaluator, f"{c.cost_evaluator:.2e}", c.saving,
         "-" if c.holds is None else ("yes" if c.holds else "no"))
        for c in checks
    )
    note = "Paper Eq. 5 at matched AP (held-out): the evaluator pays for itself iff C_E < (r_E - r) * C_B."
    return Table(header, body, note)


@dataclass(frozen=True)
class ContextRow:
    """One router on the whole dataset: the best AP within the reference's cost, and the cost of its AP."""

    name: str
    ap_at_reference_cost: float | None
    cost_to_reference_ap: float | None


def context_rows(
    full: PredictionCache,
    calibration: PredictionCache,
    held_out: PredictionCache,
    saver,
    base,
    reference,
    unit: str = "GFLOPs",
    routers: Mapping[str, object] | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    l2: float = 1.0,
    levels: int | None = None,
) -> tuple[float, float, list[ContextRow]]:
    """Where each router puts the cascade against a static ``reference`` model, on every image of ``full``.

    Score functions need no training. The learned router is **cross-fitted**: the one trained on
    ``calibration`` scores the held-out images and the one trained on ``held_out`` scores the
    calibration images, so no image is scored by a router that saw it. The oracle uses ``full``'s
    own per-image AP. ``levels=None`` (default) sweeps every distinct confidence: exact.

    Returns:
        The reference's mean cost and AP on ``full``, and one :class:`ContextRow` per router (oracle last).
    """
    reference_cost = float(full.cost(reference, unit).mean())
    reference_ap = full.model_metrics(reference)["AP"]
    options = dict(routers) if routers is not None else {name: name for name in CONFIDENCE_FUNCTIONS}
    confidences = {name: full.confidences(saver, resolve_router(o, min_score)) for name, o in options.items()}
    extra = {name: 0.0 for name in confidences}
    on_calibration = train_router(calibration, saver, base, l2=l2, min_score=min_score)
    on_held_out = train_router(held_out, saver, base, l2=l2, min_score=min_score)
    held_ids = set(held_out.image_ids.tolist())
    detections = full.detections(saver)
    scorer = [on_calibration if i in held_ids else on_held_out for i in full.image_ids.tolist()]
    confidences["learned (2-fold cross-fit)"] = np.array([r(d) for r, d in zip(scorer, detections)])
    extra["learned (2-fold cross-fit)"] = np.array([router_cost(r, [d], unit)[0] for r, d in zip(scorer, detections)])
    confidences[ORACLE] = oracle_confidences(full.per_image_ap(saver), full.per_image_ap(base))
    extra[ORACLE] = 0.0
    rows = []
    for name, conf in confidences.items():
        curve = router_curve(full, saver, base, conf, unit, extra[name], [reference_cost], reference_ap, levels, False)
        rows.append(ContextRow(name, curve.ap_at_budgets[0], curve.cost_to_reach))
    return reference_cost, reference_ap, rows


def context_table(
    reference: str, reference_cost: float, reference_ap: float, rows: Sequence[ContextRow], unit: str
) -> Table:
    """:func:`context_rows` as a table, with the reference model's own line first."""
    header = (
        "system",
        f"best AP at <= {reference_cost:.3g} {unit} ({reference}'s cost)",
        f"{unit} to reach {reference}'s AP {reference_ap:.3f}",
    )
    body = ((f"{reference} alone", reference_ap, reference_cost),) + tuple(
        (r.name, r.ap_at_reference_cost, r.cost_to_reference_ap) for r in rows
    )
    return Table(header, body, "All images; '-': never reached.")
