"""Choosing a saver for a base model (TinySaver Sec. 4.3, Eq. 6 and Eq. 10, Table 2).

The saver answers the samples it is most confident on. Ranked by the saver's confidence, the top-r
samples are the ones that exit at some threshold; on them, the saver should do no worse than the
base would have. ``r_match`` (Eq. 6) is the largest such exit ratio, and the training-time
estimate of the cost change of adding the saver (Eq. 10) is

    dC_tr = C_S / C_B - r_match

(cascade cost ``C_S + (1 - r) C_B`` relative to ``C_B``, minus 1). The candidate with the lowest
``dC_tr`` on the training split is chosen; ``dC_tr >= 0`` means no saving is expected from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinysaver_det.core.cascade_model import SelectionMetric, checked_confidences, stage_indices_many

#: The two models of a saver/base metric, by their index in the cascade.
SAVER, BASE = 0, 1


def _mean_cost(cost, n: int, name: str) -> float:
    """A scalar as is (no rounding from averaging copies), else the mean of one value per sample."""
    if np.ndim(cost) == 0:
        return float(cost)
    values = np.asarray(cost, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per sample ({n}), got shape {values.shape}")
    return float(values.mean())


@dataclass(frozen=True)
class RMatch:
    """``r_match`` and the curve it was read from (paper Fig. 3).

    The curve has one point per non-empty exit set, by rising exit ratio (falling threshold).

    Attributes:
        r_match: largest exit ratio at which the saver is no worse than the base on the exited
            samples; 0.0 when no non-empty exit set qualifies.
        threshold: the threshold giving ``r_match``; None when ``r_match`` is 0.0.
        thresholds: (P,) the cut points of the curve.
        exit_ratios: (P,) fraction of all samples exiting at each cut point.
        saver: (P,) the saver's primary metric on the exited samples.
        base: (P,) the base's primary metric on the same samples.
        search: how the cut points were chosen, for the output: every distinct confidence (exact)
            or a given grid.
    """

    r_match: float
    threshold: float | None
    thresholds: np.ndarray
    exit_ratios: np.ndarray
    saver: np.ndarray
    base: np.ndarray
    search: str = ""


def r_match(confidences, metric: SelectionMetric, thresholds=None) -> RMatch:
    """Largest exit ratio where the saver matches the base on the exited samples (paper Eq. 6).

    For each cut point ``t`` the exited subset is ``conf >= t`` (the cascade rule of
    :class:`~tinysaver_det.core.policy.ExitPolicy`), so samples with equal confidence always enter
    the subset together and the exit ratios are those the cascade can actually reach. The saver
    matches when ``metric.subset_many(0, masks) >= metric.subset_many(1, masks)`` (model 0 is the
    saver, 1 the base), one call per model for all cut points.

    Which cut points:
        * ``thresholds=None`` (default): every distinct confidence. This is exact (no ratio between
          two cut points is reachable) and costs two ``subset`` calls per distinct value, cheap for
          accuracy.
        * a grid (e.g. :func:`~tinysaver_det.core.cascade_model.default_thresholds`): ``r_match`` is
          then the best ratio reachable on the grid, which can differ from the exact one.

    Empty subsets (r = 0, or grid thresholds above every confidence) are left out of the curve:
    there the saver answers nothing and loses nothing, so r = 0 always matches and is the result
    when no non-empty subset does. The result is the *largest* matching ratio even when the two
    curves cross more than once; the authors' script instead stops at the first crossing when
    scanning down from ``t = 1``, which can give a smaller ratio on noisy curves.

    Args:
        confidences: (N,) the saver's confidence per sample.
        metric: pairs this saver with the base over the same N samples.
        thresholds: cut points, or None for every distinct confidence.

    >>> from tinysaver_det.classification import AccuracyMetric
    >>> metric = AccuracyMetric(saver_correct=[1, 1, 0, 1], base_correct=[1, 1, 1, 1])
    >>> result = r_match([0.9, 0.8, 0.6, 0.3], metric)  # subsets: {0}, {0, 1} match; {0, 1, 2} does not
    >>> result.r_match, result.threshold, result.exit_ratios.tolist()
    (0.5, 0.8, [0.25, 0.5, 0.75, 1.0])
    >>> result.search
    'over every distinct confidence (4 non-empty exit sets; exact)'
    """
    conf = checked_confidences(confidences)
    if metric.n_samples != len(conf):
        raise ValueError(f"metric covers {metric.n_samples} samples but {len(conf)} confidences were given")
    cuts = np.unique(conf) if thresholds is None else np.unique(np.asarray(thresholds, dtype=np.float64))
    cuts = cuts[::-1]  # falling threshold: rising exit ratio
    masks = stage_indices_many(conf[None], cuts[:, None]) == SAVER  # the cascade's own rule, conf >= t
    nonempty = masks.any(axis=1)
    cuts, masks = cuts[nonempty], masks[nonempty]
    saver, base = (
        np.asarray(metric.subset_many(model, masks), dtype=np.float64) if len(masks) else np.zeros(0)
        for model in (SAVER, BASE)
    )
    ratios = masks.mean(axis=1)
    matched = np.flatnonzero(saver >= base)
    if matched.size:
        best = matched[-1]
        ratio, threshold = float(ratios[best]), float(cuts[best])
    else:
        ratio, threshold = 0.0, None
    if thresholds is None:
        search = f"over every distinct confidence ({len(cuts)} non-empty exit sets; exact)"
    else:
        search = f"over a grid of {len(cuts)} non-empty exit sets (the best ratio that grid reaches)"
    return RMatch(ratio, threshold, cuts, ratios, saver, base, search)


def delta_cost_tr(r_match: float, cost_saver: float, cost_base: float) -> float:
    """Training-time estimate of the relative cost change of adding the saver: ``C_S / C_B - r_match`` (Eq. 10).

    Negative means the cascade is expected to be cheaper than the base alone at no loss.

    >>> delta_cost_tr(0.5, 1.0, 10.0)
    -0.4
    """
    if cost_base <= 0:
        raise ValueError(f"cost_base must be > 0, got {cost_base!r}")
    return cost_saver / cost_base - r_match


@dataclass(frozen=True)
class SaverCandidate:
    """One saver to consider, evaluated on the selection (training) split.

    Attributes:
        name: how the report names it.
        confidences: (N,) its confidence per sample.
        metric: pairs it with the base over the same N samples.
        cost: its cost, a scalar or one value per sample (the mean is used).
    """

    name: str
    confidences: np.ndarray
    metric: SelectionMetric
    cost: float | np.ndarray


@dataclass(frozen=True)
class CandidateReport:
    """One row of Table 2.

    Attributes:
        name: the candidate's name.
        cost: its mean cost per sample (``C_S``).
        relative_cost: ``C_S / C_B``.
        r_match: see :func:`r_match`.
        delta_cost_tr: ``C_S / C_B - r_match``.
        threshold: the threshold giving ``r_match`` (None when it is 0).
    """

    name: str
    cost: float
    relative_cost: float
    r_match: float
    delta_cost_tr: float
    threshold: float | None


@dataclass(frozen=True)
class SelectionReport:
    """The result of :func:`select_saver`: every candidate's row and the name of the chosen one."""

    base_cost: float
    candidates: tuple[CandidateReport, ...]
    chosen: str

    @property
    def chosen_report(self) -> CandidateReport:
        """The chosen candidate's row."""
        return next(c for c in self.candidates if c.name == self.chosen)


def select_saver(candidates: Sequence[SaverCandidate], cost_base, thresholds=None) -> SelectionReport:
    """Pick the candidate with the lowest ``dC_tr`` (paper Table 2); ties go to the cheaper, then the first.

    Args:
        candidates: the pool, each evaluated against the same base on the selection split.
        cost_base: the base's cost, a scalar or one value per sample (the mean is used).
        thresholds: cut points for :func:`r_match`; None for every distinct confidence.

    Returns:
        The per-candidate report (input order) and the chosen name. The lowest ``dC_tr`` is chosen
        even when it is not negative; the report shows whether any saving is expected.

    >>> from tinysaver_det.classification import AccuracyMetric
    >>> conf, base = [0.9, 0.8, 0.6, 0.3], [1, 1, 1, 1]
    >>> report = select_saver([SaverCandidate("tiny", conf, AccuracyMetric([1, 0, 0, 0], base), 1.0),
    ...                        SaverCandidate("small", conf, AccuracyMetric([1, 1, 1, 0], base), 3.0)], 10.0)
    >>> report.chosen, [round(c.delta_cost_tr, 2) for c in report.candidates]
    ('small', [-0.15, -0.45])
    """
    if not candidates:
        raise ValueError("select_saver needs at least one candidate")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}")
    n = candidates[0].metric.n_samples
    base = _mean_cost(cost_base, n, "cost_base")
    rows = []
    for candidate in candidates:
        cost = _mean_cost(candidate.cost, len(candidate.confidences), f"cost of {candidate.name!r}")
        match = r_match(candidate.confidences, candidate.metric, thresholds)
        rows.append(
            CandidateReport(
                name=candidate.name,
                cost=cost,
                relative_cost=cost / base,
                r_match=match.r_match,
                delta_cost_tr=delta_cost_tr(match.r_match, cost, base),
                threshold=match.threshold,
            )
        )
    chosen = min(rows, key=lambda row: (row.delta_cost_tr, row.cost))
    return SelectionReport(base_cost=base, candidates=tuple(rows), chosen=chosen.name)
