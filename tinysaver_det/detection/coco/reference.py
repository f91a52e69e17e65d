"""COCO bbox metrics through pycocotools, the reference every number here is pinned to."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinysaver_det.detection.coco.accumulate import STAT_KEYS  # pycocotools' 12 stats, in its order


def load_coco(annotation_file: str | Path) -> COCO:
    """pycocotools' COCO ground truth, without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file))


def _results_coco(ground_truth: COCO, results: list[dict]) -> COCO:
    """``loadRes`` for a non-empty result list; an empty one (which ``loadRes`` rejects) is an
    empty result set over the same images and categories, so AP is 0 wherever there is gt."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return ground_truth.loadRes(results)
    empty = COCO()
    empty.dataset = {
        "images": ground_truth.dataset["images"],
        "categories": ground_truth.dataset["categories"],
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def coco_bbox_metrics(ground_truth: COCO, results: list[dict], image_ids: Sequence[int] | None = None) -> dict:
    """pycocotools bbox evaluation of COCO-format ``results``.

    Args:
        ground_truth: from :func:`load_coco`.
        results: COCO results entries (``image_id``, ``category_id``, ``bbox`` xywh, ``score``).
        image_ids: evaluate on these images only (default: every image of the ground truth).
            Images among them with no result count as images with no detection.

    Returns:
        ``{key: value}`` for :data:`STAT_KEYS`; -1 where COCO has no value (no gt in that range).
    """
    evaluator = COCOeval(ground_truth, _results_coco(ground_truth, results), "bbox")
    if image_ids is not None:
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(STAT_KEYS, (float(v) for v in evaluator.stats)))
