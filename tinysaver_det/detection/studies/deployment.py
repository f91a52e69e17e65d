"""From a picked threshold to the ``operating_point.json`` that deploys it, with a held-out bootstrap.

The picker (:mod:`~tinysaver_det.detection.studies.operating_points`) chooses ``t`` on the calibration
split and measures it on the held-out split. Held-out numbers from a few hundred images are
estimates too: :func:`held_out_bootstrap` resamples the held-out images with replacement and
recomputes the cascade's COCO AP (exactly, duplicates as separate images) and GFLOPs per image at the
same routing, giving a percentile interval for each (:mod:`tinysaver_det.core.bootstrap`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det.core.bootstrap import bootstrap_intervals
from tinysaver_det.core.cascade_model import stage_indices
from tinysaver_det.core.picker import TargetPick
from tinysaver_det.core.policy import ExitPolicy
from tinysaver_det.detection.cache import PredictionCache
from tinysaver_det.detection.coco import evaluate_images, load_ground_truth, summarize_selections
from tinysaver_det.detection.dataset import load_annotation_json
from tinysaver_det.detection.studies.depths import stage_confidences
from tinysaver_det.detection.types import Detections
from tinysaver_det.io import sha256_file
from tinysaver_det.operating_point import OperatingPointFile, confidence_entry


def routed(cache: PredictionCache, chain: Sequence[str], thresholds: Sequence[float], rule: ExitPolicy = ExitPolicy()):
    """At ``thresholds`` (one per stage of ``chain`` but the last) under the confidence ``rule``, on ``cache``'s
    images: the stage that answers each image, each image's cascade detections, and each image's GFLOPs (the
    stages it ran)."""
    conf, _ = stage_confidences(cache, list(chain), rule)
    stages = stage_indices(conf, thresholds)
    answers = [cache.detections(model) for model in chain]
    detections = [answers[k][i] for i, k in enumerate(stages)]
    gflops = sum(np.where(stages >= k, cache.cost(model, "GFLOPs"), 0.0) for k, model in enumerate(chain))
    return stages, detections, gflops


def resampled_ap(annotations: Mapping, image_ids, detections, indices: np.ndarray) -> float:
    """COCO AP of the images at ``indices`` (with repeats: each copy a separate image, ids 1..n).

    Args:
        annotations: the COCO annotation dict holding the images.
        image_ids: the dataset id of each position.
        detections: each position's detections.
        indices: positions drawn (with replacement).
    """
    infos = {int(info["id"]): info for info in annotations["images"]}
    by_image: dict[int, list] = {}
    for annotation in annotations["annotations"]:
        by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    images, copies, answers = [], [], []
    for new_id, position in enumerate(indices, start=1):
        image_id = int(image_ids[position])
        images.append({**infos[image_id], "id": new_id})
        for annotation in by_image.get(image_id, []):
            copies.append({**annotation, "id": len(copies) + 1, "image_id": new_id})
        d = detections[position]
        answers.append(Detections(new_id, d.boxes, d.scores, d.category_ids))
    ground_truth = load_ground_truth({"images": images, "annotations": copies, "categories": annotations["categories"]})
    return summarize_selections(evaluate_images(ground_truth, answers), np.ones((1, len(images)), bool))[0]["AP"]


def held_out_bootstrap(
    cache: PredictionCache, annotations: Mapping, chain: Sequence[str], thresholds: Sequence[float],
    rule: ExitPolicy = ExitPolicy(), replicates: int = 200, seed: int = 0, level: float = 0.95,
) -> dict:
    """Percentile intervals over ``cache``'s images for the cascade's AP and GFLOPs/img at ``thresholds``."""
    _, detections, gflops = routed(cache, chain, thresholds, rule)
    image_ids = cache.image_ids
    intervals = bootstrap_intervals(
        {"AP": lambda i: resampled_ap(annotations, image_ids, detections, i), "gflops_per_image": lambda i: gflops[i].mean()},
        len(image_ids), replicates, level, seed,
    )
    return {name: [interval.low, interval.high] for name, interval in intervals.items()} | {
        "level": level, "replicates": replicates, "seed": seed, "resampled": "images, with replacement"}


def _measured(row, cache: PredictionCache, annotations_sha256: str) -> dict:
    return {
        "AP": row.metrics["AP"], "gflops_per_image": row.costs["GFLOPs"], "ms_per_image": row.costs.get("ms"),
        "exit_ratio": row.stage_ratios[0],
        "stage_ratios": list(row.stage_ratios), "images": cache.n_images, "annotations_sha256": annotations_sha256,
    }


def operating_point_file(
    point: TargetPick,
    calibration: PredictionCache,
    held_out: PredictionCache,
    chain: Sequence[str],
    models: Sequence[dict],
    annotation_file: str | os.PathLike,
    rule: ExitPolicy = ExitPolicy(),
    split: str = "parity",
    replicates: int = 200,
    seed: int = 0,
) -> OperatingPointFile | None:
    """The :class:`OperatingPointFile` of a pick over ``chain`` (2 or K models); None when the pick is the
    last model alone.

    Args:
        point: the picker's result for one target.
        calibration, held_out: the two splits' caches.
        chain: the models' names in the caches, cheapest first.
        models: one entry per model of ``chain`` (:func:`tinysaver_det.operating_point.model_entry`).
        annotation_file: the annotations both splits come from (its sha256 is recorded).
        rule: the confidence rule the pick was made with (the threshold is the pick's).
    """
    if point.calibration is None or not point.calibration.thresholds:
        return None
    thresholds = [float(t) for t in point.calibration.thresholds]
    if not all(math.isfinite(t) for t in thresholds):  # a stage that never answers is not deployable as picked
        return None
    digest = sha256_file(annotation_file)
    annotations = load_annotation_json(annotation_file)
    held = _measured(point.held_out, held_out, digest)
    held["bootstrap"] = held_out_bootstrap(held_out, annotations, chain, thresholds, rule, replicates, seed)
    target = point.target
    return OperatingPointFile.multistage(
        models, thresholds, confidence_entry(rule.confidence), float(rule.min_score),
        target={"kind": target.kind, "value": target.value, "unit": target.unit, "label": target.label,
                "met_held_out": point.met_held_out, "reference_AP": {"calibration": point.reference_calibration,
                                                                     "held_out": point.reference_held_out}},
        calibration={**_measured(point.calibration, calibration, digest), "split": f"{split} calibration half"},
        held_out={**held, "split": f"{split} held-out half"},
        extra={"annotations": str(Path(annotation_file).resolve()), "chain": list(chain)},
    )
