"""pycocotools' ``accumulate`` and ``summarize`` over any selection of images of cached matchings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from tinysaver_det.detection.coco.match import PerImageEval
from tinysaver_det.detection.coco.params import CocoParams


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
# They are looked up by value, so a missing IoU, label or maxDets gives -1 instead of a wrong column.
_STATS = (
    ("AP", "precision", None, "all", 100),
    ("AP50", "precision", 0.5, "all", 100),
    ("AP75", "precision", 0.75, "all", 100),
    ("APs", "precision", None, "small", 100),
    ("APm", "precision", None, "medium", 100),
    ("APl", "precision", None, "large", 100),
    ("AR1", "recall", None, "all", 1),
    ("AR10", "recall", None, "all", 10),
    ("AR100", "recall", None, "all", 100),
    ("ARs", "recall", None, "small", 100),
    ("ARm", "recall", None, "medium", 100),
    ("ARl", "recall", None, "large", 100),
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
        max_det_index = params.max_dets.index(max_det) if max_det in params.max_dets else None
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


def _precision_recall(
    true_positive: np.ndarray,
    false_positive: np.ndarray,
    categories: np.ndarray,
    npig: np.ndarray,
    points: _RecallPoints | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """accumulate's inner loop for all (area, IoU threshold, category) at once, without Python loops.

    Args:
        true_positive: [(A·T)×N] rows (area-major, then IoU threshold) over the selected dts in
            accumulate's order; ``categories`` [N] (ascending) splits them by category.
        false_positive: [(A·T)×N] the same for false positives (ignored dts are neither).
        categories: [N] category index of each dt.
        npig: [A×K] non-ignored gts; 0 gives -1 entries.
        points: where to read the precision (from the same npig), or None for the recall only.

    Returns:
        precision [A×T×R×K] (None without ``points``) and recall [A×T×K].

    The interpolated precision at recall r is the highest precision at or after the first dt that
    reaches r. Between two true positives the precision only falls. So only the values at true
    positives matter: the j-th true positive of a category, with F false positives before it, has
    precision j / (F + j + eps), the exact float expression pycocotools evaluates.
    """
    n_rows, n_dts = true_positive.shape
    n_areas, n_categories = npig.shape
    flat = np.flatnonzero(true_positive)  # 2-D np.nonzero is several times slower
    row = flat // max(n_dts, 1)
    row_start = row * n_dts
    category = categories[flat - row_start]
    segment = row * n_categories + category  # (area, threshold, category), ascending
    n_true = np.bincount(segment, minlength=n_rows * n_categories)
    recall = n_true.reshape(n_areas, -1, n_categories) / np.maximum(npig, 1)[:, None]
    recall = np.where(npig[:, None] > 0, recall, -1.0)
    if points is None:
        return None, recall
    count = np.arange(len(segment)) - (np.cumsum(n_true) - n_true)[segment] + 1
    # False positives before each true positive: the running count (over all rows) at its
    # position, less the count just before its category starts in that row.
    false_so_far = np.cumsum(false_positive)
    category_start = row_start + np.searchsorted(categories, np.arange(n_categories))[category]
    false_before = false_so_far[flat] - np.where(category_start > 0, false_so_far[category_start - 1], 0)
    curve = count / (false_before + count + np.spacing(1))
    # Running max from the right within each segment. Complex numbers compare lexicographically,
    # so with -segment as the real part a scan never carries a value across segments; exact.
    keyed = np.empty(len(curve), dtype=np.complex128)
    keyed.real, keyed.imag = -segment, curve
    packed = points.template.copy()
    packed[points.slots[segment] + count - 1] = np.maximum.accumulate(keyed[::-1])[::-1].imag
    return packed[points.gather], recall


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
    """

    def __init__(self, evaluations: Sequence[PerImageEval]):
        first = evaluations[0]
        for other in evaluations[1:]:
            _check_same_ground_truth(first, other)
        self.params = first.params
        gt = first.ground_truth
        self.n_images, self.n_categories = len(gt.image_ids), len(gt.category_ids)

        def merged(name: str) -> np.ndarray:
            return np.concatenate([getattr(evaluation, name) for evaluation in evaluations], axis=-1)

        model = np.repeat(np.arange(len(evaluations)), [len(e.dt_score) for e in evaluations])
        image, category, rank = merged("dt_image"), merged("dt_category"), merged("dt_rank")
        order = np.lexsort((rank, model, image, -merged("dt_score"), category))
        self.model, self.image, self.category, self.rank = model[order], image[order], category[order], rank[order]
        matches, ignore = merged("dt_matches")[..., order], merged("dt_ignore")[..., order]
        # [(A·T)×D], rows area-major: 2-D so that selecting dts (compress) gives contiguous rows.
        rows = (matches.shape[0] * matches.shape[1], len(order))
        self.true_positive = ((matches != 0) & ~ignore).reshape(rows)
        self.false_positive = ((matches == 0) & ~ignore).reshape(rows)
        # [I×(A·K)] non-ignored gts per image, summed over the selected images into npig. As floats
        # for a BLAS product; sums of small integers are exact.
        counted_gts = np.zeros((self.n_images, len(self.params.area_ranges), self.n_categories))
        np.add.at(counted_gts, (gt.image_index, slice(None), gt.category_index), ~first.gt_ignore.T)
        self.counted_gts = counted_gts.reshape(self.n_images, -1)

    def rates(
        self, selections: np.ndarray, precision_settings: set, recall_settings: set
    ) -> Iterator[tuple[dict, dict]]:
        """For each [M×I] selection of an [S×M×I] stack, precision [T×R×K] and recall [T×K].

        Both are dicts keyed by the (area, maxDets) indices asked for (the precision may hold more).
        """
        params = self.params
        n_thresholds = len(params.iou_thresholds)
        shape = (len(params.area_ranges), self.n_categories)
        npig = np.rint(selections.any(axis=1) @ self.counted_gts).astype(np.int64)  # [S×(A·K)]
        # Selections that keep every image (all of a sweep's) share one npig: place recall points once.
        distinct, which = np.unique(npig, axis=0, return_inverse=True)
        points = [_recall_points(counts.reshape(shape), n_thresholds, params.recall_thresholds) for counts in distinct]
        all_areas = list(range(len(params.area_ranges)))
        for selection, counts, index in zip(selections, npig.reshape(-1, *shape), which.reshape(-1)):
            chosen = selection[self.model, self.image]
            precision, recall = {}, {}
            for m in sorted({m for _, m in precision_settings | recall_settings}):
                with_precision = any(m_ == m for _, m_ in precision_settings)
                areas = all_areas if with_precision else sorted(a for a, m_ in recall_settings if m_ == m)
                rows = (np.array(areas)[:, None] * n_thresholds + np.arange(n_thresholds)).ravel()
                # Matching already cut each (image, category) at max_dets[-1]; smaller caps keep a prefix.
                keep = chosen if m == len(params.max_dets) - 1 else chosen & (self.rank < params.max_dets[m])
                area_precision, area_recall = _precision_recall(
                    self.true_positive[rows].compress(keep, axis=1),
                    self.false_positive[rows].compress(keep, axis=1),
                    self.category[keep],
                    counts[areas],
                    points[index] if with_precision else None,
                )
                for i, area in enumerate(areas):
                    recall[area, m] = area_recall[i]
                    if area_precision is not None:
                        precision[area, m] = area_precision[i]
            yield precision, recall

    def summaries(self, selections: np.ndarray) -> list[dict[str, float]]:
        """The 12 stats for each [M×I] selection of an [S×M×I] stack, computing only what they read."""
        resolved = _resolve_stats(self.params)
        settings = {"precision": set(), "recall": set()}
        for _, kind, _, area, max_det in resolved:
            if area is not None and max_det is not None:
                settings[kind].add((area, max_det))
        return [_stats(resolved, *rates) for rates in self.rates(selections, settings["precision"], settings["recall"])]


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

    >>> from tinysaver_det.detection.coco import evaluate_images, load_ground_truth
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

    Each stat is the mean of the entries > -1 for its IoU threshold, area label and maxDets, looked
    up by value (pycocotools hard-codes maxDets=100 and indices 0-2). It is -1 when no entry is
    available, for instance ``AR100`` when ``max_dets`` has no 100.

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

    >>> from tinysaver_det.detection.coco import evaluate_images, load_ground_truth
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


