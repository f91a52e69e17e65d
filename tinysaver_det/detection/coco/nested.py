"""AP of one model on a chain of nested image sets in one pass: r_match's exit sets, every one of them.

r_match (paper Eq. 6) compares the saver's and the base's AP on the images that exit at each
threshold. Searched over every distinct confidence (the exact maximum over t), that is one exit set
per distinct confidence, thousands on a COCO-sized set, and each set holds the previous one plus a
few images. Scoring each set from scratch costs the size of the whole evaluation per set; here the
sets are walked in order. The never-matched dts of the images that enter are added to running
counts (a difference array over the matched dts' positions, as in ``accumulate._PlainCounts``), and
each set's precision curves are read from the matched dts alone. The walk is a compiled loop
(numba) when numba is installed (the ``fast`` extra); without it, :func:`nested_ap` returns None and
the caller scores each set with the general accumulation, which gives the same values.

The arithmetic is pycocotools': precision ``tp / (fp + tp + eps)``, recall ``tp / npig``, the
running max from the right, the first dt whose recall reaches each of the 101 thresholds, and the
mean over the (IoU threshold, recall threshold, category) entries whose category has gts. Only the
order of that final sum differs from ``np.mean`` (a few ulps), so values agree to about 1e-15.
"""

from __future__ import annotations

import numpy as np

try:  # optional: the compiled walk
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

__all__ = ["nested_ap", "is_chain"]


def is_chain(masks: np.ndarray) -> bool:
    """True when each row of a [P×I] bool stack holds the previous one (a growing chain of sets)."""
    return bool(len(masks) < 2 or not (masks[:-1] & ~masks[1:]).any())


def _walk(arrival_events, true_positive, anchor, segment_start, n_categories, plain_cut_start, plain_start,
          plain_stop, n_anchors, npig, recall_thresholds):
    """AP per set: see :func:`nested_ap` (this is the loop numba compiles)."""
    n_sets = npig.shape[0]
    n_segments = len(segment_start) - 1
    n_recall = len(recall_thresholds)
    eps = np.spacing(1.0)
    out = np.empty(n_sets, dtype=np.float64)
    difference = np.zeros(n_anchors + 1, dtype=np.int32)
    plain_before = np.zeros(n_anchors, dtype=np.int32)
    longest = 1
    for s in range(n_segments):
        longest = max(longest, segment_start[s + 1] - segment_start[s])
    precision = np.empty(longest, dtype=np.float64)
    for p in range(n_sets):
        for q in range(plain_cut_start[p], plain_cut_start[p + 1]):
            difference[plain_start[q]] += 1
            difference[plain_stop[q]] -= 1
        running = 0
        for u in range(n_anchors):
            running += difference[u]
            plain_before[u] = running
        total = 0.0
        entries = 0
        for s in range(n_segments):
            n = npig[p, s % n_categories]
            if n == 0:
                continue
            found = 0
            false_events = 0
            for v in range(segment_start[s], segment_start[s + 1]):
                if arrival_events[v] > p:
                    continue
                if true_positive[v]:
                    found += 1
                    precision[found - 1] = found / ((plain_before[anchor[v]] + false_events + found) + eps)
                else:
                    false_events += 1
            for i in range(found - 2, -1, -1):
                if precision[i + 1] > precision[i]:
                    precision[i] = precision[i + 1]
            i = 0
            for r in range(n_recall):
                while i < found and (i + 1) / n < recall_thresholds[r]:
                    i += 1
                if i < found:
                    total += precision[i]
            entries += n_recall
        out[p] = total / entries if entries else -1.0
    return out


_compiled = None


def _compiled_walk():
    global _compiled
    if _compiled is None:
        _compiled = numba.njit(cache=True, nogil=True)(_walk)
    return _compiled


def nested_ap(merged, model: int, masks: np.ndarray, area: int, max_det: int) -> np.ndarray | None:
    """AP (all IoU thresholds, one area, one maxDets) of one model alone on each set of a chain.

    Args:
        merged: the models' ``accumulate._MergedEvaluations``.
        model: which of its models answers the images of the sets (the others answer none).
        masks: [P×I] bool, a growing chain (:func:`is_chain`).
        area, max_det: indices into the params' area ranges and maxDets.

    Returns:
        [P] AP per set (-1 where no category has gts), or None when numba is not installed.
    """
    if numba is None:
        return None
    masks = np.asarray(masks, dtype=bool)
    n_sets, n_images = masks.shape
    params = merged.params
    cap = params.max_dets[max_det]
    # The first set holding each (model, image); never for the other models' images.
    arrival = np.full(merged.n_owners, n_sets, dtype=np.int64)
    arrival[model * n_images:(model + 1) * n_images] = np.where(masks.any(axis=0), np.argmax(masks, axis=0), n_sets)
    events = merged.events[area]
    n_categories = merged.n_categories
    n_segments = len(params.iou_thresholds) * n_categories
    # Only events that can be selected (rank under the cap, image in the last set), as compact arrays.
    usable = np.flatnonzero((events.rank < cap) & (arrival[events.owner] < n_sets))
    segment_start = np.searchsorted(events.segment[usable], np.arange(n_segments + 1))
    plain = merged.plain_in_range[area] & (merged.plain_rank < cap)
    plain_arrival = arrival[np.repeat(np.arange(merged.n_owners), np.diff(merged.plain_owner_start))]
    chosen = np.flatnonzero(plain & (plain_arrival < n_sets))
    chosen = chosen[np.argsort(plain_arrival[chosen], kind="stable")]
    plain_cut_start = np.searchsorted(plain_arrival[chosen], np.arange(n_sets + 1))
    counted = merged.counted_gts.reshape(n_images, len(params.area_ranges), n_categories)[:, area]
    entering = np.zeros((n_sets + 1, n_categories))
    np.add.at(entering, arrival[model * n_images:(model + 1) * n_images], counted)
    npig = np.rint(np.cumsum(entering[:n_sets], axis=0)).astype(np.int64)
    return _compiled_walk()(
        arrival[events.owner[usable]].astype(np.int32), events.true_positive[usable],
        events.anchor[usable].astype(np.int32), segment_start, n_categories, plain_cut_start,
        merged.plain_start[chosen].astype(np.int32), merged.plain_stop[chosen].astype(np.int32),
        len(merged.anchors), npig, np.asarray(params.recall_thresholds, dtype=np.float64),
    )
