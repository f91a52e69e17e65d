"""Box geometry shared by the detection features (corner boxes, ``xyxy``).

The COCO evaluation keeps its own IoU (:mod:`tinysaver_det.detection.coco.match`): it works on
``xywh`` boxes with pycocotools' exact arithmetic and its crowd rule, which these features do not use.
"""

from __future__ import annotations

import numpy as np


def pairwise_iou_xyxy(boxes_a, boxes_b) -> np.ndarray:
    """``(len(a), len(b))`` IoU of every pair of ``xyxy`` boxes; 0 where the union is empty.

    A box with negative width or height has area 0.

    >>> pairwise_iou_xyxy([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(4).tolist()
    [[0.3333, 0.0]]
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    width = np.clip(np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = width * height
    union = area_a[:, None] + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
