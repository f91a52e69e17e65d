"""Threshold sweeps of a detection cascade from cached predictions: no detector runs again.

Each model's detections are matched to the ground truth once (``coco_eval.evaluate_images``); every
threshold then only picks, per image, the saver's or the base's cached evaluation
(``coco_eval.CocoCascadeMetric``), which equals pycocotools on the merged results json.

Inputs come either from a run directory of ``tools/eval_coco.py --full`` (both models' predictions
and per-image GFLOPs on every image) or from two standard COCO results jsons and one GFLOPs figure
per model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ConfidenceFunction
from tinysaver_det.core.router import Router, resolve_router
from tinysaver_det.core.selection import RMatch, delta_cost_tr, r_match
from tinysaver_det.core.sweep import SweepRow, default_thresholds, sweep
from tinysaver_det.detection.coco_eval import (
    CocoCascadeMetric,
    CocoParams,
    accumulate,
    evaluate_images,
    load_ground_truth,
    summarize,
)
from tinysaver_det.detection.dataset import load_annotation_json, restrict_annotations
from tinysaver_det.detection.metrics import METRIC_KEYS
from tinysaver_det.detection.results import ResultColumns, load_results_columns
from tinysaver_det.detection.run import load_predictions
from tinysaver_det.detection.run_dir import RECORDS, RUN_JSON
from tinysaver_det.detection.types import Detections
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_jsonl

#: Columns of ``sweep.csv``: one row per threshold.
SWEEP_COLUMNS = ("t", "exit_ratio", *METRIC_KEYS[:6], "gflops")


@dataclass(frozen=True)
class CascadeInputs:
    """Both models' detections and per-image GFLOPs over one image set (``image_ids``, sorted)."""

    annotations: dict
    image_ids: list[int]
    saver: dict[int, Detections]
    base: dict[int, Detections]
    saver_gflops: np.ndarray
    base_gflops: np.ndarray
    saver_results: ResultColumns | None = None
    base_results: ResultColumns | None = None

    def evaluation_input(self, model: str) -> dict[int, Detections] | ResultColumns:
        """What ``evaluate_images`` scores for ``"saver"`` or ``"base"``: the results list as read from a
        json when there is one (boxes as written, as pycocotools' ``loadRes``), else the detections."""
        results = getattr(self, f"{model}_results")
        return results if results is not None else getattr(self, model)


@dataclass(frozen=True)
class DetectionSweep:
    """A sweep's rows, the static models alone, and the saver-selection figures.

    Attributes:
        rows: one :class:`~tinysaver_det.core.sweep.SweepRow` per threshold (``cost`` in GFLOPs/img).
        saver, base: the 12 COCO stats of each model alone on the same images.
        saver_gflops, base_gflops: mean GFLOPs per image of each model alone.
        r_match: the largest exit ratio at which the saver's AP on the exited images is no worse
            than the base's on them (paper Eq. 6), with the curve (Fig. 3).
        delta_cost_tr: ``C_S / C_B - r_match`` (Eq. 10): below 0, the saver pays for itself.
    """

    rows: list[SweepRow]
    saver: dict
    base: dict
    saver_gflops: float
    base_gflops: float
    r_match: RMatch
    delta_cost_tr: float


def inputs_from_run(run_dir: str | Path, annotation_file: str | Path | None = None) -> CascadeInputs:
    """Read a ``--full`` run directory; the image set is every image the run recorded.

    Images the run could not read stay in, as images with no detection that cost nothing (the
    run's own policy, ``run.UNREADABLE_POLICY``).

    Args:
        run_dir: written by ``tools/eval_coco.py --full``.
        annotation_file: default: the one named in the run's ``run.json``.

    Raises:
        TinySaverInputError: the base did not run on every readable image (a run made without ``--full``).
    """
    run_dir = Path(run_dir)
    if annotation_file is None:
        annotation_file = json.loads((run_dir / RUN_JSON).read_text())["annotation_file"]
    records = read_jsonl(run_dir / RECORDS)
    saver = load_predictions(run_dir, "saver")
    base = load_predictions(run_dir, "base")
    missing = sorted(r["image_id"] for r in records if r["status"] == "ok" and r["image_id"] not in base)
    if missing:
        raise TinySaverInputError(
            f"{run_dir}: the base has no predictions for {len(missing)} image(s) (e.g. {missing[:5]}); "
            "sweeps need a run made with --full"
        )
    image_ids = sorted(r["image_id"] for r in records)

    def detections(outputs):
        return {i: outputs[i].detections if i in outputs else Detections.empty(i) for i in image_ids}

    def gflops(outputs):
        return np.array([outputs[i].gflops if i in outputs else 0.0 for i in image_ids])

    return CascadeInputs(
        restrict_annotations(load_annotation_json(annotation_file), image_ids),
        image_ids,
        detections(saver),
        detections(base),
        gflops(saver),
        gflops(base),
    )


def inputs_from_results(
    annotation_file: str | Path,
    saver_json: str | Path,
    base_json: str | Path,
    saver_gflops: float,
    base_gflops: float,
) -> CascadeInputs:
    """Two COCO results jsons over every image of the annotation file, with one GFLOPs figure each.

    Raises:
        TinySaverInputError: a results entry with an unknown image or category id, a bad box or a
            score outside [0, 1] (``results.load_results_columns``).
    """
    annotations = load_annotation_json(annotation_file)
    image_ids = sorted(image["id"] for image in annotations["images"])
    category_ids = [category["id"] for category in annotations["categories"]]
    saver_results, base_results = (load_results_columns(path, image_ids, category_ids) for path in (saver_json, base_json))
    n = len(image_ids)
    return CascadeInputs(
        annotations,
        image_ids,
        saver_results.by_image(image_ids),
        base_results.by_image(image_ids),
        np.full(n, float(saver_gflops)),
        np.full(n, float(base_gflops)),
        saver_results,
        base_results,
    )


def evaluate_results_json(
    annotation_file: str | Path, results_json: str | Path, params: CocoParams | None = None
) -> dict[str, float]:
    """The 12 COCO bbox stats of one results json, equal to pycocotools' ``loadRes`` + ``COCOeval``.

    Raises:
        TinySaverInputError: a bad annotation file or results entry (``results.load_results_columns``).
    """
    annotations = load_annotation_json(annotation_file)
    category_ids = [category["id"] for category in annotations["categories"]]
    results = load_results_columns(results_json, [image["id"] for image in annotations["images"]], category_ids)
    return summarize(accumulate(evaluate_images(load_ground_truth(annotations), results, params)))


def sweep_cascade(
    inputs: CascadeInputs,
    thresholds: Sequence[float] | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    confidence: str | ConfidenceFunction | Router = "mean",
    workers: int = 1,
) -> DetectionSweep:
    """Simulate the cascade at every threshold, exactly as pycocotools would score it.

    Args:
        inputs: from :func:`inputs_from_run` or :func:`inputs_from_results`.
        thresholds: default 0..1 step 0.01 plus the paper's 0.25, 0.26, 0.34, 0.37, 0.69.
        min_score, confidence: the image-confidence rule: a registered name, a ``(scores, min_score)``
            callable, a router or a router file (``tinysaver_det.core.router.resolve_router``).
        workers: processes scoring the thresholds and r_match's exit sets; results do not depend on it.

    ``r_match`` is searched over every distinct confidence (exact, paper Eq. 6), whatever ``thresholds``.
    """
    thresholds = default_thresholds() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    ground_truth = load_ground_truth(inputs.annotations)
    metric = CocoCascadeMetric(
        evaluate_images(ground_truth, inputs.evaluation_input("saver")),
        evaluate_images(ground_truth, inputs.evaluation_input("base")),
        workers=workers,
    )
    if list(metric.image_ids) != list(inputs.image_ids):
        raise TinySaverInputError("ground-truth images and prediction images differ")
    router = resolve_router(confidence, min_score)
    confidences = np.array([router(inputs.saver[i]) for i in inputs.image_ids])
    rows = sweep(confidences, thresholds, metric, inputs.saver_gflops, inputs.base_gflops)
    everything = np.ones(len(inputs.image_ids), dtype=bool)
    saver_alone, base_alone = metric.routed_many(np.stack([everything, ~everything]))
    cost_saver, cost_base = float(inputs.saver_gflops.mean()), float(inputs.base_gflops.mean())
    matched = r_match(confidences, metric)  # every distinct confidence: exact, independent of the grid
    return DetectionSweep(
        rows, saver_alone, base_alone, cost_saver, cost_base, matched,
        delta_cost_tr(matched.r_match, cost_saver, cost_base),
    )


def sweep_rows_table(result: DetectionSweep) -> list[list]:
    """``sweep.csv`` rows in :data:`SWEEP_COLUMNS` order."""
    return [
        [row.threshold, row.exit_ratio, *(row.metrics[k] for k in METRIC_KEYS[:6]), row.cost] for row in result.rows
    ]
