"""The saver's own features of an image: pooled neck maps and the statistics of its candidate boxes.

The paper's open problem (Sec. 3.2, 4.5) is that box scores are weakly tied to box quality. A
post-evaluator that shares the saver's forward pass can read more than the scores:

* **pooled neck maps**: the global average and the global max of every channel of each FPN level
  that enters the detection head (what the head saw: contrast, clutter, object scale);
* **candidate statistics** (MetaDetect, Schubert et al. 2020): before NMS, each kept box has
  absorbed a cloud of candidate boxes of its class; how many, how far they spread and how much the
  class scores of the kept box's own anchor hesitate between classes are among the best signs of
  whether the box is right.

This module turns the arrays of one image into the :data:`RECIPE` vector (numpy only); the
Ultralytics adapter (:mod:`tinysaver_det.adapters.ultralytics_features`) takes the arrays from
the forward pass that makes the detections. Every operation is counted (:func:`candidate_flops`,
:func:`pooling_flops`) so the evaluator's cost enters the cascade's cost (paper Eq. 5).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinysaver_det.detection.boxes import pairwise_iou_xyxy

#: Name/version of the feature vector: candidate statistics, then pooled neck maps (avg, max per level).
RECIPE = "yolov8-candidates+neck-pool/1"

#: The candidate statistics, in order (the pooled maps follow, their count set by the saver's channels).
CANDIDATE_NAMES = (
    "log_n_anchor_05",  # log(1 + anchors whose best class score >= 0.05)
    "log_n_anchor_25",  # ... >= 0.25
    "log_n_anchor_50",  # ... >= 0.5
    "anchor_top10_mean",  # mean of the 10 highest anchor scores
    "log_absorbed",  # score-weighted mean over kept boxes of log(1 + candidates each absorbed)
    "absorbed_score_ratio",  # weighted mean of (mean absorbed candidate score / kept score)
    "spread",  # weighted mean of the candidates' corner std, relative to the kept box's size
    "absorbed_iou",  # weighted mean IoU of the absorbed candidates with their kept box
    "class_margin",  # weighted mean of (best - second class score) at the kept box's anchor
    "second_score",  # weighted mean of the second class score at the kept box's anchor
    "min_margin",  # smallest class margin among kept boxes
    "low_margin_share",  # weighted share of kept boxes with margin < 0.2
    "rival_share",  # weighted share of kept boxes overlapped (IoU >= 0.5) by a candidate of another class >= 0.05
    "level_p3",  # weighted share of kept boxes from the stride-8 level
    "level_p4",  # ... stride-16
    "level_p5",  # ... stride-32
    "n_kept_boxes",  # log(1 + kept boxes >= min_score) (after NMS)
)

#: At most this many kept boxes (highest scores) are described; bounds the O(K * A) cost.
MAX_DESCRIBED = 100


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre/size boxes (YOLO's raw output) to corners."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    half = boxes[:, 2:] / 2
    return np.hstack([boxes[:, :2] - half, boxes[:, :2] + half])


def candidate_features(
    candidate_boxes: np.ndarray,
    class_scores: np.ndarray,
    kept_index: np.ndarray,
    kept_scores: np.ndarray,
    level_sizes: Sequence[int],
    conf: float,
    iou: float,
    min_score: float,
) -> tuple[np.ndarray, int]:
    """The :data:`CANDIDATE_NAMES` statistics of one image, and the number of candidate/box pairs compared.

    Args:
        candidate_boxes: (A, 4) xyxy of every anchor's box (network input pixels, before NMS).
        class_scores: (A, C) class scores of every anchor.
        kept_index: (K,) the anchor of each box NMS kept, highest score first.
        kept_scores: (K,) their scores.
        level_sizes: anchors per FPN level, in anchor order (P3, P4, P5).
        conf, iou: the NMS settings that ran (candidates are anchors scoring > ``conf``; a kept box
            absorbed the candidates of its class overlapping it by ``>= iou``).
        min_score: kept boxes below it are not described (as for the paper's confidence).

    >>> boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=float)
    >>> scores = np.array([[0.9, 0.1], [0.6, 0.05], [0.02, 0.3]])
    >>> values, pairs = candidate_features(boxes, scores, np.array([0, 2]), np.array([0.9, 0.3]), [3], 0.001, 0.7, 0.05)
    >>> named = dict(zip(CANDIDATE_NAMES, values.round(3).tolist()))
    >>> named["log_n_anchor_25"], named["class_margin"], named["level_p3"], pairs
    (1.386, 0.67, 1.0, 12)
    """
    features = np.zeros(len(CANDIDATE_NAMES), dtype=np.float64)
    best = class_scores.max(axis=1) if class_scores.size else np.zeros(0)
    features[0] = np.log1p(np.count_nonzero(best >= 0.05))
    features[1] = np.log1p(np.count_nonzero(best >= 0.25))
    features[2] = np.log1p(np.count_nonzero(best >= 0.5))
    features[3] = float(np.sort(best)[-10:].mean()) if best.size else 0.0
    keep = np.asarray(kept_scores, dtype=np.float64) >= min_score
    kept_index = np.asarray(kept_index, dtype=np.int64)[keep][:MAX_DESCRIBED]
    kept_scores = np.asarray(kept_scores, dtype=np.float64)[keep][:MAX_DESCRIBED]
    features[-1] = np.log1p(len(kept_index))
    if not len(kept_index):
        return features, 0
    label = class_scores.argmax(axis=1)
    is_candidate = best > conf
    candidates = np.flatnonzero(is_candidate)
    rivals = np.flatnonzero(best >= 0.05)
    level_edges = np.cumsum(level_sizes)
    rows = np.zeros((len(kept_index), 10))
    for k, anchor in enumerate(kept_index):
        box, cls = candidate_boxes[anchor], label[anchor]
        own = candidates[label[candidates] == cls]
        overlap = pairwise_iou_xyxy(box[None], candidate_boxes[own])[0]
        absorbed = own[overlap >= iou]
        size = np.maximum(np.repeat(box[2:] - box[:2], 2)[[0, 2, 1, 3]], 1.0)  # w, h, w, h for x1, y1, x2, y2
        spread = (candidate_boxes[absorbed].std(axis=0) / size).mean() if len(absorbed) > 1 else 0.0
        ranked = np.sort(class_scores[anchor])[::-1]
        margin = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)
        other = rivals[label[rivals] != cls]
        rival = bool(len(other)) and bool((pairwise_iou_xyxy(box[None], candidate_boxes[other])[0] >= 0.5).any())
        level = int(np.searchsorted(level_edges, anchor, side="right"))
        rows[k] = (
            np.log1p(len(absorbed)),
            best[absorbed].mean() / max(best[anchor], 1e-9) if len(absorbed) else 0.0,
            spread,
            overlap[overlap >= iou].mean() if len(absorbed) else 0.0,
            margin,
            ranked[1] if len(ranked) > 1 else 0.0,
            rival,
            level == 0,
            level == 1,
            level >= 2,
        )
    weights = kept_scores / kept_scores.sum()
    mean = weights @ rows
    margins = rows[:, 4]
    features[4:10] = mean[:6]
    features[10] = margins.min()
    features[11] = float(weights @ (margins < 0.2))
    features[12:16] = mean[6:10]
    pairs = int(len(kept_index) * (len(candidates) + len(rivals)))
    return features, pairs


def candidate_flops(n_anchors: int, n_classes: int, n_kept: int, pairs: int) -> float:
    """FLOPs of :func:`candidate_features` (an upper count): per anchor its best class (C comparisons)
    and 3 thresholds, sorting the anchor scores for the top 10 (``A log2 A``), 14 per IoU pair, and
    per described box ``C log2 C`` for its class ranking plus about 90 for its statistics and means.

    >>> candidate_flops(4, 8, 0, 0)  # 4 * (8 + 3) + 4 * 2
    52.0
    """
    a, c = float(n_anchors), float(n_classes)
    sort = a * np.log2(a) if a > 1 else 0.0
    per_box = (c * np.log2(c) if c > 1 else 0.0) + 90.0
    return float(a * (c + 3) + sort + 14 * pairs + n_kept * per_box)


def pooling_flops(shapes: Sequence[tuple[int, int, int]]) -> float:
    """FLOPs of global average + max pooling of maps of shapes (C, H, W): one add and one compare per value."""
    return float(sum(2 * c * h * w + c for c, h, w in shapes))


def pooled_names(channels: Sequence[int]) -> tuple[str, ...]:
    """Names of the pooled values for FPN levels with ``channels`` (P3 first): avg then max per level.

    >>> pooled_names([2, 1])
    ('p3_avg_0', 'p3_avg_1', 'p3_max_0', 'p3_max_1', 'p4_avg_0', 'p4_max_0')
    """
    names = []
    for level, c in enumerate(channels):
        names += [f"p{level + 3}_avg_{i}" for i in range(c)] + [f"p{level + 3}_max_{i}" for i in range(c)]
    return tuple(names)
