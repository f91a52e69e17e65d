"""AP of one model on a chain of nested image sets in one pass: r_match's exit sets, every one of them.

r_match (paper Eq. 6) compares the saver's and the base's AP on the images that exit at each
threshold. Searched over every distinct confidence (the exact maximum over t), that is one exit set
per distinct confidence, thousands on a COCO-sized set, and each set holds the previous one plus a
few images. Scoring each set from scratch costs the size of the whole evaluation per set; here the
sets are walked in order. The never-matched dts of the images that enter are added to running
counts per matched dt's position (as in ``accumulate._PlainCounts``), and each set's precision
curves are read from the matched dts that have arrived alone. A set rescores only the categories
it changes (new gts, matched dts, or never-matched dts ranked above a matched one); the others keep
their sums from the set before. The walk is a compiled loop (numba) when numba is installed (the
``fast`` extra), split over threads in ranges of sets; without numba, :func:`nested_ap` returns None
and the caller scores each set with the general accumulation, which gives the same values.

The arithmetic is pycocotools': precision ``tp / (fp + tp + eps)``, recall ``tp / npig``, the
running max from the right, the first dt whose recall reaches each of the 101 thresholds, and the
mean over the (IoU threshold, recall threshold, category) entries whose category has gts. Only the
order of that final sum differs from ``np.mean`` (per segment, then over segments: a few ulps), so
values agree to about 1e-14.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tinysaver_det.detection.coco.compiled import AVAILABLE, compiled

__all__ = ["nested_ap", "is_chain"]


def is_chain(masks: np.ndarray) -> bool:
    """True when each row of a [P×I] bool stack holds the previous one (a growing chain of sets)."""
    return bool(len(masks) < 2 or not (masks[:-1] & ~masks[1:]).any())


@compiled
def _walk(first_set, stop_set, arrival_order, arrival_start, event_segment, true_positive, anchor, segment_start, n_categories,
          category_anchor_start, changed, plain_cut_start, plain_start, npig, recall_thresholds):
    """AP of sets ``first_set .. stop_set - 1``: see :func:`nested_ap` (this is the loop numba compiles).

    Events (matched dts) are numbered in score order within each segment; ``arrival_order`` lists
    them by the set they arrive in (cut by ``arrival_start``). Each segment keeps the numbers of its
    arrived events in order, so a set reads only what it holds. The first set of the range is scored
    whole.
    """
    n_segments = len(segment_start) - 1
    n_recall = len(recall_thresholds)
    eps = np.spacing(1.0)
    out = np.empty(stop_set - first_set, dtype=np.float64)
    n_anchors = category_anchor_start[n_categories]
    plain_entered = np.zeros(n_anchors, dtype=np.int32)  # entered never-matched dts at each anchor
    plain_before = np.zeros(n_anchors, dtype=np.int32)  # those ranked at or above each anchor, per category
    arrived = np.empty(len(event_segment), dtype=np.int32)  # per segment, its arrived events in order
    arrived_count = np.zeros(n_segments, dtype=np.int64)
    segment_sum = np.zeros(n_segments, dtype=np.float64)
    segment_counted = np.zeros(n_segments, dtype=np.bool_)
    longest = 1
    for s in range(n_segments):
        longest = max(longest, segment_start[s + 1] - segment_start[s])
    precision = np.empty(longest, dtype=np.float64)
    for p in range(first_set, stop_set):
        # Entering never-matched dts and events (at the range's first set, those of every set before too).
        for q in range(plain_cut_start[p] if p > first_set else 0, plain_cut_start[p + 1]):
            plain_entered[plain_start[q]] += 1
        for e in range(arrival_start[p] if p > first_set else 0, arrival_start[p + 1]):
            v = arrival_order[e]
            s = event_segment[v]
            base = segment_start[s]
            j = arrived_count[s]
            while j > 0 and arrived[base + j - 1] > v:  # insertion keeps the score order
                arrived[base + j] = arrived[base + j - 1]
                j -= 1
            arrived[base + j] = v
            arrived_count[s] += 1
        for c in range(n_categories):
            if p > first_set and not changed[p, c]:
                continue  # nothing of this category entered: its segments keep their sums
            running = 0
            for u in range(category_anchor_start[c], category_anchor_start[c + 1]):
                running += plain_entered[u]
                plain_before[u] = running
            n = npig[p, c]
            for s in range(c, n_segments, n_categories):
                segment_counted[s] = n > 0
                if n == 0:
                    continue
                found = 0
                false_events = 0
                base = segment_start[s]
                for k in range(arrived_count[s]):
                    v = arrived[base + k]
                    if true_positive[v]:
                        found += 1
                        precision[found - 1] = found / ((plain_before[anchor[v]] + false_events + found) + eps)
                    else:
                        false_events += 1
                for i in range(found - 2, -1, -1):
                    if precision[i + 1] > precision[i]:
                        precision[i] = precision[i + 1]
                total = 0.0
                i = 0
                for r in range(n_recall):
                    while i < found and (i + 1) / n < recall_thresholds[r]:
                        i += 1
                    if i < found:
                        total += precision[i]
                segment_sum[s] = total
        total = 0.0
        entries = 0
        for s in range(n_segments):
            if segment_counted[s]:
                total += segment_sum[s]
                entries += n_recall
        out[p - first_set] = total / entries if entries else -1.0
    return out


def nested_ap(merged, model: int, masks: np.ndarray, area: int, max_det: int, workers: int = 1) -> np.ndarray | None:
    """AP (all IoU thresholds, one area, one maxDets) of one model alone on each set of a chain.

    Args:
        merged: the models' ``accumulate.MergedEvaluations``.
        model: which of its models answers the images of the sets (the others answer none).
        masks: [P×I] bool, a growing chain (:func:`is_chain`).
        area, max_det: indices into the params' area ranges and maxDets.
        workers: threads, each walking a contiguous range of the sets (the compiled walk releases
            the GIL); the values do not depend on it.

    Returns:
        [P] AP per set (-1 where no category has gts), or None when numba is not installed.
    """
    if not AVAILABLE:
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
    # Only events that can be selected (rank under the cap, image in the last set), as compact arrays
    # in segment order (score order within a segment), then listed by the set they arrive in.
    usable = np.flatnonzero((events.rank < cap) & (arrival[events.owner] < n_sets))
    segment_start = np.searchsorted(events.segment[usable], np.arange(n_segments + 1))
    event_arrival = arrival[events.owner[usable]]
    by_arrival = np.argsort(event_arrival, kind="stable").astype(np.int32)
    arrival_start = np.searchsorted(event_arrival[by_arrival], np.arange(n_sets + 1))
    # Never-matched dts that count: in the area, under the cap, ranked above some matched dt.
    plain = merged.plain_in_range[area] & (merged.plain_rank < cap) & (merged.plain_start < merged.plain_stop)
    plain_arrival = arrival[np.repeat(np.arange(merged.n_owners), np.diff(merged.plain_owner_start))]
    chosen = np.flatnonzero(plain & (plain_arrival < n_sets))
    chosen = chosen[np.argsort(plain_arrival[chosen], kind="stable")]
    plain_cut_start = np.searchsorted(plain_arrival[chosen], np.arange(n_sets + 1))
    counted = merged.counted_gts.reshape(n_images, len(params.area_ranges), n_categories)[:, area]
    entering = np.zeros((n_sets + 1, n_categories))
    np.add.at(entering, arrival[model * n_images:(model + 1) * n_images], counted)
    npig = np.rint(np.cumsum(entering[:n_sets], axis=0)).astype(np.int64)
    # The categories each set changes: new gts, new matched dts, or new never-matched dts ranked above
    # a matched one. The others keep their segments' sums from the set before.
    changed = np.zeros((n_sets, n_categories), dtype=bool)
    changed[1:] = npig[1:] != npig[:-1]
    changed[event_arrival, events.segment[usable] % n_categories] = True
    changed[plain_arrival[chosen], merged.anchor_category[merged.plain_start[chosen]]] = True
    category_anchor_start = np.searchsorted(merged.anchor_category, np.arange(n_categories + 1))
    arguments = (
        by_arrival, arrival_start, events.segment[usable].astype(np.int32),
        events.true_positive[usable], events.anchor[usable].astype(np.int32),
        segment_start, n_categories, category_anchor_start, changed, plain_cut_start,
        merged.plain_start[chosen].astype(np.int32), npig, np.asarray(params.recall_thresholds, dtype=np.float64),
    )
    if workers <= 1 or n_sets < 2:
        return _walk(0, n_sets, *arguments)
    # Ranges of equal work: a set costs about the events it holds (later sets hold more).
    work = np.cumsum(arrival_start[1:] + n_segments, dtype=np.float64)
    cuts = np.unique(np.searchsorted(work, np.linspace(0, work[-1], workers + 1)[1:-1]))
    cuts = np.concatenate([[0], cuts[(cuts > 0) & (cuts < n_sets)], [n_sets]])
    with ThreadPoolExecutor(len(cuts) - 1) as pool:
        parts = pool.map(lambda first, stop: _walk(first, stop, *arguments), cuts[:-1], cuts[1:])
        return np.concatenate(list(parts))
