"""pycocotools' ``accumulate`` and ``summarize`` over any selection of images of cached matchings."""

from __future__ import annotations

import multiprocessing
import signal
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


def resolve_stats(params: CocoParams) -> list[tuple[str, str, np.ndarray, int | None, int | None]]:
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
    anywhere are counted apart (:class:`_PlainCounts`): they are false positives at every threshold
    when inside the area range, and ignored otherwise.

    Attributes:
        owner: [V] the event dt's (model, image) as an index into a flattened [M×I] selection.
        rank: [V] its rank within its (image, category) (smaller maxDets keep a prefix).
        anchor: [V] index of its position among the matched dts' positions (:class:`_PlainCounts`).
        true_positive: [V] True for a true positive, False for a false positive.
        segment: [V] ``t * K + category``: events sorted by segment, then position.
        first: [V] index of the first event of the same segment.
    """

    owner: np.ndarray
    rank: np.ndarray
    anchor: np.ndarray
    true_positive: np.ndarray
    segment: np.ndarray
    first: np.ndarray


class _PlainCounts:
    """For one (area, maxDets): how many selected never-matched dts precede each matched dt in its category.

    Those dts are false positives at every IoU threshold inside the area range, so one count per
    matched position serves all thresholds. A never-matched dt q adds 1 to every matched position
    after it in its category: a range ``[start(q), stop(q))`` of the sorted matched positions. The
    counts are a running sum over a difference array, updated only for the (model, image) pairs whose
    selection changed since the previous selection: a sweep moves few images between thresholds,
    and r_match's exit sets grow a few images at a time.
    """

    def __init__(self, merged: "MergedEvaluations", area: int, max_det: int):
        keep = merged.plain_in_range[area] & (merged.plain_rank < max_det)
        self._merged = merged
        self._keep = keep
        self._difference = np.zeros(len(merged.anchors) + 1, dtype=np.int64)
        self._selection = np.zeros(merged.n_owners, dtype=bool)

    def update(self, selection: np.ndarray) -> np.ndarray:
        """Counts [U] at each matched position for the flattened [M×I] ``selection``."""
        merged = self._merged
        changed = np.flatnonzero(selection != self._selection)
        if changed.size:
            starts, stops = merged.plain_owner_start[changed], merged.plain_owner_start[changed + 1]
            sizes = stops - starts
            index = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())
            sign = np.repeat(np.where(selection[changed], 1, -1), sizes)
            index, sign = index[self._keep[index]], sign[self._keep[index]]
            n = len(self._difference)
            self._difference += np.bincount(merged.plain_start[index], weights=sign, minlength=n).astype(np.int64)
            self._difference -= np.bincount(merged.plain_stop[index], weights=sign, minlength=n).astype(np.int64)
            self._selection = selection.copy()
        return np.cumsum(self._difference[:-1])


def _true_positive_rates(
    events: _AreaEvents,
    selected: np.ndarray,
    plain_before: np.ndarray | None,
    npig: np.ndarray,
    n_thresholds: int,
    points: _RecallPoints | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """accumulate's inner loop for one area and one selection: precision [T×R×K] (or None) and recall [T×K].

    Args:
        events: the area's :class:`_AreaEvents`.
        selected: [V] which events are selected (image chosen, rank below maxDets).
        plain_before: [U] selected never-matched false positives before each matched position in
            its category (needed with ``points`` only).
        npig: [K] non-ignored gts; 0 gives -1 entries.
        points: where to read the precision, or None for the recall only.

    A true positive's false positives before it are the plain ones plus the event false positives
    before it in its segment (a running count over the events).
    """
    n_categories = len(npig)
    true_positive = selected & events.true_positive
    n_true = np.bincount(events.segment[true_positive], minlength=n_thresholds * n_categories)
    recall = n_true.reshape(n_thresholds, n_categories) / np.maximum(npig, 1)
    recall = np.where(npig > 0, recall, -1.0)
    if points is None:
        return None, recall
    true_so_far = np.cumsum(true_positive)
    false_so_far = np.cumsum(selected & ~events.true_positive)
    index = np.flatnonzero(true_positive)
    first = events.first[index]
    before = first - 1
    count = true_so_far[index] - np.where(first > 0, true_so_far[before], 0)
    false_events = false_so_far[index] - np.where(first > 0, false_so_far[before], 0)
    curve = count / (plain_before[events.anchor[index]] + false_events + count + np.spacing(1))
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


class MergedEvaluations:
    """The dts of several models in accumulate's global order, so that any selection is a mask.

    Per (category), accumulate stable-sorts the concatenated dts of the selected images by score,
    which breaks ties by image and then by rank. Sorting every model's dts once by (category,
    -score, image, model, rank) gives that order for every selection. An image is answered by one
    model only, so the model key never breaks a real tie.

    What a selection costs: a true positive's precision needs the selected true and false positives
    before it. The dts matched at some (area, IoU threshold) are few; they are kept per area as
    sparse events (:class:`_AreaEvents`), with the rare dts whose ignore flag depends on the threshold
    (a voided match to a gt with id 0). The rest (most dts of a YOLO-style results list) are never
    matched, so in an area they are a false positive at every threshold or ignored; their counts
    before each matched dt are kept up to date from one selection to the next (:class:`_PlainCounts`).
    Nothing of the size of all dts is touched per selection once the first one is counted.
    """

    def __init__(self, evaluations: Sequence[PerImageEval]):
        first = evaluations[0]
        for other in evaluations[1:]:
            _check_same_ground_truth(first, other)
        self.params = params = first.params
        gt = first.ground_truth
        self.n_images, self.n_categories = len(gt.image_ids), len(gt.category_ids)
        self.n_owners = len(evaluations) * self.n_images
        n_areas = len(params.area_ranges)

        def merged(name: str) -> np.ndarray:
            return np.concatenate([getattr(evaluation, name) for evaluation in evaluations], axis=-1)

        model = np.repeat(np.arange(len(evaluations)), [len(e.dt_score) for e in evaluations])
        image, category, rank = merged("dt_image"), merged("dt_category"), merged("dt_rank")
        order = np.lexsort((rank, model, image, -merged("dt_score"), category))
        n_dts = len(order)
        index = np.int32 if max(n_dts, self.n_owners) < 2**31 - 1 else np.int64  # halves the index arrays
        position = np.empty(n_dts, dtype=index)
        position[order] = np.arange(n_dts, dtype=index)
        category, rank = category[order], rank[order].astype(index)
        owner = (model * self.n_images + image)[order].astype(index)
        category_stop = np.searchsorted(category, np.arange(self.n_categories), side="right")

        # Per model (to keep peak memory at one model's [A×T×D] booleans): the matched dts' events,
        # and whether each never-matched dt is inside each area range.
        special = np.zeros(n_dts, dtype=bool)
        in_range = np.zeros((n_areas, n_dts), dtype=bool)
        parts = [[] for _ in range(n_areas)]
        offset = 0
        for evaluation in evaluations:
            size = len(evaluation.dt_score)
            where = position[offset:offset + size]
            offset += size
            # The dts kept as events: those matched somewhere, and those whose dtIgnore changes with the
            # IoU threshold (a match pycocotools voids, to a gt with id 0, leaves the dt ignored where it
            # matched an ignored gt and counted above). Any other dt is ignored at every threshold or at
            # none, as its area says. One area at a time, only their columns: no [A×T×d] temporaries.
            as_events = np.zeros(size, dtype=bool)
            for area in range(n_areas):
                ignore = evaluation.dt_ignore[area]
                as_events |= (evaluation.dt_match_offset[area] >= 0).any(axis=0) | (ignore != ignore[:1]).any(axis=0)
            special[where] = as_events
            in_range[:, where] = ~evaluation.dt_ignore[:, 0, :]  # read for the other dts only
            columns = np.flatnonzero(as_events)
            for area in range(n_areas):
                matched = evaluation.dt_match_offset[area][:, columns] >= 0  # [T×m]
                counted = ~evaluation.dt_ignore[area][:, columns]
                tp = matched & counted
                rows, picked = np.nonzero(tp | (~matched & counted))
                parts[area].append((rows, where[columns[picked]], tp[rows, picked]))
        self.anchors = np.flatnonzero(special).astype(index)  # [U] the matched dts' global positions
        self.anchor_category = category[self.anchors]  # [U] their category indices (ascending)
        self.events = []
        for area in range(n_areas):
            rows = np.concatenate([part[0] for part in parts[area]])
            where = np.concatenate([part[1] for part in parts[area]])
            true_positive = np.concatenate([part[2] for part in parts[area]])
            by_row = np.lexsort((where, rows))
            rows, where, true_positive = rows[by_row], where[by_row], true_positive[by_row]
            segment = (rows * self.n_categories + category[where]).astype(index)
            self.events.append(_AreaEvents(
                owner=owner[where], rank=rank[where], anchor=np.searchsorted(self.anchors, where).astype(index),
                true_positive=true_positive, segment=segment,
                first=np.searchsorted(segment, segment, side="left").astype(index),
            ))
        # The never-matched dts grouped by owner, each with the range of matched positions it precedes.
        plain = np.flatnonzero(~special)
        plain = plain[np.argsort(owner[plain], kind="stable")]
        self.plain_owner_start = np.searchsorted(owner[plain], np.arange(self.n_owners + 1))
        self.plain_start = np.searchsorted(self.anchors, plain).astype(index)
        self.plain_stop = np.searchsorted(self.anchors, category_stop[category[plain]]).astype(index)
        self.plain_rank = rank[plain]
        self.plain_in_range = in_range[:, plain]
        # [I×(A·K)] non-ignored gts per image, summed over the selected images into npig. As floats
        # for a BLAS product; sums of small integers are exact.
        counted_gts = np.zeros((self.n_images, n_areas, self.n_categories))
        np.add.at(counted_gts, (gt.image_index, slice(None), gt.category_index), ~first.gt_ignore.T)
        self.counted_gts = counted_gts.reshape(self.n_images, -1)
        self._points: dict = {}
        self._plain_counts: dict = {}

    def _points_of(self, area: int, npig: np.ndarray) -> _RecallPoints:
        """Recall points of one area's npig [K], cached (a sweep's selections mostly share one npig)."""
        key = (area, npig.tobytes())
        if key not in self._points:
            if len(self._points) >= 16:
                self._points.clear()
            self._points[key] = _recall_points(npig[None], len(self.params.iou_thresholds), self.params.recall_thresholds)
        return self._points[key]

    def _plain_before(self, area: int, m: int, selection: np.ndarray) -> np.ndarray:
        if (area, m) not in self._plain_counts:
            self._plain_counts[area, m] = _PlainCounts(self, area, self.params.max_dets[m])
        return self._plain_counts[area, m].update(selection)

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
            flat = selection.reshape(-1)
            precision, recall = {}, {}
            for area, m in sorted(precision_settings | recall_settings):
                events = self.events[area]
                selected = flat[events.owner]
                if m != last:  # matching already cut at max_dets[-1]; smaller caps keep a prefix
                    selected &= events.rank < params.max_dets[m]
                with_precision = (area, m) in precision_settings
                area_precision, area_recall = _true_positive_rates(
                    events, selected, self._plain_before(area, m, flat) if with_precision else None,
                    npig[area], n_thresholds, self._points_of(area, npig[area]) if with_precision else None,
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
        resolved = [stat for stat in resolve_stats(self.params) if stat[0] in keys]
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
                with multiprocessing.get_context("fork").Pool(workers, initializer=_plain_worker_signals) as pool:
                    parts = pool.map(_forked_summaries, [(int(c[0]), int(c[-1]) + 1) for c in chunks if len(c)])
            finally:
                _FORKED_TASK = None
            return [stats for part in parts for stats in part]
        return _summaries_of(task, 0, len(selections))


_FORKED_TASK = None  # what forked workers of MergedEvaluations.summaries read (set only around the pool)


def _plain_worker_signals() -> None:
    """Give a forked worker the default signal handling back.

    The command line turns SIGTERM into Ctrl-C (:func:`tinysaver_det.errors.exit_code_of`); a worker
    forked from it would inherit that, and the pool's own SIGTERM at its end would print each worker's
    traceback. Ctrl-C is the parent's to handle: a worker ignores it and is ended by the parent's pool.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _summaries_of(task, start: int, stop: int) -> list[dict[str, float]]:
    merged, selections, resolved, precision_settings, recall_settings = task
    rates = merged.rates(selections[start:stop], precision_settings, recall_settings)
    return [_stats(resolved, *rate) for rate in rates]


def _forked_summaries(bounds: tuple[int, int]) -> list[dict[str, float]]:
    return _summaries_of(_FORKED_TASK, *bounds)


def check_selections(selections: np.ndarray, n_models: int, n_images: int, name: str) -> np.ndarray:
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
    selections = check_selections(selections, len(evaluations), n_images, "selection")
    params = evaluations[0].params
    settings = {(a, m) for a in range(len(params.area_ranges)) for m in range(len(params.max_dets))}
    rates = next(MergedEvaluations(evaluations).rates(selections, settings, settings))
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
    return _stats(resolve_stats(params), precision, recall)


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
    selections = check_selections(
        selections[:, None] if single and selections.ndim == 2 else selections, len(evaluations), n_images, "selections"
    )
    return MergedEvaluations(evaluations).summaries(selections)


