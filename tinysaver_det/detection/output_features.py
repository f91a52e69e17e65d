"""Features of the saver's detections of one image (its *output*): what the learned routers read.

:func:`detection_features` describes the boxes scoring at least ``min_score`` (score statistics,
box count and sizes, class spread, overlap between classes). The logistic post-evaluator
(:mod:`tinysaver_det.detection.logistic_router`) reads only these; the feature post-evaluator
(:mod:`tinysaver_det.detection.feature_router`) reads them as its ``outputs`` block, beside the
features captured inside the saver (:mod:`tinysaver_det.detection.saver_features`).

numpy and the standard library only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinysaver_det.core.policy import (
    DEFAULT_MIN_SCORE,
    entropy_confidence,
    high_score_share,
    image_confidence,
    topk_mean_score,
)
from tinysaver_det.detection.boxes import pairwise_iou_xyxy


#: Names of :func:`detection_features`, in order. A router file stores them and is refused when they differ.
FEATURE_NAMES = (
    "log_n_kept",  # log(1 + number of boxes >= min_score)
    "log_n_25",  # log(1 + number of boxes >= 0.25)
    "log_n_50",  # log(1 + number of boxes >= 0.5)
    "mean_score",  # the paper's confidence
    "max_score",
    "top3_mean",
    "score_std",  # of the kept scores
    "high_share",  # share of kept boxes >= 0.5
    "entropy_conf",  # 1 - mean binary entropy of the kept scores
    "log_size",  # score-weighted mean of log(sqrt(box area)), boxes in pixels
    "small_share",  # score-weighted share of kept boxes with sqrt(area) < 32 px
    "log_n_classes",  # log(1 + number of distinct classes among boxes >= 0.25)
    "class_entropy",  # score-weighted entropy (nats) of the class distribution of the kept boxes
    "ambiguity",  # score-weighted mean, over kept boxes, of the highest IoU with a kept box of another class
    "empty",  # 1 when no box is kept
)

#: The ambiguity feature compares at most this many top-scoring kept boxes (bounds its O(n^2) cost).
AMBIGUITY_MAX_BOXES = 100


def detection_features(detections, min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """The :data:`FEATURE_NAMES` features of one image's detections, as a float64 ``(F,)`` array.

    Only the boxes scoring ``>= min_score`` are described (as for the paper's confidence); an image
    with none gets zeros and ``empty = 1``.

    >>> class Dets:
    ...     scores = np.array([0.9, 0.6, 0.01])
    ...     boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    ...     category_ids = np.array([1, 2, 1])
    >>> features = dict(zip(FEATURE_NAMES, detection_features(Dets()).round(4).tolist()))
    >>> features["mean_score"], features["high_share"], features["ambiguity"], features["empty"]
    (0.75, 1.0, 1.0, 0.0)
    """
    scores = np.asarray(detections.scores, dtype=np.float64).reshape(-1)
    keep = scores >= min_score
    features = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
    if not keep.any():
        features[-1] = 1.0
        return features
    order = np.argsort(-scores[keep], kind="stable")
    kept = scores[keep][order]
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)[keep][order]
    classes = np.asarray(detections.category_ids).reshape(-1)[keep][order]
    weights = kept / kept.sum()
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    _, class_index = np.unique(classes, return_inverse=True)
    class_share = np.bincount(class_index, weights=weights)
    class_share = class_share[class_share > 0]
    top = min(len(kept), AMBIGUITY_MAX_BOXES)
    iou = pairwise_iou_xyxy(boxes[:top], boxes[:top])
    iou[classes[:top, None] == classes[None, :top]] = 0.0  # only boxes of another class compete
    ambiguity = float((iou.max(axis=1) * kept[:top]).sum() / kept[:top].sum())
    features[:] = (
        np.log1p(len(kept)),
        np.log1p(np.count_nonzero(kept >= 0.25)),
        np.log1p(np.count_nonzero(kept >= 0.5)),
        image_confidence(kept, min_score),
        kept[0],
        topk_mean_score(kept, min_score, k=3),
        kept.std(),
        high_score_share(kept, min_score),
        entropy_confidence(kept, min_score),
        float(weights @ np.log(np.maximum(sides, 1.0))),
        float(weights @ (sides < 32)),
        np.log1p(len(np.unique(classes[kept >= 0.25]))),
        float(-(class_share * np.log(class_share)).sum()),
        ambiguity,
        0.0,
    )
    return features


def feature_flops(n_boxes: int, n_kept: int) -> float:
    """An upper estimate of the FLOPs of :func:`detection_features` plus one logistic prediction.

    Counted: the floor comparison (1 per box), sorting the kept scores (``n log2 n`` comparisons),
    about 40 arithmetic operations per kept box for the statistics, sizes and class shares, 14 per
    pair for the IoUs of the ambiguity feature (at most :data:`AMBIGUITY_MAX_BOXES` boxes), and
    ``2F + 30`` for standardising, the dot product and the sigmoid.

    >>> feature_flops(300, 0)  # 300 comparisons + 2 * 15 + 30
    360.0
    """
    n = float(n_kept)
    pairs = float(min(n_kept, AMBIGUITY_MAX_BOXES)) ** 2
    sort = n * np.log2(n) if n > 1 else 0.0
    return float(n_boxes + sort + 40 * n + 14 * pairs + 2 * len(FEATURE_NAMES) + 30)


def feature_matrix(detections: Sequence, min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """``(N, F)`` :func:`detection_features` of each image."""
    return np.stack([detection_features(d, min_score) for d in detections])
