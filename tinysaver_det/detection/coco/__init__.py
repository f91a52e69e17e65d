"""Exact COCO bbox evaluation, cached per model, for fast cascade sweeps.

This subpackage is a numpy port of pycocotools' ``COCOeval`` (iouType ``"bbox"``, ``useCats=1``), cut at the
same place: the per-image matching (``evaluateImg``) runs once per model, and ``accumulate`` then
runs for any *selection* of images. A cascade answers each image with either the saver's or the
base's detections, and ``evaluateImg`` only sees one image's gts and dts. So the matching of both
models can be cached, and every threshold of a sweep only has to pick entries and count.

The three stages:

1. :func:`load_ground_truth` reads the annotation file once (:class:`CocoGroundTruth`, ``ground_truth.py``;
   the knobs in :class:`CocoParams`, ``params.py``).
2. :func:`evaluate_images` matches one model's detections (:class:`PerImageEval`, the cache; ``match.py``).
3. :func:`accumulate` + :func:`summarize` (one selection, the full ``precision`` array), or
   :func:`summarize_selections` (``accumulate.py``) and :class:`CocoCascadeMetric` (``metric.py``;
   many selections, the 12 stats).

Beside them: ``results_json.py`` reads standard COCO results files, and ``reference.py`` runs
pycocotools itself (the reference every value here is tested against).

Every value equals pycocotools' (the tests compare all 12 stats and the per-image matches on the
COCO val2017 subset). The details that decide equality: maxDets truncation per (image, category),
stable sorts everywhere (ties keep image order, then results-list order), IoU ties go to the later gt,
crowd IoU is intersection / area(dt), the gt area is the annotation's ``area`` field, area ranges
include both ends, a gt with id 0 never counts as a match, and dt ids, areas and boxes are those
``loadRes`` assigns.

Example (one image answered correctly, one missed):

>>> from tinysaver_det.detection.types import Detections
>>> box = {"bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0, "category_id": 1}
>>> gt = load_ground_truth({
...     "images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}],
...     "annotations": [{**box, "id": 1, "image_id": 1}, {**box, "id": 2, "image_id": 2}]})
>>> found = evaluate_images(gt, [Detections(1, [[0, 0, 10, 10]], [0.9], [1])])
>>> round(summarize(accumulate(found))["AP"], 4)  # recall 0.5 at precision 1: 51 of 101 points
0.505
"""

from tinysaver_det.detection.coco.accumulate import (
    STAT_KEYS,
    CocoAccumulation,
    accumulate,
    summarize,
    summarize_selections,
)
from tinysaver_det.detection.coco.ground_truth import CocoGroundTruth, load_ground_truth
from tinysaver_det.detection.coco.match import PerImageEval, evaluate_images
from tinysaver_det.detection.coco.metric import CocoCascadeMetric
from tinysaver_det.detection.coco.params import CocoParams

__all__ = [
    "STAT_KEYS",
    "CocoAccumulation",
    "CocoCascadeMetric",
    "CocoGroundTruth",
    "CocoParams",
    "PerImageEval",
    "accumulate",
    "evaluate_images",
    "load_ground_truth",
    "summarize",
    "summarize_selections",
]
