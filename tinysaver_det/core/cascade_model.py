"""The one offline cascade model: K >= 2 models, cheapest first, one exit threshold per stage but the last.

The rule generalises TinySaver's: stage ``k`` (``k < K-1``) answers a sample when its confidence
is ``>= thresholds[k]`` (:class:`~tinysaver_det.core.policy.ExitPolicy`), and then no later model
runs; the last stage answers every sample that reaches it. A sample answered at stage ``k`` costs
``c_0 + ... + c_k``. The saver/base cascade of the paper is K = 2, and :func:`sweep` is that view:
one threshold per row, the exit ratio is the share the saver answers.

The simulation takes every model's confidence on every sample (computed once from cached
predictions or records) and one metric protocol (:class:`SelectionMetric`) that scores any
assignment of samples to models, so a sweep needs no model run. Every sweep gives
:class:`StageRow` rows; :func:`tinysaver_det.core.picker.pick` picks a row off them (a :class:`~tinysaver_det.core.picker.TargetPick`).

Costs may be scalars (classification: every sample costs the same) or per-sample arrays (detection:
GFLOPs depend on the input shape).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from tinysaver_det.core.policy import ExitPolicy


#: Thresholds the paper reports (Sec. 4.5); they lie on the 0.01 grid and are listed so that a coarser
#: grid still contains them.
PAPER_THRESHOLDS = (0.25, 0.26, 0.34, 0.37, 0.69)


#: The cost unit of :func:`sweep`'s rows (its costs have no unit of their own).
COST = "cost"

#: A cost unit every row has: the share of samples that reach the last (costliest) model, i.e. the
#: base's calls per sample. Minimising it maximises the exit ratio
#: (:meth:`tinysaver_det.core.picker.Target.cost`).
DEFERRED = "deferred"


@runtime_checkable
class SelectionMetric(Protocol):
    """The performance of a K-model cascade over ``n_samples`` samples, for any per-sample choice of model.

    Every model's answer for every sample is known in advance; a routing says which model answers
    each sample. Values are fractions (accuracy in [0, 1], AP in [0, 1]); higher is better.

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

    def subset_many(self, model: int, masks: np.ndarray) -> np.ndarray:
        """``(P,)`` the primary metric of model ``model`` alone on the samples of each row of a ``(P, N)``
        bool array (``r_match`` compares the saver and the base on the samples that exit)."""
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


def _model_cost(cost, n: int, k: int) -> np.ndarray | float:
    values = np.asarray(cost, dtype=np.float64)
    if values.ndim and values.shape != (n,):
        raise ValueError(f"cost of model {k} must be a scalar or have one value per sample ({n}), got {values.shape}")
    return float(values) if not values.ndim else values


def multistage_cost(stages, costs: Sequence) -> np.ndarray | float:
    """Mean cost per sample: a sample answered at stage ``k`` paid models ``0..k``.

    Written as Eq. 1 of the paper stage by stage: the first model's mean cost, plus, for each later
    model, the share of samples that reach it times its mean cost over those samples. With two
    models and scalar costs this is exactly :func:`~tinysaver_det.core.cost.expected_cost`
    ``C_S + (1 - r) C_B``.

    Args:
        stages: ``(N,)`` or ``(P, N)`` stage indices (:func:`stage_indices`).
        costs: one entry per model, a scalar or ``(N,)`` per-sample costs.

    >>> multistage_cost([0, 1, 2, 2], [1.0, 10.0, 100.0])  # (1 + 11 + 111 + 111) / 4
    58.5
    >>> multistage_cost([0, 1], [[1.0, 3.0], [10.0, 30.0]])  # (1 + 3) / 2 + 30 / 2
    17.0
    """
    stages = np.asarray(stages, dtype=np.int64)
    single = stages.ndim == 1
    stages = np.atleast_2d(stages)
    n = stages.shape[1]
    if n == 0:
        return 0.0 if single else np.zeros(len(stages))
    if stages.size and (stages.min() < 0 or stages.max() >= len(costs)):
        raise ValueError(f"stage indices must be in 0..{len(costs) - 1}")
    model_costs = [_model_cost(cost, n, k) for k, cost in enumerate(costs)]
    first = model_costs[0]
    total = np.full(len(stages), first if np.ndim(first) == 0 else float(first.mean()))
    for k, cost in enumerate(model_costs[1:], start=1):
        reached = stages >= k  # (P, N): the samples model k ran on
        per_sample = cost if np.ndim(cost) == 0 else (reached @ cost) / np.maximum(reached.sum(axis=1), 1)
        total = total + (1 - (stages < k).mean(axis=1)) * per_sample
    return float(total[0]) if single else total


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
    """One threshold vector of a sweep: the one row type of every offline study.

    Attributes:
        thresholds: one per stage but the last (none: the last model alone).
        stage_ratios: share of samples answered at each stage (sums to 1).
        costs: mean cost per sample in each unit asked for (e.g. ``{"GFLOPs": 1.2, "ms": 30.1}``;
            :func:`sweep`'s rows have the one unit :data:`COST`).
        metrics: the metric's dict for this routing.

    >>> row = StageRow((0.5,), (0.25, 0.75), {"cost": 8.5}, {"top1": 0.9})
    >>> row.threshold, row.exit_ratio, row.cost
    (0.5, 0.25, 8.5)
    """

    thresholds: tuple[float, ...]
    stage_ratios: tuple[float, ...]
    costs: dict[str, float]
    metrics: dict[str, float]

    @property
    def threshold(self) -> float:
        """The threshold of a two-model row (the saver's)."""
        if len(self.thresholds) != 1:
            raise ValueError(f"a row of {len(self.thresholds) + 1} stages has {len(self.thresholds)} thresholds, not one")
        return self.thresholds[0]

    @property
    def exit_ratio(self) -> float:
        """Share of samples answered before the last stage (two models: the saver's share)."""
        return float(sum(self.stage_ratios[:-1]))

    @property
    def cost(self) -> float:
        """The mean cost per sample of a row with one cost unit (:func:`sweep`'s)."""
        if len(self.costs) != 1:
            raise ValueError(f"this row has costs in {sorted(self.costs)}: name the unit")
        return next(iter(self.costs.values()))


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


def checked_confidences(confidences) -> np.ndarray:
    """``confidences`` as a 1-D float64 array, refusing another shape or a NaN (naming the problem)."""
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.ndim != 1:
        raise ValueError(f"confidences must be a 1-D array (one per sample), got shape {conf.shape}")
    if np.isnan(conf).any():
        raise ValueError("confidences contain NaN; a sample with no answer has confidence 0.0, not NaN")
    return conf


def sweep(confidences, thresholds, metric: SelectionMetric, cost_saver, cost_base) -> list[StageRow]:
    """The saver/base cascade at every threshold: :func:`multistage_sweep` with K = 2 and one cost unit.

    The cascade's mean cost is ``mean(c_saver) + sum(c_base[~exit]) / N``: the saver always runs,
    the base only on the samples that did not exit (with scalar costs, ``expected_cost(r, C_S, C_B)``).

    Args:
        confidences: (N,) saver confidence per sample (classification: max softmax; detection:
            :func:`~tinysaver_det.core.policy.image_confidence`).
        thresholds: the grid to evaluate, e.g. :func:`default_thresholds`.
        metric: scores a routing of the N samples to the two models (0: saver, 1: base).
        cost_saver: scalar or (N,) cost of the saver.
        cost_base: scalar or (N,) cost of the base.

    Returns:
        One :class:`StageRow` per threshold, in the given order, costs under :data:`COST`.

    >>> from tinysaver_det.classification import AccuracyMetric  # the saver is right on 0-1, the base on 0-2
    >>> metric = AccuracyMetric(saver_correct=[1, 1, 0], base_correct=[1, 1, 1])
    >>> [(r.threshold, r.exit_ratio, r.cost, r.metrics["top1"])
    ...  for r in sweep([0.9, 0.8, 0.1], [0.0, 0.5], metric, 1.0, 10.0)]
    [(0.0, 1.0, 1.0, 0.6666666666666666), (0.5, 0.6666666666666666, 4.333333333333334, 1.0)]
    """
    conf = checked_confidences(confidences)
    if metric.n_samples != len(conf):
        raise ValueError(f"metric covers {metric.n_samples} samples but {len(conf)} confidences were given")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1, 1)
    return multistage_sweep(conf[None], thresholds, metric, {COST: [cost_saver, cost_base]})


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


def stage_front(rows: Sequence[StageRow], unit: str, primary: str) -> list[StageRow]:
    """The rows on the Pareto front of (cost in ``unit``, ``primary``), by rising cost."""
    index = pareto_front([r.costs[unit] for r in rows], [r.metrics[primary] for r in rows])
    return [rows[i] for i in index]
