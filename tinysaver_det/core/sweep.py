"""Threshold sweeps of a two-model cascade, for any task (numpy and the standard library only).

A sweep simulates the cascade offline: both models have already run on every sample, so for each
threshold ``t`` the cascade's answer is picked per sample (the saver's where ``conf >= t``, the
base's elsewhere) and scored by a :class:`SystemMetric`. The task (classification accuracy,
detection COCO AP) only enters through that protocol, so the same sweep, cost model and Pareto
front serve every task.

Costs may be scalars (classification: every image costs the same) or per-sample arrays (detection:
GFLOPs depend on the input shape). The cascade's mean cost is ``mean(c_saver) + sum(c_base[~exit]) / N``:
the saver always runs, the base only on the samples that did not exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from tinysaver_det.core.cost import expected_cost
from tinysaver_det.core.policy import ExitPolicy

#: Thresholds the paper reports (Sec. 4.5); they lie on the 0.01 grid and are listed so that a coarser
#: grid still contains them.
PAPER_THRESHOLDS = (0.25, 0.26, 0.34, 0.37, 0.69)


@runtime_checkable
class SystemMetric(Protocol):
    """The performance of a cascade, for one task, over a fixed set of ``n_samples`` samples.

    Both models' answers for every sample are known in advance; an exit mask says whose answer
    each sample gets. Values are fractions (accuracy in [0, 1], AP in [0, 1]); higher is better.

    Attributes:
        primary: key of the headline metric in :meth:`routed`'s dict, e.g. ``"top1"`` or ``"AP"``.
        n_samples: number of samples the masks must cover.

    A metric that scores many masks faster together than one by one (COCO AP) may also define
    ``routed_many(exit_masks) -> list[dict]`` over a (T, N) stack; :func:`sweep` uses it when present.
    """

    primary: str
    n_samples: int

    def routed(self, exit_mask: np.ndarray) -> dict[str, float]:
        """Metrics of the cascade: ``True`` -> the saver's answer, ``False`` -> the base's."""
        ...

    def subset(self, model: str, mask: np.ndarray) -> float:
        """Primary metric of one model (``"saver"`` or ``"base"``) on the samples where ``mask`` is True."""
        ...


@dataclass(frozen=True)
class SweepRow:
    """One threshold of a sweep.

    Attributes:
        threshold: the exit threshold ``t`` (a sample exits when ``conf >= t``).
        exit_ratio: fraction of samples answered by the saver.
        cost: mean cost per sample of the cascade (saver always, base on the samples not exited).
        metrics: the :class:`SystemMetric`'s ``routed`` dict for this threshold.
    """

    threshold: float
    exit_ratio: float
    cost: float
    metrics: dict[str, float]


def default_thresholds(steps: int = 100) -> np.ndarray:
    """The sweep grid: ``k / steps`` for ``k = 0..steps`` plus :data:`PAPER_THRESHOLDS`, sorted, unique.

    Values are built from integers (``26 / 100``), so ``0.26`` in the grid is exactly the literal
    ``0.26`` and a row can be looked up with ``==``.

    >>> grid = default_thresholds()
    >>> len(grid), grid[:3].tolist(), grid[-1].item(), 0.69 in grid
    (101, [0.0, 0.01, 0.02], 1.0, True)
    >>> default_thresholds(4).tolist()
    [0.0, 0.25, 0.26, 0.34, 0.37, 0.5, 0.69, 0.75, 1.0]
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    grid = np.arange(steps + 1) / steps
    return np.unique(np.concatenate([grid, np.asarray(PAPER_THRESHOLDS, dtype=np.float64)]))


def _confidences(confidences) -> np.ndarray:
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.ndim != 1:
        raise ValueError(f"confidences must be a 1-D array (one per sample), got shape {conf.shape}")
    if np.isnan(conf).any():
        raise ValueError("confidences contain NaN; a sample with no answer has confidence 0.0, not NaN")
    return conf


def exit_masks(confidences, thresholds) -> np.ndarray:
    """Exit decisions of every sample at every threshold, as a ``(T, N)`` bool array.

    Each row is :meth:`ExitPolicy.exits` of one threshold, so the offline sweep uses the very rule
    the online cascade runs (``conf >= t``). Samples with equal confidence always exit together,
    and a sample with confidence 0.0 (a detector that found nothing) exits only at ``t = 0``.

    >>> exit_masks([0.0, 0.5, 0.5, 0.9], [0.0, 0.5, 0.6]).astype(int)
    array([[1, 1, 1, 1],
           [0, 1, 1, 1],
           [0, 0, 0, 1]])
    """
    conf = _confidences(confidences)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    masks = np.empty((len(thresholds), len(conf)), dtype=bool)
    for row, threshold in zip(masks, thresholds):
        row[:] = ExitPolicy(threshold).exits(conf)
    return masks


def _per_sample(cost, n: int, name: str) -> np.ndarray:
    values = np.asarray(cost, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per sample ({n}), got shape {values.shape}")
    return values


def _mean_cost(cost, n: int, name: str) -> float:
    """A scalar as is (no rounding from averaging copies), else the mean of one value per sample."""
    return float(cost) if np.ndim(cost) == 0 else float(_per_sample(cost, n, name).mean())


def cascade_cost(exit_mask, cost_saver, cost_base):
    """Mean cost per sample of the cascade for one ``(N,)`` mask (a float) or ``(T, N)`` masks (``(T,)``).

    ``mean(c_saver) + sum(c_base[~exit]) / N``, written as :func:`expected_cost` with the saver's mean
    cost and the base's mean cost over the samples it actually sees; with scalar costs this is
    exactly ``expected_cost(r, C_S, C_B)``.

    Args:
        exit_mask: bool, True where the sample exits at the saver.
        cost_saver: scalar, or one cost per sample.
        cost_base: scalar, or one cost per sample.

    >>> cascade_cost([True, True, False, False], 1.0, 10.0)
    6.0
    >>> cascade_cost([True, False], [1.0, 3.0], [10.0, 30.0])  # (1 + 3) / 2 + 30 / 2
    17.0
    """
    masks = np.asarray(exit_mask, dtype=bool)
    if masks.ndim not in (1, 2) or masks.shape[-1] == 0:
        raise ValueError(f"exit_mask must have shape (N,) or (T, N) with N >= 1, got {masks.shape}")
    n = masks.shape[-1]
    deferred = ~masks
    if np.ndim(cost_base) == 0:
        base_per_deferred = float(cost_base)
    else:
        base = _per_sample(cost_base, n, "cost_base")
        base_per_deferred = (deferred @ base) / np.maximum(deferred.sum(axis=-1), 1)
    cost = expected_cost(masks.mean(axis=-1), _mean_cost(cost_saver, n, "cost_saver"), base_per_deferred)
    return float(cost) if masks.ndim == 1 else np.asarray(cost, dtype=np.float64)


def sweep(confidences, thresholds, metric: SystemMetric, cost_saver, cost_base) -> list[SweepRow]:
    """Simulate the cascade at every threshold: exit ratio, mean cost and the metric's dict.

    Args:
        confidences: (N,) saver confidence per sample (classification: max softmax; detection:
            :func:`~tinysaver_det.core.policy.image_confidence`).
        thresholds: the grid to evaluate, e.g. :func:`default_thresholds`.
        metric: scores a routing of the N samples.
        cost_saver: scalar or (N,) cost of the saver.
        cost_base: scalar or (N,) cost of the base.

    Returns:
        One :class:`SweepRow` per threshold, in the given order.

    >>> from tinysaver_det.classification import AccuracyMetric  # the saver is right on 0-1, the base on 0-2
    >>> metric = AccuracyMetric(saver_correct=[1, 1, 0], base_correct=[1, 1, 1])
    >>> [(r.threshold, r.exit_ratio, r.cost, r.metrics["top1"])
    ...  for r in sweep([0.9, 0.8, 0.1], [0.0, 0.5], metric, 1.0, 10.0)]
    [(0.0, 1.0, 1.0, 0.6666666666666666), (0.5, 0.6666666666666666, 4.333333333333334, 1.0)]
    """
    conf = _confidences(confidences)
    if metric.n_samples != len(conf):
        raise ValueError(f"metric covers {metric.n_samples} samples but {len(conf)} confidences were given")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    masks = exit_masks(conf, thresholds)
    costs = cascade_cost(masks, cost_saver, cost_base)
    ratios = masks.mean(axis=1)
    routed_many = getattr(metric, "routed_many", None)
    metrics = routed_many(masks) if routed_many else [metric.routed(m) for m in masks]
    return [SweepRow(float(t), float(r), float(c), dict(m)) for t, r, c, m in zip(thresholds, ratios, costs, metrics)]


def pareto_front(costs: Sequence[float], performances: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats (lower cost, higher performance), by rising cost.

    A point is kept when no point has ``cost <=`` and ``performance >=`` with one of them strict.
    Ties are resolved stably: of several identical points only the first (lowest index) is kept,
    and of points with equal cost only the best performing one. NaN points are never on the front.

    >>> pareto_front([3, 1, 2, 2, 1], [0.9, 0.5, 0.8, 0.7, 0.5]).tolist()
    [1, 2, 0]
    """
    cost = np.asarray(costs, dtype=np.float64).reshape(-1)
    perf = np.asarray(performances, dtype=np.float64).reshape(-1)
    if cost.shape != perf.shape:
        raise ValueError(f"costs ({cost.size}) and performances ({perf.size}) must have the same length")
    valid = np.flatnonzero(~(np.isnan(cost) | np.isnan(perf)))
    # Rising cost, then falling performance, then input order: the first point of each cost is its best.
    order = valid[np.lexsort((valid, -perf[valid], cost[valid]))]
    front, best = [], -np.inf
    for index in order:
        if perf[index] > best:
            front.append(int(index))
            best = perf[index]
    return np.asarray(front, dtype=np.int64)
