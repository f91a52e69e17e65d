"""Threshold sweeps of a detection cascade from cached predictions: no detector runs again.

Each model's detections are matched to the ground truth once, in the prediction cache
(:class:`~tinysaver_det.detection.cache.PredictionCache`); every threshold then only picks, per
image, the saver's or the base's cached evaluation (:class:`~tinysaver_det.detection.coco.CocoCascadeMetric`),
which equals pycocotools on the merged results json.

The cache comes either from a run directory of ``eval --full`` (both models' predictions and
per-image GFLOPs on every image; :func:`~tinysaver_det.detection.cache.cache_from_run`) or from two
standard COCO results jsons and one GFLOPs figure per model
(:func:`~tinysaver_det.detection.cache.cache_from_results`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinysaver_det.core.policy import ExitPolicy
from tinysaver_det.core.selection import RMatch, delta_cost_tr, r_match
from tinysaver_det.core.cascade_model import StageRow, default_thresholds, sweep
from tinysaver_det.detection.cache import PredictionCache
from tinysaver_det.detection.coco import STAT_KEYS
from tinysaver_det.detection.router_files import resolve_router

#: Columns of ``sweep.csv``: one row per threshold.
SWEEP_COLUMNS = ("t", "exit_ratio", *STAT_KEYS[:6], "gflops")


@dataclass(frozen=True)
class DetectionSweep:
    """A sweep's rows, the static models alone, and the saver-selection figures.

    Attributes:
        rows: one :class:`~tinysaver_det.core.cascade_model.StageRow` per threshold (``cost`` in GFLOPs/img).
        saver, base: the 12 COCO stats of each model alone on the same images.
        saver_gflops, base_gflops: mean GFLOPs per image of each model alone.
        r_match: the largest exit ratio at which the saver's AP on the exited images is no worse
            than the base's on them (paper Eq. 6), with the curve (Fig. 3).
        delta_cost_tr: ``C_S / C_B - r_match`` (Eq. 10): below 0, the saver pays for itself.
    """

    rows: list[StageRow]
    saver: dict
    base: dict
    saver_gflops: float
    base_gflops: float
    r_match: RMatch
    delta_cost_tr: float


def sweep_cascade(
    cache: PredictionCache,
    thresholds: Sequence[float] | None = None,
    rule: ExitPolicy = ExitPolicy(),
    saver: str | int = 0,
    base: str | int = 1,
    workers: int = 1,
) -> DetectionSweep:
    """Simulate the saver/base cascade at every threshold, exactly as pycocotools would score it.

    Args:
        cache: from :func:`~tinysaver_det.detection.cache.cache_from_run`,
            :func:`~tinysaver_det.detection.cache.cache_from_results` or any prediction files.
        thresholds: default 0..1 step 0.01 plus the paper's 0.25, 0.26, 0.34, 0.37, 0.69.
        rule: the image-confidence rule (its ``confidence`` and ``min_score``; its threshold, if any,
            is not used): a registered name, a ``(scores, min_score)`` callable, a router or a router
            file (:func:`tinysaver_det.detection.router_files.resolve_router`). Default: the paper's mean.
        saver, base: the two models of ``cache`` (name or index; default its first two).
        workers: processes scoring the thresholds and r_match's exit sets; results do not depend on it.

    ``r_match`` is searched over every distinct confidence (exact, paper Eq. 6), whatever ``thresholds``.
    """
    thresholds = default_thresholds() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    metric = cache.pair_metric(saver, base, workers=workers)
    router = resolve_router(rule)
    confidences = cache.confidences(saver, router)
    saver_gflops, base_gflops = cache.cost(saver, "GFLOPs"), cache.cost(base, "GFLOPs")
    rows = sweep(confidences, thresholds, metric, saver_gflops, base_gflops)
    everything = np.ones(cache.n_images, dtype=bool)
    saver_alone, base_alone = metric.routed_many(np.stack([everything, ~everything]))
    cost_saver, cost_base = float(saver_gflops.mean()), float(base_gflops.mean())
    matched = r_match(confidences, metric)  # every distinct confidence: exact, independent of the grid
    return DetectionSweep(
        rows, saver_alone, base_alone, cost_saver, cost_base, matched,
        delta_cost_tr(matched.r_match, cost_saver, cost_base),
    )


def sweep_rows_table(result: DetectionSweep) -> list[list]:
    """``sweep.csv`` rows in :data:`SWEEP_COLUMNS` order."""
    return [
        [row.threshold, row.exit_ratio, *(row.metrics[k] for k in STAT_KEYS[:6]), row.cost] for row in result.rows
    ]
