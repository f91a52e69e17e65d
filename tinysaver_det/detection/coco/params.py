"""The knobs of a COCO bbox evaluation, as pycocotools' ``Params.setDetParams`` sets them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _coco_linspace(start: float, stop: float, step: float) -> tuple[float, ...]:
    # The exact expression of pycocotools' Params: np.arange would drift past the end points.
    count = int(np.round((stop - start) / step)) + 1
    return tuple(np.linspace(start, stop, count, endpoint=True).tolist())


@dataclass(frozen=True)
class CocoParams:
    """The knobs of the evaluation, with pycocotools' ``Params.setDetParams`` defaults.

    Attributes:
        iou_thresholds: T IoU thresholds, ``linspace(.5, .95, 10)``.
        recall_thresholds: R recall points of the interpolated precision, ``linspace(0, 1, 101)``.
        max_dets: M >= 3 detection caps per (image, category), sorted (pycocotools sorts them too);
            the last one truncates each (image, category) list during matching. The stats read them
            as pycocotools' summarize does: AP at the literal 100, AR1/AR10/AR100 at positions 0/1/2,
            every other stat at position 2.
        area_ranges: A ``(low, high)`` object-area ranges; both ends are inclusive.
        area_labels: A names of the area ranges (``summarize`` looks stats up by these names).

    >>> CocoParams().max_dets
    (1, 10, 100)
    >>> CocoParams().iou_thresholds[5]
    0.75
    """

    iou_thresholds: tuple[float, ...] = _coco_linspace(0.5, 0.95, 0.05)
    recall_thresholds: tuple[float, ...] = _coco_linspace(0.0, 1.0, 0.01)
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = (
        (0.0, 1e5**2),
        (0.0, 32.0**2),
        (32.0**2, 96.0**2),
        (96.0**2, 1e5**2),
    )
    area_labels: tuple[str, ...] = ("all", "small", "medium", "large")

    def __post_init__(self) -> None:
        values = {
            "iou_thresholds": tuple(float(t) for t in self.iou_thresholds),
            "recall_thresholds": tuple(float(r) for r in self.recall_thresholds),
            "max_dets": tuple(sorted(int(m) for m in self.max_dets)),
            "area_ranges": tuple((float(low), float(high)) for low, high in self.area_ranges),
            "area_labels": tuple(str(label) for label in self.area_labels),
        }
        empty = [name for name, value in values.items() if not value]
        if empty:
            raise ValueError(f"CocoParams: {', '.join(empty)} must not be empty")
        if len(values["area_ranges"]) != len(values["area_labels"]):
            raise ValueError(
                f"CocoParams: area_ranges ({len(values['area_ranges'])}) and area_labels "
                f"({len(values['area_labels'])}) must have the same length"
            )
        for name in ("max_dets", "area_labels"):
            if len(set(values[name])) != len(values[name]):
                raise ValueError(f"CocoParams: {name} must not repeat a value, got {values[name]}")
        if values["max_dets"][0] < 1:
            raise ValueError(f"CocoParams: max_dets must be >= 1, got {values['max_dets']}")
        if len(values["max_dets"]) < 3:
            raise ValueError(
                f"CocoParams: max_dets needs at least 3 values, got {values['max_dets']}: the stats read "
                "positions 0, 1 and 2, as pycocotools' summarize does"
            )
        for name, value in values.items():
            object.__setattr__(self, name, value)


