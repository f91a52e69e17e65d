"""COCO ground truth read once into arrays (stage 1 of :mod:`tinysaver_det.detection.coco`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

@dataclass(frozen=True, eq=False)
class CocoGroundTruth:
    """The ground truth of a COCO annotation file, as flat arrays (build it with :func:`load_ground_truth`).

    Annotations whose image or category is not listed in ``images`` / ``categories`` are left out,
    as pycocotools does. The rest are stably sorted by (category, image), so each (image, category)
    group keeps the file's order, which decides IoU ties.

    Attributes:
        image_ids: [I] sorted image ids of ``images``: the evaluated images (pycocotools' imgIds).
        category_ids: [K] sorted category ids of ``categories``.
        image_index: [G] position of each annotation's image in ``image_ids``.
        category_index: [G] position of each annotation's category in ``category_ids``.
        boxes_xywh: [G×4] the annotation's ``bbox`` as stored, ``[x, y, w, h]``. It is kept in
            this form because pycocotools' IoU is computed from it (``x + w``, not a stored x2).
        areas: [G] the annotation's ``area`` field (the mask area for COCO, not w*h).
        iscrowd: [G] crowd flags; a missing ``iscrowd`` key counts as 0.
        ids: [G] annotation ids.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    image_index: np.ndarray
    category_index: np.ndarray
    boxes_xywh: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    ids: np.ndarray


def positions_in_sorted(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each value in ``sorted_ids`` and whether it is there at all."""
    if sorted_ids.size == 0:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    position = np.searchsorted(sorted_ids, values)
    found = sorted_ids[np.minimum(position, len(sorted_ids) - 1)] == values
    return position, found


def load_ground_truth(annotations: str | os.PathLike | Mapping) -> CocoGroundTruth:
    """Read a COCO instances file (a path, or the already parsed dict) into :class:`CocoGroundTruth`.

    The input is not modified.

    Args:
        annotations: path of the json file, or its content as a mapping with ``images``,
            ``categories`` and ``annotations``.

    Returns:
        The ground truth as flat arrays.

    Raises:
        ValueError: when two annotations share an id (pycocotools indexes annotations by id
            and would silently keep only one of them).

    >>> gt = load_ground_truth({"images": [{"id": 9}, {"id": 4}], "categories": [{"id": 1}],
    ...     "annotations": [{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0, 0, 2, 3],
    ...                      "area": 5.5, "iscrowd": 0}]})
    >>> gt.image_ids.tolist(), gt.image_index.tolist(), gt.areas.tolist()
    ([4, 9], [1], [5.5])
    """
    if isinstance(annotations, Mapping):
        data = annotations
    else:
        with open(annotations, encoding="utf-8") as handle:
            data = json.load(handle)
    image_ids = np.unique(np.array([image["id"] for image in data["images"]], dtype=np.int64))
    category_ids = np.unique(np.array([category["id"] for category in data["categories"]], dtype=np.int64))
    anns = data.get("annotations", [])
    ids = np.array([ann["id"] for ann in anns], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"annotation ids must be unique, got {len(ids) - len(np.unique(ids))} repeated ids")
    image_index, known_image = positions_in_sorted(image_ids, np.array([ann["image_id"] for ann in anns], dtype=np.int64))
    category_index, known_category = positions_in_sorted(
        category_ids, np.array([ann["category_id"] for ann in anns], dtype=np.int64)
    )
    keep = np.flatnonzero(known_image & known_category)
    keep = keep[np.lexsort((image_index[keep], category_index[keep]))]
    return CocoGroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        image_index=image_index[keep],
        category_index=category_index[keep],
        boxes_xywh=np.array([anns[i]["bbox"] for i in keep], dtype=np.float64).reshape(-1, 4),
        areas=np.array([anns[i]["area"] for i in keep], dtype=np.float64),
        iscrowd=np.array([bool(anns[i].get("iscrowd", 0)) for i in keep], dtype=bool),
        ids=ids[keep],
    )


