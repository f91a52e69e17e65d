"""Detectors simulated from ground truth: reproducible predictions without running a model.

The exactness tests and the sweep benchmark need two detectors' outputs on real COCO images, with
every case that COCO evaluation handles in a special way. A real model is not available on every
machine, and it would not produce all of these cases anyway. A simulated detector starts from the
annotations and perturbs them (:class:`DetectorProfile` says how). That gives jittered, missed,
duplicated and mislabelled objects, false positives (also on images without objects), hits on
crowd regions, one (image, category) with more than 100 boxes, a category the ground truth does
not list, and score ties. Only the scores say something about quality: they are drawn from
ranges, with no link to how good each box is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from tinysaver_det.detection.types import Detections

__all__ = ["BASE_PROFILE", "SAVER_PROFILE", "DetectorProfile", "simulate_detections"]


@dataclass(frozen=True)
class DetectorProfile:
    """How a simulated detector deviates from the ground truth.

    Attributes:
        recall: probability that a non-crowd object is reported at all.
        jitter: box noise: centre shift and log-size change, with this standard deviation
            relative to the object's width and height.
        true_scores: (low, high), uniform range of the scores of reported objects.
        wrong_category: probability that a reported object carries another listed category.
        duplicates: probability that a reported object is reported twice, with the same box and
            score (a tie inside the image: the results-list order decides).
        false_positives: mean number (Poisson) of random boxes per image, random listed category.
        false_scores: (low, high), uniform range of their scores.
        unknown_category_rate: share of the false positives that carry ``unknown_category``.
        unknown_category: a category id that the ground truth does not list (evaluation drops it).
        crowd_hits: boxes reported inside each crowd region, with its category.
        flood: extra boxes, jittered copies of its objects, for the (image, category) with the
            most objects, so that it goes past COCO's 100 detections.
        score_decimals: scores are rounded to this many decimals, so ties occur within and across images.
    """

    recall: float
    jitter: float
    true_scores: tuple[float, float]
    wrong_category: float
    duplicates: float
    false_positives: float
    false_scores: tuple[float, float]
    unknown_category_rate: float = 0.05
    unknown_category: int = 12
    crowd_hits: int = 2
    flood: int = 0
    score_decimals: int = 2


# A weak, cheap detector: misses a third of the objects, loose boxes, lower and noisier scores.
SAVER_PROFILE = DetectorProfile(
    recall=0.65, jitter=0.12, true_scores=(0.15, 0.85), wrong_category=0.08, duplicates=0.05,
    false_positives=3.0, false_scores=(0.0, 0.6), flood=120,
)
# A strong detector: finds most objects with tight boxes and confident scores.
BASE_PROFILE = DetectorProfile(
    recall=0.9, jitter=0.04, true_scores=(0.4, 1.0), wrong_category=0.02, duplicates=0.03,
    false_positives=1.0, false_scores=(0.0, 0.5), flood=150,
)


def simulate_detections(annotations: Mapping, profile: DetectorProfile, seed: int) -> dict[int, Detections]:
    """Detections for every listed image, derived from its annotations as ``profile`` says.

    Args:
        annotations: a COCO instances dict (``images``, ``categories``, ``annotations``); not modified.
        profile: how the detector deviates from the ground truth.
        seed: seed of the random generator; the same seed gives the same detections.

    Returns:
        ``{image_id: Detections}`` in the order of ``images``, each image's boxes in random order.

    >>> data = {"images": [{"id": 1, "width": 640, "height": 480}], "categories": [{"id": 1}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 40],
    ...                          "area": 2000, "iscrowd": 0}]}
    >>> detections = simulate_detections(data, SAVER_PROFILE, seed=0)
    >>> list(detections), len(detections[1]) > 0
    ([1], True)
    """
    rng = np.random.default_rng(seed)
    category_ids = np.array(sorted(category["id"] for category in annotations["categories"]))
    by_image = defaultdict(list)
    for ann in annotations["annotations"]:
        by_image[ann["image_id"]].append(ann)
    by_group = defaultdict(list)
    for ann in annotations["annotations"]:
        if not ann.get("iscrowd", 0):
            by_group[ann["image_id"], ann["category_id"]].append(ann)
    flooded = max(by_group, key=lambda group: len(by_group[group]), default=None)

    detections = {}
    for image in annotations["images"]:
        boxes, scores, categories = [], [], []

        def report(xywh, category, score_range):
            boxes.append(xywh)
            categories.append(category)
            scores.append(rng.uniform(*score_range))

        def jittered(bbox):
            x, y, w, h = bbox
            new_w, new_h = w * np.exp(rng.normal(0, profile.jitter)), h * np.exp(rng.normal(0, profile.jitter))
            cx, cy = x + w / 2 + rng.normal(0, profile.jitter) * w, y + h / 2 + rng.normal(0, profile.jitter) * h
            return [cx - new_w / 2, cy - new_h / 2, max(new_w, 1.0), max(new_h, 1.0)]

        for ann in by_image[image["id"]]:
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0):
                for _ in range(profile.crowd_hits):
                    part_w, part_h = w * rng.uniform(0.1, 0.5), h * rng.uniform(0.1, 0.5)
                    corner = [x + rng.uniform(0, w - part_w), y + rng.uniform(0, h - part_h)]
                    report(corner + [part_w, part_h], ann["category_id"], profile.true_scores)
                continue
            if rng.random() >= profile.recall:
                continue
            category = ann["category_id"]
            if rng.random() < profile.wrong_category:
                category = int(rng.choice(category_ids))
            report(jittered(ann["bbox"]), category, profile.true_scores)
            if rng.random() < profile.duplicates:
                report(list(boxes[-1]), category, (scores[-1], scores[-1]))
        for _ in range(rng.poisson(profile.false_positives)):
            w, h = image["width"] * rng.uniform(0.02, 0.5), image["height"] * rng.uniform(0.02, 0.5)
            corner = [rng.uniform(0, image["width"] - w), rng.uniform(0, image["height"] - h)]
            unknown = rng.random() < profile.unknown_category_rate
            category = profile.unknown_category if unknown else int(rng.choice(category_ids))
            report(corner + [w, h], category, profile.false_scores)
        if flooded is not None and flooded[0] == image["id"]:
            objects = by_group[flooded]
            for _ in range(profile.flood):
                report(jittered(objects[rng.integers(len(objects))]["bbox"]), flooded[1], (0.0, 1.0))

        order = rng.permutation(len(boxes))
        xywh = np.array(boxes, dtype=np.float64).reshape(-1, 4)[order]
        detections[image["id"]] = Detections(
            image["id"],
            np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]),
            np.round(np.array(scores, dtype=np.float64)[order], profile.score_decimals),
            np.array(categories, dtype=np.int64)[order],
        )
    return detections
