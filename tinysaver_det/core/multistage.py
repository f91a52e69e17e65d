"""Cascades of K >= 2 models, cheapest first, with one exit threshold per stage but the last.

The rule generalises TinySaver's: stage ``k`` (``k < K-1``) answers an image when its confidence
is ``>= thresholds[k]`` (:class:`~tinysaver_det.core.policy.ExitPolicy`), and then no later model
runs; the last stage answers every image that reaches it. An image answered at stage ``k`` costs
``c_0 + ... + c_k``. With K = 2 this is exactly the saver/base cascade.

The offline simulation here takes every model's confidence on every image (computed once from
cached predictions) and a metric that scores any assignment of images to models
(:class:`SelectionMetric`), so a sweep over threshold vectors needs no model run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from tinysaver_det.core.policy import ExitPolicy
from tinysaver_det.core.sweep import pareto_front


@runtime_checkable
class SelectionMetric(Protocol):
    """The performance of a K-model cascade over ``n_samples`` samples, for any per-sample choice of model.

    Attributes:
        primary: key of the headline metric (``"AP"``, ``"top1"``).
        n_models: K, the models in cascade order.
        n_samples: N.
    """

    primary: str
    n_models: int
    n_samples: int

    def selected_many(self, stages: np.ndarray) -> list[dict[str, float]]:
        """Metrics for each row of an ``(S, N)`` int array: the model answering each sample."""
        ...


def _confidence_matrix(confidences, n_stages: int | None = None) -> np.ndarray:
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.ndim == 1:
        conf = conf[None]
    if conf.ndim != 2:
        raise ValueError(f"confidences must have shape (K-1, N), got {conf.shape}")
    if n_stages is not None and len(conf) != n_stages:
        raise ValueError(
            f"{len(conf)} rows of confidences for {n_stages} thresholds: give one row per stage but the last"
        )
    if np.isnan(conf).any():
        raise ValueError("confidences contain NaN; a stage with no answer has confidence 0.0, not NaN")
    return conf


def stage_indices(confidences, thresholds) -> np.ndarray:
    """The stage answering each sample: the first ``k`` with ``conf[k] >= thresholds[k]``, else the last.

    Args:
        confidences: ``(K-1, N)``, the confidence of stage ``k`` on each sample (a 1-D array is K = 2).
        thresholds: ``(K-1,)``, one per stage but the last.

    Returns:
        ``(N,)`` int64 in ``0..K-1``.

    >>> stage_indices([[0.9, 0.2, 0.2, 0.0], [0.1, 0.8, 0.3, 0.9]], [0.5, 0.5]).tolist()
    [0, 1, 2, 1]
    """
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    conf = _confidence_matrix(confidences, len(thresholds))
    stages = np.full(conf.shape[1], len(thresholds), dtype=np.int64)
    undecided = np.ones(conf.shape[1], dtype=bool)
    for k, (row, threshold) in enumerate(zip(conf, thresholds)):
        exits = ExitPolicy(threshold).exits(row) & undecided
        stages[exits] = k
        undecided &= ~exits
    return stages


def stage_indices_many(confidences, threshold_vectors) -> np.ndarray:
    """:func:`stage_indices` for each row of a ``(P, K-1)`` array of threshold vectors: ``(P, N)``."""
    vectors = np.asarray(threshold_vectors, dtype=np.float64)
    if vectors.ndim == 1:
        vectors = vectors[:, None]
    conf = _confidence_matrix(confidences, vectors.shape[1])
    if not len(vectors):
        return np.zeros((0, conf.shape[1]), np.int64)
    return np.stack([stage_indices(conf, vector) for vector in vectors])


def _cost_matrix(costs, n_models: int, n: int) -> np.ndarray:
    if len(costs) != n_models:
        raise ValueError(f"{len(costs)} costs for {n_models} models: give one (scalar or per sample) per model")
    matrix = np.empty((n_models, n), dtype=np.float64)
    for k, cost in enumerate(costs):
        values = np.asarray(cost, dtype=np.float64)
        if values.ndim and values.shape != (n,):
            raise ValueError(
                f"cost of model {k} must be a scalar or have one value per sample ({n}), got {values.shape}"
            )
        matrix[k] = values
    return matrix


def multistage_cost(stages, costs: Sequence) -> np.ndarray | float:
    """Mean cost per sample: a sample answered at stage ``k`` paid models ``0..k``.

    Args:
        stages: ``(N,)`` or ``(P, N)`` stage indices (:func:`stage_indices`).
        costs: one entry per model, a scalar or ``(N,)`` per-sample costs.

    >>> multistage_cost([0, 1, 2, 2], [1.0, 10.0, 100.0])  # (1 + 11 + 111 + 111) / 4
    58.5
    """
    stages = np.asarray(stages, dtype=np.int64)
    single = stages.ndim == 1
    stages = np.atleast_2d(stages)
    cumulative = np.cumsum(_cost_matrix(costs, len(costs), stages.shape[1]), axis=0)
    if stages.size and (stages.min() < 0 or stages.max() >= len(costs)):
        raise ValueError(f"stage indices must be in 0..{len(costs) - 1}")
    per_sample = cumulative[stages, np.arange(stages.shape[1])]  # (P, N): cost paid by sample i under row p
    result = per_sample.mean(axis=1) if stages.shape[1] else np.zeros(len(stages))
    return float(result[0]) if single else result


def threshold_grid(*per_stage: Sequence[float]) -> np.ndarray:
    """Every combination of per-stage thresholds, as a ``(P, K-1)`` array (the last stage varies fastest).

    >>> threshold_grid([0.2, 0.4], [0.5]).tolist()
    [[0.2, 0.5], [0.4, 0.5]]
    """
    if not per_stage:
        raise ValueError("threshold_grid needs one sequence of thresholds per stage but the last")
    return np.array(list(itertools.product(*(np.asarray(g, dtype=np.float64).reshape(-1) for g in per_stage))),
                    dtype=np.float64).reshape(-1, len(per_stage))


@dataclass(frozen=True)
class StageRow:
    """One threshold vector of a multi-stage sweep.

    Attributes:
        thresholds: one per stage but the last.
        stage_ratios: share of samples answered at each stage (sums to 1).
        costs: mean cost per sample in each unit asked for (e.g. ``{"GFLOPs": 1.2, "ms": 30.1}``).
        metrics: the metric's dict for this routing.
    """

    thresholds: tuple[float, ...]
    stage_ratios: tuple[float, ...]
    costs: dict[str, float]
    metrics: dict[str, float]


def multistage_sweep(
    confidences, threshold_vectors, metric: SelectionMetric, costs: Mapping[str, Sequence]
) -> list[StageRow]:
    """Simulate the K-stage cascade at every threshold vector.

    Args:
        confidences: ``(K-1, N)``, each non-final stage's confidence per sample.
        threshold_vectors: ``(P, K-1)`` (e.g. :func:`threshold_grid`).
        metric: scores any assignment of samples to models.
        costs: ``{unit: [cost of model 0, ..., cost of model K-1]}``, each a scalar or ``(N,)``.

    Returns:
        One :class:`StageRow` per threshold vector, in the given order.

    >>> class Right:  # model k is right on the samples listed; top1 of the routed answers
    ...     primary, n_models, n_samples = "top1", 3, 4
    ...     right = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    ...     def selected_many(self, stages):
    ...         return [{"top1": float(self.right[s, np.arange(4)].mean())} for s in stages]
    >>> rows = multistage_sweep([[0.9, 0.1, 0.1, 0.1], [0.9, 0.8, 0.2, 0.2]], [[0.5, 0.5]], Right(),
    ...                         {"cost": [1.0, 10.0, 100.0]})
    >>> rows[0].stage_ratios, rows[0].costs, rows[0].metrics
    ((0.25, 0.25, 0.5), {'cost': 58.5}, {'top1': 1.0})
    """
    vectors = np.asarray(threshold_vectors, dtype=np.float64)
    vectors = vectors[:, None] if vectors.ndim == 1 else vectors
    conf = _confidence_matrix(confidences, vectors.shape[1])
    n_models = vectors.shape[1] + 1
    if metric.n_models != n_models or metric.n_samples != conf.shape[1]:
        raise ValueError(
            f"metric covers {metric.n_models} models x {metric.n_samples} samples, "
            f"but the confidences give {n_models} models x {conf.shape[1]} samples"
        )
    stages = stage_indices_many(conf, vectors)
    unit_costs = {unit: np.atleast_1d(multistage_cost(stages, model_costs)) for unit, model_costs in costs.items()}
    ratios = np.stack([(stages == k).mean(axis=1) for k in range(n_models)], axis=1) if len(stages) else []
    results = metric.selected_many(stages) if len(stages) else []
    return [
        StageRow(tuple(map(float, vector)), tuple(map(float, ratio)),
                 {unit: float(values[i]) for unit, values in unit_costs.items()}, dict(result))
        for i, (vector, ratio, result) in enumerate(zip(vectors, ratios, results))
    ]


def stage_front(rows: Sequence[StageRow], unit: str, primary: str) -> list[StageRow]:
    """The rows on the Pareto front of (cost in ``unit``, ``primary``), by rising cost."""
    index = pareto_front([r.costs[unit] for r in rows], [r.metrics[primary] for r in rows])
    return [rows[i] for i in index]
