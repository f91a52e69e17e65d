"""Per-image matching of one model's detections to the ground truth: pycocotools' ``evaluateImg``.

The result (:class:`PerImageEval`) is the cache: it is computed once per model, and any selection
of images is then accumulated from it (:mod:`tinysaver_det.detection.coco.accumulate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from tinysaver_det.detection.coco.ground_truth import CocoGroundTruth, positions_in_sorted
from tinysaver_det.detection.coco.params import CocoParams
from tinysaver_det.detection.coco.results_json import ResultColumns
from tinysaver_det.detection.types import Detections


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
        dt_first_gt: [D] position in ``ground_truth`` of the first gt of the detection's (image, category).
        dt_match_offset: [A×T×D] the matched gt's position counted from ``dt_first_gt`` (-1 when
            unmatched, or matched to a gt whose id is 0, which pycocotools cannot tell from no match).
            Groups hold few gts, so this is int16 (int32 for a group of over 32,767): 2 bytes per
            entry where the gt ids would take 8 (``dt_matches`` gives them).
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
    dt_first_gt: np.ndarray
    dt_match_offset: np.ndarray
    dt_ignore: np.ndarray

    @property
    def dt_matches(self) -> np.ndarray:
        """[A×T×D] ``dtMatches``: the id of the matched gt, 0 when unmatched."""
        ids = np.append(self.ground_truth.ids, 0)
        matched = self.dt_match_offset >= 0
        return ids[np.where(matched, self.dt_first_gt + self.dt_match_offset.astype(np.int64), len(ids) - 1)]


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
) -> tuple[np.ndarray, np.ndarray]:
    """``evaluateImg``'s greedy matching for every (image, category) group at once.

    Returns ``(offset, first)``: [A×T×D] the matched gt's position counted from its group's first gt
    (int16 when every group has fewer than 32767 gts), -1 if none; and [D] each dt's group's first gt.

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
    largest = int(np.bincount(gt_group).max()) if len(gt_group) else 0
    matched = np.full((n_areas, len(thresholds), n_dts), -1, dtype=np.int16 if largest < 2**15 - 1 else np.int32)
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
        matched[area, threshold, dts[pair]] = winner - first[dts[pair]]
        free[winner, area, threshold] = ground_truth.iscrowd[winner]  # a crowd gt takes any number of dts
    return matched, first


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
            :class:`~tinysaver_det.detection.coco.results_json.ResultColumns`, whose ``[x, y, w, h]``
            boxes are used as written, as ``loadRes`` does (corners would move ``w`` by a float step).
        params: evaluation settings; ``None`` means the COCO defaults (:class:`CocoParams`).

    Returns:
        The cache :class:`PerImageEval`; the inputs are not modified.

    >>> from tinysaver_det.detection.coco import load_ground_truth
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

    image_index, known_image = positions_in_sorted(ground_truth.image_ids, images)
    category_index, known_category = positions_in_sorted(ground_truth.category_ids, categories)
    keep = np.flatnonzero(known_image & known_category)
    group = category_index[keep] * len(ground_truth.image_ids) + image_index[keep]
    keep = keep[np.lexsort((-scores[keep], group))]  # stable: equal scores keep the list order
    group = np.sort(group, kind="stable")
    rank = np.arange(len(keep)) - np.searchsorted(group, group, side="left")
    within = rank < params.max_dets[-1]
    keep, group, rank = keep[within], group[within], rank[within]

    gt_ignore = ground_truth.iscrowd | _out_of_range(ground_truth.areas, params)
    # The matched gt relative to its group's first gt: a small number, stored in 2 bytes.
    offset, first_gt = _greedy_match(ground_truth, gt_ignore, group, rank, xywh[keep], params)
    first_gt_32 = first_gt.astype(np.int32)
    dt_ignore = np.empty(offset.shape, dtype=bool)
    out_of_range = _out_of_range(xywh[keep, 2] * xywh[keep, 3], params)
    zero_id = np.flatnonzero(ground_truth.ids == 0)
    for area in range(len(gt_ignore)):  # one area at a time: no [A×T×D] temporaries
        matched = offset[area] >= 0
        matched_gt = np.where(matched, offset[area] + first_gt_32, 0)
        ignored_gt = gt_ignore[area][matched_gt] & matched
        if zero_id.size:  # a match to gt id 0 is no match for pycocotools
            zero = matched & np.isin(matched_gt, zero_id)
            matched &= ~zero
            offset[area][zero] = -1
        np.logical_or(ignored_gt, ~matched & out_of_range[area], out=dt_ignore[area])
    return PerImageEval(
        ground_truth=ground_truth,
        params=params,
        gt_ignore=gt_ignore,
        dt_image=image_index[keep],
        dt_category=category_index[keep],
        dt_rank=rank,
        dt_id=ids[keep],
        dt_score=scores[keep],
        dt_first_gt=first_gt,
        dt_match_offset=offset,
        dt_ignore=dt_ignore,
    )


