"""The honest comparison of the feature post-evaluator: mean rule, output router, feature evaluator, oracle.

On each of several random calibration / held-out splits of a prediction cache, four routers (and
optional ablations) route the saver/base cascade on the held-out half:

* ``mean``: the paper's rule (mean score of the saver's boxes >= 0.05);
* ``outputs``: the logistic router over the saver's output statistics
  (:class:`~tinysaver_det.detection.logistic_router.LogisticRouter`, trained on calibration);
* ``features``: the feature post-evaluator (:func:`~tinysaver_det.detection.feature_router.fit_feature_router`,
  blocks and ridge strength chosen by cross-validation on calibration only);
* ``oracle``: the per-image ranking by the base's true gain on the held-out half (an upper-bound heuristic).

Each router's own cost (GFLOPs per image) is added to the saver's. For every static model of the
cache, the comparison reads the best held-out AP at that model's cost (:class:`BudgetRow`, with
the share of the mean-to-oracle gap closed) and the cost at which the cascade reaches that
model's AP; plus the area under the AP-vs-cost curve (:class:`CurveRow`) and the paper's Eq. 5
check of the evaluator against the mean rule (:func:`eq5_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from tinysaver_det.core.cascade_model import StageRow
from tinysaver_det.core.curves import curve_mean_ap
from tinysaver_det.core.tables import Table
from tinysaver_det.detection.cache import PredictionCache
from tinysaver_det.detection.feature_router import FeatureRouter, fit_feature_router, gain_target
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.detection.studies.router_comparison import (
    EvaluatorCheck,
    evaluator_condition,
    oracle_confidences,
    best_ap_within,
    cost_to_ap,
    router_cost,
    router_curve,
    train_router,
)

#: The routers of the comparison, in table order (ablations come between ``features`` and ``oracle``).
ROUTERS = ("mean", "outputs", "features", "oracle")


@dataclass(frozen=True)
class BudgetRow:
    """One line of ``routers.csv``: a router on one split at one static model's cost."""

    router: str
    split: str
    budget: str
    ap: float | None
    gap_closed: float | None


@dataclass(frozen=True)
class CurveRow:
    """A router's whole held-out curve on one split: curve mean AP (:func:`~tinysaver_det.core.curves.curve_mean_ap`), own cost, and the cost to reach each static model's AP."""

    router: str
    split: str
    curve_mean_ap: float
    router_gflops: float
    cost_to_reach: Mapping[str, float | None]


@dataclass(frozen=True)
class SplitOutcome:
    """Everything one split gives: rows, curves, Eq. 5 checks, and the feature evaluator trained on it."""

    split: str
    budget_rows: tuple[BudgetRow, ...]
    curve_rows: tuple[CurveRow, ...]
    eq5: tuple[EvaluatorCheck, ...]
    evaluator: FeatureRouter


def split_label(scheme: str, seed: int) -> str:
    """``parity`` or ``perm<seed>``."""
    return scheme if scheme == "parity" else f"perm{seed}"


def held_out_curve(held_out: PredictionCache, saver, base, confidences, extra_cost) -> tuple[StageRow, ...]:
    """The cascade's rows at every distinct confidence on the held-out half (exact), router cost included."""
    return router_curve(held_out, saver, base, confidences, "GFLOPs", extra_cost, with_r_match=False).rows


def compare_split(
    calibration: PredictionCache,
    held_out: PredictionCache,
    saver,
    base,
    label: str,
    ablations: Mapping[str, Sequence[str]] | None = None,
    fit: Callable[..., FeatureRouter] = fit_feature_router,
) -> SplitOutcome:
    """Train on ``calibration``, route ``held_out`` with each router, and read it at every static model's cost.

    Args:
        ablations: ``{name: blocks}`` extra feature evaluators restricted to those blocks (e.g.
            ``{"features[outputs]": ("outputs",)}``), to show where the gain comes from.
    """
    saver_detections = calibration.detections(saver)
    gain = gain_target(calibration.per_image_ap(saver), calibration.per_image_ap(base))
    evaluator = fit(saver_detections, gain)
    routers = {"mean": resolve_router("mean"), "outputs": train_router(calibration, saver, base, name="outputs"),
               "features": evaluator}
    for name, blocks in (ablations or {}).items():
        routers[name] = fit(saver_detections, gain, block_choices=[tuple(blocks)], name=name)
    held = held_out.detections(saver)
    curves: dict[str, tuple[tuple[StageRow, ...], float]] = {}
    for name, router in routers.items():
        extra = router_cost(router, held, "GFLOPs")
        curves[name] = (held_out_curve(held_out, saver, base, held_out.confidences(saver, router), extra),
                        float(extra.mean()))
    oracle = oracle_confidences(held_out.per_image_ap(saver), held_out.per_image_ap(base))
    curves["oracle"] = (held_out_curve(held_out, saver, base, oracle, 0.0), 0.0)

    statics = {name: (float(held_out.cost(name, "GFLOPs").mean()), held_out.model_metrics(name)["AP"])
               for name in held_out.names}
    at_budget = {router: {m: best_ap_within(rows, cost) for m, (cost, _) in statics.items()}
                 for router, (rows, _) in curves.items()}
    budget_rows = []
    for router in curves:
        for model in statics:
            ap, low, high = at_budget[router][model], at_budget["mean"][model], at_budget["oracle"][model]
            closed = None
            if ap is not None and low is not None and high is not None and high - low > 1e-9:
                closed = (ap - low) / (high - low)
            budget_rows.append(BudgetRow(router, label, model, ap, closed))
    curve_rows = tuple(
        CurveRow(router, label, curve_mean_ap(rows), cost,
                 {m: cost_to_ap(rows, level) for m, (_, level) in statics.items()})
        for router, (rows, cost) in curves.items()
    )
    base_ap = held_out.model_metrics(base)["AP"]
    saver_ap = held_out.model_metrics(saver)["AP"]
    levels = sorted({level for _, level in statics.values() if saver_ap < level < base_ap}
                    | {base_ap - 0.01, base_ap - 0.02})
    eq5 = tuple(evaluator_condition(curves["mean"][0], curves["features"][0], curves["features"][1],
                                    float(held_out.cost(base, "GFLOPs").mean()), levels))
    return SplitOutcome(label, tuple(budget_rows), curve_rows, eq5, evaluator)


def _mean_std(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    text = f"{np.mean(known):.4f} ± {np.std(known):.4f}"
    return text if len(known) == len(values) else f"{text} ({len(known)}/{len(values)})"


def summary_table(outcomes: Sequence[SplitOutcome]) -> Table:
    """Per router, mean ± std over splits of: AP and gap closed at each static model's cost, curve mean AP, own cost,
    and the GFLOPs to reach each static model's AP."""
    routers = list(dict.fromkeys(r.router for o in outcomes for r in o.budget_rows))
    models = list(dict.fromkeys(r.budget for r in outcomes[0].budget_rows))
    header = ["router", "C_E (GFLOPs)", "curve mean AP"]
    for m in models:
        header += [f"AP @ {m}'s cost", f"gap closed @ {m}"]
    header += [f"GFLOPs to {m}'s AP" for m in models]
    body = []
    for router in routers:
        budget = [r for o in outcomes for r in o.budget_rows if r.router == router]
        curve = [c for o in outcomes for c in o.curve_rows if c.router == router]
        line = [router, f"{np.mean([c.router_gflops for c in curve]):.2e}", _mean_std([c.curve_mean_ap for c in curve])]
        for m in models:
            line += [_mean_std([r.ap for r in budget if r.budget == m]),
                     _mean_std([r.gap_closed for r in budget if r.budget == m])]
        line += [_mean_std([c.cost_to_reach[m] for c in curve]) for m in models]
        body.append(tuple(line))
    note = (f"held-out halves of {len(outcomes)} splits ({', '.join(o.split for o in outcomes)}), mean ± std; "
            "router cost included; gap closed = (AP - AP_mean) / (AP_oracle - AP_mean); '-': never reached "
            "(n/N: reached on n of N splits).")
    return Table(tuple(header), tuple(body), note)


def budget_table(outcomes: Sequence[SplitOutcome]) -> Table:
    """``routers.csv``: one row per (router, split, budget)."""
    body = tuple((r.router, r.split, r.budget, r.ap, r.gap_closed) for o in outcomes for r in o.budget_rows)
    return Table(("router", "split", "budget", "ap", "gap_closed"), body, "")


def eq5_table(outcomes: Sequence[SplitOutcome]) -> Table:
    """Paper Eq. 5 (``C_E < (r_E - r) * C_B``) of the feature evaluator against the mean rule, per split and AP level."""
    body = tuple(
        (o.split, c.level, c.r, c.r_evaluator, f"{c.cost_evaluator:.2e}", c.saving,
         "-" if c.holds is None else ("yes" if c.holds else "no"))
        for o in outcomes for c in o.eq5
    )
    header = ("split", "AP level", "r (mean)", "r_E (features)", "C_E (GFLOPs)", "(r_E - r) * C_B", "C_E < (r_E - r) C_B")
    return Table(header, body, "Held-out; levels: each static model's AP between the saver's and the base's, and the base's AP - 0.01, - 0.02.")


def cv_choice_table(outcomes: Sequence[SplitOutcome]) -> Table:
    """What cross-validation on each calibration half chose (blocks, ridge strength, CV captured gain)."""
    body = []
    for o in outcomes:
        table = o.evaluator.info.get("cv_table", [])
        best = max(table, key=lambda row: row["cv_captured_gain"]) if table else {}
        body.append((o.split, "+".join(o.evaluator.blocks), o.evaluator.info.get("alpha"),
                     best.get("cv_captured_gain"), len(o.evaluator.weights)))
    return Table(("split", "blocks", "alpha", "CV captured gain", "inputs"), tuple(body),
                 "Chosen on the calibration half only (5-fold CV).")
