"""Exact COCO bbox evaluation, cached per model, for fast cascade sweeps.

This is a numpy port of pycocotools' ``COCOeval`` (iouType ``"bbox"``, ``useCats=1``), cut at the
same place: the per-image matching (``evaluateImg``) runs once per model, and ``accumulate`` then
runs for any *selection* of images. A cascade answers each image with either the saver's or the
base's detections, and ``evaluateImg`` only sees one image's gts and dts. So the matching of both
models can be cached, and every threshold of a sweep only has to pick entries and count.

The three stages:

1. :func:`load_ground_truth` reads the annotation file once (:class:`CocoGroundTruth`).
2. :func:`evaluate_images` matches one model's detections (:class:`PerImageEval`, the cache).
3. :func:`accumulate` + :func:`summarize` (one selection, the full ``precision`` array), or
   :func:`summarize_selections` and :class:`CocoCascadeMetric` (many selections, the 12 stats).

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

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from tinysaver_det.detection.results import ResultColumns
from tinysaver_det.detection.types import Detections

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


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    image_index, known_image = _lookup(image_ids, np.array([ann["image_id"] for ann in anns], dtype=np.int64))
    category_index, known_category = _lookup(
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


@dataclass(frozen=True, eq=False)
class PerImageEval:
    """One model's per-image matching (pycocotools' ``evalImgs``), flattened: the cache of a sweep.

    pycocotools keeps a list of K×A×I dicts; here each detection is one column, so any selection
    of images is a boolean mask. Only detections that pycocotools evaluates are kept: known image
    and category, and rank < ``max_dets[-1]`` within their (image, category). They are sorted by
    (category, image, rank), the order of ``evalImgs``. ``gtMatches`` is not stored:
    ``accumulate`` never reads it.

    Attributes:
        ground_truth: the :class:`CocoGroundTruth` it was matched against (G gts, I images, K categories).
        params: the :class:`CocoParams` (T IoU thresholds, A area ranges).
        gt_ignore: [A×G] ``gtIgnore`` per area range: iscrowd, or area outside the range.
        dt_image: [D] position of the detection's image in ``ground_truth.image_ids``.
        dt_category: [D] position of its category in ``ground_truth.category_ids``.
        dt_rank: [D] position in its (image, category) list after the stable sort by score,
            which breaks ties by results-list order (``dtScores[:maxDet]`` keeps ``rank < maxDet``).
        dt_id: [D] the id ``loadRes`` assigns: 1 + position in the results list.
        dt_score: [D] ``dtScores``.
        dt_matches: [A×T×D] ``dtMatches``: the id of the matched gt, 0 when unmatched.
        dt_ignore: [A×T×D] ``dtIgnore``: matched an ignored gt, or unmatched and outside the area range.
    """

    ground_truth: CocoGroundTruth
    params: CocoParams
    gt_ignore: np.ndarray
    dt_image: np.ndarray
    dt_category: np.ndarray
    dt_rank: np.ndarray
    dt_id: np.ndarray
    dt_score: np.ndarray
    dt_matches: np.ndarray
    dt_ignore: np.ndarray


def _results_list(detections: Mapping[int, Detections] | Iterable[Detections]) -> list[Detections]:
    """The detections in results-list order; a mapping must be keyed by each value's image id."""
    results = list(detections.values() if isinstance(detections, Mapping) else detections)
    not_detections = [type(value).__name__ for value in results if not isinstance(value, Detections)]
    if not_detections:
        raise TypeError(f"detections: expected Detections objects, got {sorted(set(not_detections))}")
    if isinstance(detections, Mapping):
        wrong = [key for key, value in detections.items() if key != value.image_id]
        if wrong:
            raise ValueError(f"detections: keys must equal each value's image_id; these do not: {wrong[:5]}")
    return results


def _out_of_range(areas: np.ndarray, params: CocoParams) -> np.ndarray:
    """[A×N] area outside each range; both ends of a range are inclusive."""
    ranges = np.asarray(params.area_ranges)
    return (areas < ranges[:, :1]) | (areas > ranges[:, 1:])


def _pairwise_iou(dt_xywh: np.ndarray, gt_xywh: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of each (dt, gt) row pair, with the arithmetic of pycocotools' C ``bbIou``.

    A crowd gt's IoU is intersection / area(dt). No overlap (width or height <= 0) is 0.
    """
    dx, dy, dw, dh = dt_xywh.T
    gx, gy, gw, gh = gt_xywh.T
    width = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    height = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (width > 0) & (height > 0)
    intersection = width * height
    dt_area = dw * dh
    union = np.where(gt_crowd, dt_area, dt_area + gw * gh - intersection)
    return np.where(overlap, intersection / np.where(overlap, union, 1.0), 0.0)


def _greedy_match(
    ground_truth: CocoGroundTruth,
    gt_ignore: np.ndarray,
    dt_group: np.ndarray,
    dt_rank: np.ndarray,
    dt_xywh: np.ndarray,
    params: CocoParams,
) -> np.ndarray:
    """``evaluateImg``'s greedy matching for every (image, category) group at once: [A×T×D] gt index, -1 if none.

    pycocotools walks each group's dts in score order and gives each the best still-free gt. Groups do
    not share gts, so step ``d`` handles the dt of rank ``d`` of every group together. For one dt, its
    scan over the ignore-last sorted gts comes down to: the non-ignored gts with IoU >= t come first;
    only when there is none, the ignored ones. Within the chosen kind the highest IoU wins, and on a
    tie the later gt wins. So each candidate pair gets a priority (non-ignored, IoU, gt position),
    and the dt takes its highest-priority free candidate. Only pairs with IoU >= the lowest
    threshold can match, and they are few.
    """
    n_areas, n_dts = len(params.area_ranges), len(dt_group)
    thresholds = np.minimum(np.asarray(params.iou_thresholds), 1 - 1e-10)
    n_images = len(ground_truth.image_ids)
    gt_group = ground_truth.category_index * n_images + ground_truth.image_index
    first = np.searchsorted(gt_group, dt_group, side="left")
    count = np.searchsorted(gt_group, dt_group, side="right") - first
    # Every (dt, gt) pair of a group: dt i meets gts first[i] .. first[i] + count[i] - 1.
    pair_dt = np.repeat(np.arange(n_dts), count)
    pair_gt = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
    iou = _pairwise_iou(dt_xywh[pair_dt], ground_truth.boxes_xywh[pair_gt], ground_truth.iscrowd[pair_gt])
    candidate = iou >= thresholds.min()
    pair_dt, pair_gt, iou = pair_dt[candidate], pair_gt[candidate], iou[candidate]

    priority = np.empty((len(iou), n_areas), dtype=np.int64)
    for area in range(n_areas):
        order = np.lexsort((pair_gt, iou, ~gt_ignore[area, pair_gt], pair_dt))
        priority[order, area] = np.arange(len(order))
    by_rank = np.argsort(dt_rank[pair_dt], kind="stable")
    pair_dt, pair_gt, iou, priority = pair_dt[by_rank], pair_gt[by_rank], iou[by_rank], priority[by_rank]
    steps = np.searchsorted(dt_rank[pair_dt], np.arange(params.max_dets[-1] + 1))

    free = np.ones((len(ground_truth.ids), n_areas, len(thresholds)), dtype=bool)
    matched_gt = np.full((n_areas, len(thresholds), n_dts), -1, dtype=np.int64)
    for start, stop in zip(steps[:-1], steps[1:]):
        if start == stop:
            continue
        dts, gts = pair_dt[start:stop], pair_gt[start:stop]
        valid = free[gts] & (iou[start:stop, None, None] >= thresholds)
        key = np.where(valid, priority[start:stop, :, None], -1)
        new_dt = np.r_[True, dts[1:] != dts[:-1]]
        best = np.maximum.reduceat(key, np.flatnonzero(new_dt), axis=0)
        pair, area, threshold = np.nonzero((key == best[np.cumsum(new_dt) - 1]) & (key >= 0))
        winner = gts[pair]
        matched_gt[area, threshold, dts[pair]] = winner
        free[winner, area, threshold] = ground_truth.iscrowd[winner]  # a crowd gt takes any number of dts
    return matched_gt


def evaluate_images(
    ground_truth: CocoGroundTruth,
    detections: Mapping[int, Detections] | Iterable[Detections] | ResultColumns,
    params: CocoParams | None = None,
) -> PerImageEval:
    """Match one model's detections to the ground truth, once: pycocotools' ``evaluate()``.

    The detections are read as the results list that ``Detections.to_coco`` gives, concatenated
    in iteration order. The position in that list is the dt id ``loadRes`` assigns, and it breaks
    score ties inside an image. Detections of a category missing from the ground truth are
    dropped, as pycocotools does. Detections of an image missing from it are dropped too: that is
    what ``evaluate`` does over the gt's images (``loadRes`` itself refuses such a results list).
    An empty input is fine (pycocotools' ``loadRes([])`` raises).

    Args:
        ground_truth: from :func:`load_ground_truth`.
        detections: :class:`Detections` per image, as a mapping keyed by image id or any iterable
            (an image may appear more than once: its lists are concatenated), or a results list as
            :class:`~tinysaver_det.detection.results.ResultColumns`, whose ``[x, y, w, h]`` boxes are
            used as written, as ``loadRes`` does (corners would move ``w`` by a float step).
        params: evaluation settings; ``None`` means the COCO defaults (:class:`CocoParams`).

    Returns:
        The cache :class:`PerImageEval`; the inputs are not modified.

    >>> gt = load_ground_truth({"images": [{"id": 1}], "categories": [{"id": 3}], "annotations": [
    ...     {"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100}]})
    >>> found = evaluate_images(gt, {1: Detections(1, [[0, 0, 10, 9], [50, 50, 60, 60]], [0.2, 0.8], [3, 3])})
    >>> found.dt_id.tolist(), found.dt_matches[0, :, :].max(axis=0).tolist()  # area "all", any IoU threshold
    ([2, 1], [0, 5])
    """
    params = CocoParams() if params is None else params
    columns = detections if isinstance(detections, ResultColumns) else ResultColumns.from_detections(
        _results_list(detections)
    )
    # loadRes: bbox [x, y, w, h] as listed, area w * h, id = position + 1.
    scores, categories, images, xywh = columns.scores, columns.category_ids, columns.image_ids, columns.boxes_xywh
    ids = np.arange(1, len(scores) + 1)

    image_index, known_image = _lookup(ground_truth.image_ids, images)
    category_index, known_category = _lookup(ground_truth.category_ids, categories)
    keep = np.flatnonzero(known_image & known_category)
    group = category_index[keep] * len(ground_truth.image_ids) + image_index[keep]
    keep = keep[np.lexsort((-scores[keep], group))]  # stable: equal scores keep the list order
    group = np.sort(group, kind="stable")
    rank = np.arange(len(keep)) - np.searchsorted(group, group, side="left")
    within = rank < params.max_dets[-1]
    keep, group, rank = keep[within], group[within], rank[within]

    gt_ignore = ground_truth.iscrowd | _out_of_range(ground_truth.areas, params)
    matched_gt = _greedy_match(ground_truth, gt_ignore, group, rank, xywh[keep], params)
    matched = matched_gt >= 0
    column = np.where(matched, matched_gt, len(ground_truth.ids))  # one past the end: "no gt"
    dt_matches = np.append(ground_truth.ids, 0)[column]
    padded_ignore = np.concatenate([gt_ignore, np.zeros((len(gt_ignore), 1), dtype=bool)], axis=1)
    ignored_gt = padded_ignore[np.arange(len(gt_ignore))[:, None, None], column]
    out_of_range = _out_of_range(xywh[keep, 2] * xywh[keep, 3], params)
    dt_ignore = (matched & ignored_gt) | ((dt_matches == 0) & out_of_range[:, None, :])
    return PerImageEval(
        ground_truth=ground_truth,
        params=params,
        gt_ignore=gt_ignore,
        dt_image=image_index[keep],
        dt_category=category_index[keep],
        dt_rank=rank,
        dt_id=ids[keep],
        dt_score=scores[keep],
        dt_matches=dt_matches,
        dt_ignore=dt_ignore,
    )


@dataclass(frozen=True, eq=False)
class CocoAccumulation:
    """pycocotools' ``eval`` for one selection of images.

    Attributes:
        params: the :class:`CocoParams` the arrays are laid out by.
        precision: [T×R×K×A×M] interpolated precision; -1 where (category, area) has no non-ignored gt.
        recall: [T×K×A×M] final recall; -1 where (category, area) has no non-ignored gt.
    """

    params: CocoParams
    precision: np.ndarray
    recall: np.ndarray


# The 12 COCO bbox stats: key, array, IoU threshold (None: mean over all), area label, maxDets.
# maxDets as pycocotools' summarize reads them: AP with the literal 100 (looked up by value, -1 when
# max_dets has no 100), every other stat by position in the sorted max_dets (an int) -- AR1, AR10 and
# AR100 are the recall at max_dets[0], [1] and [2], whatever those are. IoU thresholds and area labels
# are looked up by value, so a missing one gives -1 instead of a wrong column.
_STATS = (
    ("AP", "precision", None, "all", ("value", 100)),
    ("AP50", "precision", 0.5, "all", ("position", 2)),
    ("AP75", "precision", 0.75, "all", ("position", 2)),
    ("APs", "precision", None, "small", ("position", 2)),
    ("APm", "precision", None, "medium", ("position", 2)),
    ("APl", "precision", None, "large", ("position", 2)),
    ("AR1", "recall", None, "all", ("position", 0)),
    ("AR10", "recall", None, "all", ("position", 1)),
    ("AR100", "recall", None, "all", ("position", 2)),
    ("ARs", "recall", None, "small", ("position", 2)),
    ("ARm", "recall", None, "medium", ("position", 2)),
    ("ARl", "recall", None, "large", ("position", 2)),
)
STAT_KEYS = tuple(stat[0] for stat in _STATS)


def _resolve_stats(params: CocoParams) -> list[tuple[str, str, np.ndarray, int | None, int | None]]:
    """Each stat's (key, array, IoU indices, area index, maxDets index); ``None`` where params lack it."""
    resolved = []
    for key, kind, iou, area, max_det in _STATS:
        ious = np.arange(len(params.iou_thresholds))
        if iou is not None:
            ious = np.flatnonzero(iou == np.asarray(params.iou_thresholds))  # float ==, as pycocotools
        area_index = params.area_labels.index(area) if area in params.area_labels else None
        how, number = max_det
        if how == "value":
            max_det_index = params.max_dets.index(number) if number in params.max_dets else None
        else:  # a position (CocoParams guarantees three)
            max_det_index = number
        resolved.append((key, kind, ious, area_index, max_det_index))
    return resolved


def _stats(resolved, precision: Mapping, recall: Mapping) -> dict[str, float]:
    """The stats from precision [T×R×K] and recall [T×K] per (area, maxDets) index: means of entries > -1."""
    arrays = {"precision": precision, "recall": recall}
    stats = {}
    for key, kind, ious, area, max_det in resolved:
        values = np.zeros(0) if area is None or max_det is None else arrays[kind][area, max_det][ious]
        values = values[values > -1]
        stats[key] = float(np.mean(values)) if values.size else -1.0
    return stats


@dataclass(frozen=True, eq=False)
class _RecallPoints:
    """Where accumulate reads the precision at each recall threshold, for one npig [A×K].

    The precision envelope of each (area, IoU threshold, category) segment goes into ``max(npig, 1)``
    slots of a flat buffer, one per true positive it can have. The threshold r reads slot j - 1 of
    its segment, where j is the fewest true positives whose recall ``tp / npig`` (float division)
    reaches r: that is where ``searchsorted(rc, r, side='left')`` lands. Recall 0 reads the first
    true positive, whose envelope is the highest precision of all. A slot beyond the last true
    positive keeps the template's 0 (a recall never reached). A segment without gts keeps -1.

    Attributes:
        template: the buffer before any envelope is written: 0, and -1 in segments without gts.
        slots: [A×T×K] first slot of each segment.
        gather: [A×T×R×K] the slot read at each recall threshold.
    """

    template: np.ndarray
    slots: np.ndarray
    gather: np.ndarray


def _recall_points(npig: np.ndarray, n_thresholds: int, recall_thresholds: Sequence[float]) -> _RecallPoints:
    """The :class:`_RecallPoints` of npig [A×K].

    ``ceil(r * npig)`` is off by at most one from the fewest true positives needed; two float
    checks of ``tp / npig >= r``, the comparison accumulate makes, correct it.
    """
    thresholds = np.asarray(recall_thresholds)[:, None]
    total = np.maximum(npig, 1)[:, None, :].astype(np.float64)
    count = np.ceil(thresholds * total)  # [A×R×K]
    count = np.where((count >= 1) & ((count - 1) / total >= thresholds), count - 1, count)
    count = np.where(count / total < thresholds, count + 1, count)
    shape = (len(npig), n_thresholds, 1, npig.shape[1])
    sizes = np.broadcast_to(np.maximum(npig, 1)[:, None, None], shape).ravel()
    slots = np.cumsum(sizes) - sizes
    template = np.zeros(sizes.sum())
    template[slots[np.broadcast_to(npig[:, None, None] == 0, shape).ravel()]] = -1.0
    gather = slots.reshape(shape) + np.maximum(count, 1).astype(np.intp)[:, None] - 1
    return _RecallPoints(template=template, slots=slots, gather=gather)


def _envelope_at_recall_points(
    segment: np.ndarray, count: np.ndarray, curve: np.ndarray, points: _RecallPoints
) -> np.ndarray:
    """The interpolated precision [T×R×K] from the selected true positives of one area.

    Args:
        segment: [P] (IoU threshold, category) segment of each selected true positive, ascending.
        count: [P] its rank j among the segment's selected true positives (1-based).
        curve: [P] its precision ``j / (F + j + eps)``, F the selected false positives before it.
        points: where accumulate reads the precision, for this area's npig.

    The interpolated precision at recall r is the highest precision at or after the first dt that
    reaches r. Between two true positives the precision only falls, so only the values at true
    positives matter. The running max from the right within each segment uses complex numbers,
    which compare lexicographically: with -segment as the real part a scan never carries a value
    across segments; exact.
    """
    keyed = np.empty(len(curve), dtype=np.complex128)
    keyed.real, keyed.imag = -segment, curve
    packed = points.template.copy()
    packed[points.slots[segment] + count - 1] = np.maximum.accumulate(keyed[::-1])[::-1].imag
    return packed[points.gather][0]


@dataclass(frozen=True, eq=False)
class _AreaEvents:
    """The dts that can change a true positive's precision in one area, per IoU threshold: its events.

    For each IoU threshold t (row), the events are the true positives and the false positives among
    the dts matched at some (area, threshold), by global position. The many dts never matched
    anywhere are counted apart (``_MergedEvaluations.plain``): they are false positives at every
    threshold when inside the area range, and ignored otherwise.

    Attributes:
        position: [V] global position (accumulate's order) of each event's dt.
        true_positive: [V] True for a true positive, False for a false positive.
        segment: [V] ``t * K + category``: events sorted by segment, then position.
        first: [V] index of the first event of the same segment.
    """

    position: np.ndarray
    true_positive: np.ndarray
    segment: np.ndarray
    first: np.ndarray


def _true_positive_rates(
    events: _AreaEvents,
    selected: np.ndarray,
    plain_selected_cumsum: np.ndarray | None,
    category_first: np.ndarray,
    category: np.ndarray,
    npig: np.ndarray,
    n_thresholds: int,
    points: _RecallPoints | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """accumulate's inner loop for one area and one selection: precision [T×R×K] (or None) and recall [T×K].

    Args:
        events: the area's :class:`_AreaEvents`.
        selected: [D] the selected dts, in global order (image chosen and rank below maxDets).
        plain_selected_cumsum: [D] running count of the selected never-matched dts inside the area
            range (needed with ``points`` only).
        category_first: [K] global position where each category starts; ``category`` [D] per dt.
        npig: [K] non-ignored gts; 0 gives -1 entries.
        points: where to read the precision, or None for the recall only.

    A true positive's false positives before it are the plain ones (running count at its position
    less the count before its category starts) plus the event false positives before it in its
    segment (running count over the events).
    """
    n_categories = len(npig)
    chosen = selected[events.position]
    true_positive = chosen & events.true_positive
    n_true = np.bincount(events.segment[true_positive], minlength=n_thresholds * n_categories)
    recall = n_true.reshape(n_thresholds, n_categories) / np.maximum(npig, 1)
    recall = np.where(npig > 0, recall, -1.0)
    if points is None:
        return None, recall
    true_so_far = np.cumsum(true_positive)
    false_so_far = np.cumsum(chosen & ~events.true_positive)
    index = np.flatnonzero(true_positive)
    first = events.first[index]
    before = first - 1
    count = true_so_far[index] - np.where(first > 0, true_so_far[before], 0)
    false_events = false_so_far[index] - np.where(first > 0, false_so_far[before], 0)
    position = events.position[index]
    start = category_first[category[position]]
    false_plain = plain_selected_cumsum[position] - np.where(start > 0, plain_selected_cumsum[start - 1], 0)
    curve = count / (false_plain + false_events + count + np.spacing(1))
    return _envelope_at_recall_points(events.segment[index], count, curve, points), recall


def _check_same_ground_truth(first: PerImageEval, other: PerImageEval) -> None:
    """Raise unless both evaluations index the same images, categories and gts with the same params."""
    gt, other_gt = first.ground_truth, other.ground_truth
    same = gt is other_gt or all(
        np.array_equal(getattr(gt, name), getattr(other_gt, name))
        for name in ("image_ids", "category_ids", "ids", "image_index", "areas", "iscrowd")
    )
    if not same or first.params != other.params:
        raise ValueError("evaluations must share one ground truth and the same CocoParams to be combined")


class _MergedEvaluations:
    """The dts of several models in accumulate's global order, so that any selection is a mask.

    Per (category), accumulate stable-sorts the concatenated dts of the selected images by score,
    which breaks ties by image and then by rank. Sorting every model's dts once by (category,
    -score, image, model, rank) gives that order for every selection. An image is answered by one
    model only, so the model key never breaks a real tie.

    What a selection costs: a true positive's precision needs the selected true and false positives
    before it. The dts matched at some (area, IoU threshold) are few; they are kept per area as
    sparse events (:class:`_AreaEvents`). The rest (most dts of a YOLO-style results list) are never
    matched, so in an area they are a false positive at every threshold or ignored, and one running
    count per area over the selected ones serves all ten thresholds. No [A×T×D] array is copied
    per selection.
    """

    def __init__(self, evaluations: Sequence[PerImageEval]):
        first = evaluations[0]
        for other in evaluations[1:]:
            _check_same_ground_truth(first, other)
        self.params = params = first.params
        gt = first.ground_truth
        self.n_images, self.n_categories = len(gt.image_ids), len(gt.category_ids)
        n_areas, n_thresholds = len(params.area_ranges), len(params.iou_thresholds)

        def merged(name: str) -> np.ndarray:
            return np.concatenate([getattr(evaluation, name) for evaluation in evaluations], axis=-1)

        model = np.repeat(np.arange(len(evaluations)), [len(e.dt_score) for e in evaluations])
        image, category, rank = merged("dt_image"), merged("dt_category"), merged("dt_rank")
        order = np.lexsort((rank, model, image, -merged("dt_score"), category))
        n_dts = len(order)
        position = np.empty(n_dts, dtype=np.int64)
        position[order] = np.arange(n_dts)
        self.category, self.rank = category[order], rank[order]
        self.owner = (model * self.n_images + image)[order]  # index into a flattened [M×I] selection
        self.category_first = np.searchsorted(self.category, np.arange(self.n_categories))

        # Per model (to keep peak memory at one model's [A×T×D] booleans): events and plain dts.
        self.plain = np.zeros((n_areas, n_dts), dtype=bool)
        parts = [[] for _ in range(n_areas)]
        offset = 0
        for evaluation in evaluations:
            size = len(evaluation.dt_score)
            where = position[offset:offset + size]
            offset += size
            matched = evaluation.dt_matches != 0  # [A×T×d]
            counted = ~evaluation.dt_ignore
            special = matched.any(axis=(0, 1))
            self.plain[:, where[~special]] = counted[:, 0, ~special]
            for area in range(n_areas):
                tp = matched[area] & counted[area] & special
                fp = ~matched[area] & counted[area] & special
                rows, columns = np.nonzero(tp | fp)
                parts[area].append((rows, where[columns], tp[rows, columns]))
        self.events = []
        for area in range(n_areas):
            rows = np.concatenate([part[0] for part in parts[area]])
            where = np.concatenate([part[1] for part in parts[area]])
            true_positive = np.concatenate([part[2] for part in parts[area]])
            by_row = np.lexsort((where, rows))
            rows, where, true_positive = rows[by_row], where[by_row], true_positive[by_row]
            segment = rows * self.n_categories + self.category[where]
            segment_first = np.searchsorted(segment, segment, side="left")
            self.events.append(_AreaEvents(where, true_positive, segment, segment_first))
        # [I×(A·K)] non-ignored gts per image, summed over the selected images into npig. As floats
        # for a BLAS product; sums of small integers are exact.
        counted_gts = np.zeros((self.n_images, n_areas, self.n_categories))
        np.add.at(counted_gts, (gt.image_index, slice(None), gt.category_index), ~first.gt_ignore.T)
        self.counted_gts = counted_gts.reshape(self.n_images, -1)
        self._points: dict = {}

    def _points_of(self, area: int, npig: np.ndarray) -> _RecallPoints:
        """Recall points of one area's npig [K], cached (a sweep's selections mostly share one npig)."""
        key = (area, npig.tobytes())
        if key not in self._points:
            if len(self._points) > 4096:
                self._points.clear()
            self._points[key] = _recall_points(npig[None], len(self.params.iou_thresholds), self.params.recall_thresholds)
        return self._points[key]

    def rates(
        self, selections: np.ndarray, precision_settings: set, recall_settings: set
    ) -> Iterator[tuple[dict, dict]]:
        """For each [M×I] selection of an [S×M×I] stack, precision [T×R×K] and recall [T×K].

        Both are dicts keyed by the (area, maxDets) indices asked for (the precision may hold more).
        """
        params = self.params
        n_thresholds = len(params.iou_thresholds)
        shape = (len(params.area_ranges), self.n_categories)
        last = len(params.max_dets) - 1
        for selection in selections:
            npig = np.rint(selection.any(axis=0) @ self.counted_gts).astype(np.int64).reshape(shape)
            chosen = selection.reshape(-1)[self.owner]
            precision, recall = {}, {}
            for m in sorted({m for _, m in precision_settings | recall_settings}):
                # Matching already cut each (image, category) at max_dets[-1]; smaller caps keep a prefix.
                selected = chosen if m == last else chosen & (self.rank < params.max_dets[m])
                for area in sorted({a for a, m_ in precision_settings | recall_settings if m_ == m}):
                    with_precision = (area, m) in precision_settings
                    cumsum = np.cumsum(selected & self.plain[area]) if with_precision else None
                    area_precision, area_recall = _true_positive_rates(
                        self.events[area], selected, cumsum, self.category_first, self.category, npig[area],
                        n_thresholds, self._points_of(area, npig[area]) if with_precision else None,
                    )
                    recall[area, m] = area_recall
                    if area_precision is not None:
                        precision[area, m] = area_precision
            yield precision, recall

    def summaries(
        self, selections: np.ndarray, keys: Sequence[str] = STAT_KEYS, workers: int = 1
    ) -> list[dict[str, float]]:
        """The stats ``keys`` for each [M×I] selection of an [S×M×I] stack, computing only what they read.

        With ``workers > 1`` the selections are split into chunks scored by forked processes, which
        share this object without copying it; each selection's arithmetic is the same, so the
        results are identical to one process. Where ``fork`` is unavailable one process is used.
        """
        resolved = [stat for stat in _resolve_stats(self.params) if stat[0] in keys]
        settings = {"precision": set(), "recall": set()}
        for _, kind, _, area, max_det in resolved:
            if area is not None and max_det is not None:
                settings[kind].add((area, max_det))
        task = (self, selections, resolved, settings["precision"], settings["recall"])
        workers = min(int(workers), len(selections))
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            global _FORKED_TASK
            _FORKED_TASK = task
            chunks = np.array_split(np.arange(len(selections)), min(len(selections), 4 * workers))
            try:
                with multiprocessing.get_context("fork").Pool(workers) as pool:
                    parts = pool.map(_forked_summaries, [(int(c[0]), int(c[-1]) + 1) for c in chunks if len(c)])
            finally:
                _FORKED_TASK = None
            return [stats for part in parts for stats in part]
        return _summaries_of(task, 0, len(selections))


_FORKED_TASK = None  # what forked workers of _MergedEvaluations.summaries read (set only around the pool)


def _summaries_of(task, start: int, stop: int) -> list[dict[str, float]]:
    merged, selections, resolved, precision_settings, recall_settings = task
    rates = merged.rates(selections[start:stop], precision_settings, recall_settings)
    return [_stats(resolved, *rate) for rate in rates]


def _forked_summaries(bounds: tuple[int, int]) -> list[dict[str, float]]:
    return _summaries_of(_FORKED_TASK, *bounds)


def _check_selections(selections: np.ndarray, n_models: int, n_images: int, name: str) -> np.ndarray:
    """Validate an [...×M×I] bool stack: each image answered by at most one model."""
    if selections.dtype != bool:
        raise TypeError(f"{name} must be a bool array, got dtype {selections.dtype}")
    if selections.shape[-2:] != (n_models, n_images):
        raise ValueError(
            f"{name} must end in shape ({n_models} models, {n_images} images), got {selections.shape}"
        )
    if (selections.sum(axis=-2) > 1).any():
        raise ValueError(f"{name}: an image can be answered by at most one model")
    return selections


def _as_models(evaluations: PerImageEval | Sequence[PerImageEval]) -> tuple[tuple[PerImageEval, ...], bool]:
    """The evaluations as a tuple, and whether a single one was passed."""
    if isinstance(evaluations, PerImageEval):
        return (evaluations,), True
    evaluations = tuple(evaluations)
    if not evaluations:
        raise ValueError("evaluations must not be empty")
    return evaluations, False


def _by_area_and_max_det(rates: Mapping, params: CocoParams) -> np.ndarray:
    """Stack ``{(area, maxDets): [T×R×K] or [T×K]}`` into pycocotools' layout [...×A×M]."""
    return np.stack(
        [np.stack([rates[a, m] for m in range(len(params.max_dets))], axis=-1) for a in range(len(params.area_ranges))],
        axis=-2,
    )


def accumulate(
    evaluations: PerImageEval | Sequence[PerImageEval],
    selection: np.ndarray | None = None,
) -> CocoAccumulation:
    """pycocotools' ``accumulate()`` over a selection of images, from cached evaluations.

    Args:
        evaluations: one model's :class:`PerImageEval`, or several over the same ground truth.
        selection: which model answers which image (images in ``ground_truth.image_ids`` order).
            For one model an [I] bool mask (``None``: all images). For M models an [M×I] bool
            array with at most one True per image, e.g. ``[exit, ~exit]`` for a cascade. An image
            no model answers is left out of the evaluation, gts included, as with pycocotools'
            ``params.imgIds`` restricted to the others.

    Returns:
        The full :class:`CocoAccumulation` ([T×R×K×A×M] precision and [T×K×A×M] recall).

    >>> from tinysaver_det.detection.types import Detections
    >>> gt = load_ground_truth({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [
    ...     {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]})
    >>> saver = evaluate_images(gt, [Detections(1, [[0, 0, 10, 10]], [0.5], [1])])
    >>> base = evaluate_images(gt, [])
    >>> accumulate([saver, base], np.array([[False], [True]])).recall[0, 0, :, -1].tolist()  # all, small, medium, large
    [0.0, 0.0, -1.0, -1.0]
    >>> accumulate([saver, base], np.array([[True], [False]])).recall[0, 0, :, -1].tolist()
    [1.0, 1.0, -1.0, -1.0]
    """
    evaluations, single = _as_models(evaluations)
    n_images = len(evaluations[0].ground_truth.image_ids)
    if selection is None:
        if not single:
            raise ValueError("selection is required when several evaluations are combined")
        selection = np.ones(n_images, dtype=bool)
    selection = np.asarray(selection)
    selections = (selection[None] if single else selection)[None]
    selections = _check_selections(selections, len(evaluations), n_images, "selection")
    params = evaluations[0].params
    settings = {(a, m) for a in range(len(params.area_ranges)) for m in range(len(params.max_dets))}
    rates = next(_MergedEvaluations(evaluations).rates(selections, settings, settings))
    precision, recall = (_by_area_and_max_det(by_setting, params) for by_setting in rates)
    return CocoAccumulation(params=params, precision=precision, recall=recall)


def summarize(accumulation: CocoAccumulation) -> dict[str, float]:
    """pycocotools' 12 ``stats`` as a flat dict keyed by :data:`STAT_KEYS`.

    Each stat is the mean of the entries > -1 for its IoU threshold, area label and maxDets, read as
    pycocotools' summarize reads them: AP at the literal maxDets 100, AR1/AR10/AR100 at positions
    0/1/2 of ``max_dets``, the other stats at position 2. It is -1 when no entry is available, for
    instance ``AP`` when ``max_dets`` has no 100 (with ``(1, 10, 300)``, AP50 is read at 300).

    >>> params = CocoParams()
    >>> empty = CocoAccumulation(params, -np.ones((10, 101, 2, 4, 3)), -np.ones((10, 2, 4, 3)))
    >>> summarize(empty)["AP"]
    -1.0
    """
    params = accumulation.params
    settings = [(a, m) for a in range(len(params.area_ranges)) for m in range(len(params.max_dets))]
    precision = {(a, m): accumulation.precision[:, :, :, a, m] for a, m in settings}
    recall = {(a, m): accumulation.recall[:, :, a, m] for a, m in settings}
    return _stats(_resolve_stats(params), precision, recall)


def summarize_selections(
    evaluations: PerImageEval | Sequence[PerImageEval],
    selections: np.ndarray,
) -> list[dict[str, float]]:
    """:func:`summarize` of :func:`accumulate` for a stack of selections, computing only what the stats read.

    Args:
        evaluations: as in :func:`accumulate`.
        selections: [S×I] bool masks for one model, or [S×M×I] for M models (at most one True per image).

    Returns:
        One stats dict (:data:`STAT_KEYS`) per selection.

    >>> from tinysaver_det.detection.types import Detections
    >>> gt = load_ground_truth({"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}], "annotations": [
    ...     {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]})
    >>> found = evaluate_images(gt, [Detections(2, [[0, 0, 10, 10]], [0.5], [1])])
    >>> [stats["AP"] for stats in summarize_selections(found, np.array([[True, True], [False, True]]))]
    [0.0, -1.0]
    """
    evaluations, single = _as_models(evaluations)
    selections = np.asarray(selections)
    n_images = len(evaluations[0].ground_truth.image_ids)
    selections = _check_selections(
        selections[:, None] if single and selections.ndim == 2 else selections, len(evaluations), n_images, "selections"
    )
    return _MergedEvaluations(evaluations).summaries(selections)


class CocoCascadeMetric:
    """COCO bbox metrics of a saver/base cascade for any exit mask: the ``SystemMetric`` of ``core.sweep``.

    Both models are matched once (:func:`evaluate_images`) and merged once. After that, each exit
    mask only picks and counts cached entries. Masks are [I] bools over ``image_ids`` (sorted image
    ids of the ground truth): True takes the saver's detections, False the base's.

    Attributes:
        primary: ``"AP"``, the headline key of :meth:`routed`.
        n_samples: number of images I.
        image_ids: [I] the image id of each mask position.
        workers: processes that score many masks at once (``routed_many``, ``subset_many``);
            the results do not depend on it.

    >>> from tinysaver_det.detection.types import Detections
    >>> gt = load_ground_truth({"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}], "annotations": [
    ...     {"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100} for i in (1, 2)]})
    >>> hit = {i: Detections(i, [[0, 0, 10, 10]], [0.9], [1]) for i in (1, 2)}
    >>> metric = CocoCascadeMetric.from_detections(gt, saver={1: hit[1]}, base=hit)
    >>> [round(stats["AP"], 3) for stats in metric.routed_many(np.array([[True, True], [False, False]]))]
    [0.505, 1.0]
    >>> metric.subset("saver", np.array([True, False])) == metric.subset("base", np.array([True, False]))
    True
    """

    primary = "AP"
    _models = ("saver", "base")

    def __init__(self, saver: PerImageEval, base: PerImageEval, workers: int = 1):
        self._merged = _MergedEvaluations((saver, base))
        self.workers = workers
        self.image_ids = saver.ground_truth.image_ids
        self.n_samples = len(self.image_ids)

    @classmethod
    def from_detections(
        cls,
        ground_truth: CocoGroundTruth,
        saver: Mapping[int, Detections] | Iterable[Detections],
        base: Mapping[int, Detections] | Iterable[Detections],
        params: CocoParams | None = None,
    ) -> "CocoCascadeMetric":
        """Evaluate both models' detections (:func:`evaluate_images`) and merge them."""
        return cls(evaluate_images(ground_truth, saver, params), evaluate_images(ground_truth, base, params))

    def routed(self, exit_mask: np.ndarray) -> dict[str, float]:
        """The 12 stats of the cascade: True -> the saver's detections, False -> the base's."""
        return self.routed_many(np.asarray(exit_mask)[None])[0]

    def routed_many(self, exit_masks: np.ndarray) -> list[dict[str, float]]:
        """:meth:`routed` for each row of an [S×I] stack of exit masks (e.g. one per threshold)."""
        exit_masks = np.asarray(exit_masks)
        if exit_masks.ndim != 2:
            raise ValueError(f"exit_masks must have shape (n_masks, {self.n_samples}), got {exit_masks.shape}")
        selections = _check_selections(np.stack([exit_masks, ~exit_masks], axis=1), 2, self.n_samples, "exit_masks")
        return self._merged.summaries(selections, workers=self.workers)

    def subset(self, model: str, mask: np.ndarray) -> float:
        """AP of ``"saver"`` or ``"base"`` alone on the images where ``mask`` is True (-1 without any gt there).

        This equals pycocotools with ``params.imgIds`` set to those images.
        """
        return float(self.subset_many(model, np.asarray(mask)[None])[0])

    def subset_many(self, model: str, masks: np.ndarray) -> np.ndarray:
        """:meth:`subset` for each row of a [P×I] stack of masks, in one evaluation (``core.r_match`` uses it)."""
        if model not in self._models:
            raise ValueError(f"model must be one of {self._models}, got {model!r}")
        masks = _check_selections(np.asarray(masks)[:, None], 1, self.n_samples, "masks")[:, 0]
        selections = np.zeros((len(masks), 2, self.n_samples), dtype=bool)
        selections[:, self._models.index(model)] = masks
        summaries = self._merged.summaries(selections, keys=(self.primary,), workers=self.workers)
        return np.array([stats[self.primary] for stats in summaries], dtype=np.float64)
