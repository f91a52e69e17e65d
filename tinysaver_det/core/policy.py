"""The cascade rule, in one place.

TinySaver (Wang et al., 2024, Sec. 4.5) turns a detector's box scores into one number per image,
the *image confidence*: the mean score of the boxes scoring at least ``min_score`` (0.05), or 0.0
when no box is left. An image *exits* at the saver when its confidence is ``>= threshold``
(paper Eq. 6 uses ``Conf >= t``), and then the saver's full detection list is its answer: the
0.05 floor only feeds the confidence, it never filters the returned boxes.

The online cascade, the offline sweeps and the mmdet plug-in all call this module, so they
cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable, Mapping

import numpy as np

DEFAULT_MIN_SCORE = 0.05

ConfidenceFunction = Callable[..., float]


def _kept_scores(scores, min_score: float) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    return scores[scores >= min_score]


def correctly_rounded_mean(values) -> float:
    """The float nearest the exact mean of ``values`` (ties to even); equal values give that value.

    ``np.mean`` rounds twice, the sum and then the quotient, so three boxes scoring 0.37 have the mean
    0.36999999999999994 and the image would not exit at ``t = 0.37``. Here the rounding happens once:
    the exact sum of floats is a rational number, :func:`math.fsum` gives it correctly rounded, and
    when that sum is exact (its residual is 0, the usual case for scores: float32 values of a few
    hundred boxes add up exactly in float64) one IEEE division by ``n`` is correctly rounded.
    Otherwise the exact sum, as a :class:`~fractions.Fraction` (the rounded sum plus its residual
    when that residual is itself exact, else the sum of every value), is divided by ``n`` and
    rounded once by ``float`` (a fraction's ``float`` is correctly rounded). A non-finite value gives the
    naive mean (nan or inf); an empty input raises ``ValueError``.

    >>> correctly_rounded_mean([0.37, 0.37, 0.37]), float(np.mean([0.37, 0.37, 0.37]))
    (0.37, 0.36999999999999994)
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
    if not values:
        raise ValueError("the mean of no value is undefined")
    total = math.fsum(values)
    if not math.isfinite(total):
        return total / len(values)
    residual = math.fsum(values + [-total])  # the exact sum minus its rounding, rounded
    if residual == 0.0:
        return total / len(values)
    if math.fsum(values + [-total, -residual]) == 0.0:  # the exact sum is total + residual
        exact = Fraction(total) + Fraction(residual)
    else:
        exact = sum(map(Fraction, values))
    return float(exact / len(values))


def image_confidence(scores, min_score: float = DEFAULT_MIN_SCORE) -> float:
    """Mean score of the boxes scoring ``>= min_score``; 0.0 when none is left (the paper's rule).

    The mean is correctly rounded (:func:`correctly_rounded_mean`): boxes all scoring ``s`` give
    exactly ``s``, so such an image exits at ``t = s``.

    >>> image_confidence([0.9, 0.5, 0.01])
    0.7
    >>> image_confidence([0.01, 0.02])
    0.0
    >>> ExitPolicy(0.37).exits(image_confidence([0.37, 0.37, 0.37]))
    True
    """
    kept = _kept_scores(scores, min_score)
    return correctly_rounded_mean(kept) if kept.size else 0.0


def max_score(scores, min_score: float = DEFAULT_MIN_SCORE) -> float:
    """Highest box score ``>= min_score``; 0.0 when none.

    >>> max_score([0.9, 0.5, 0.01])
    0.9
    """
    kept = _kept_scores(scores, min_score)
    return float(kept.max()) if kept.size else 0.0


def topk_mean_score(scores, min_score: float = DEFAULT_MIN_SCORE, k: int = 3) -> float:
    """Mean of the ``k`` highest scores ``>= min_score`` (fewer when fewer are left); 0.0 when none.

    >>> topk_mean_score([0.9, 0.7, 0.5, 0.3], k=2)
    0.8
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    kept = np.sort(_kept_scores(scores, min_score))[::-1][:k]
    return correctly_rounded_mean(kept) if kept.size else 0.0


def high_score_share(scores, min_score: float = DEFAULT_MIN_SCORE, high: float = 0.5) -> float:
    """Share of the boxes scoring ``>= high`` among those scoring ``>= min_score``; 0.0 when none.

    High when the saver's answer is made of a few sure boxes, low when a sure box is drowned in
    hesitant ones.

    >>> high_score_share([0.9, 0.6, 0.3, 0.1, 0.01])
    0.5
    """
    if high < min_score:
        raise ValueError(f"high ({high!r}) must be >= min_score ({min_score!r})")
    kept = _kept_scores(scores, min_score)
    return float((kept >= high).mean()) if kept.size else 0.0


def entropy_confidence(scores, min_score: float = DEFAULT_MIN_SCORE) -> float:
    """One minus the mean binary entropy (bits) of the scores ``>= min_score``; 0.0 when none.

    Each kept box is read as a yes/no answer with probability ``score``: a box at 0.5 is a coin
    toss (entropy 1 bit), one near 1 (or near the floor) is decided. The image is as confident as
    its boxes are decided on average, in [0, 1].

    >>> round(entropy_confidence([1.0, 0.5]), 9)
    0.5
    >>> entropy_confidence([0.01])
    0.0
    """
    kept = np.clip(_kept_scores(scores, min_score), 1e-12, 1 - 1e-12)
    if not kept.size:
        return 0.0
    entropy = -(kept * np.log2(kept) + (1 - kept) * np.log2(1 - kept))
    return float(1.0 - entropy.mean())


#: The named confidence functions, all ``(scores, min_score) -> float`` in [0, 1], 0.0 for an image
#: with no box ``>= min_score``. ``"mean"`` is the paper's rule and the default everywhere.
CONFIDENCE_FUNCTIONS: Mapping[str, ConfidenceFunction] = {
    "mean": image_confidence,
    "max": max_score,
    "topk_mean": topk_mean_score,
    "high_share": high_score_share,
    "entropy": entropy_confidence,
}


def resolve_confidence(confidence: str | ConfidenceFunction) -> ConfidenceFunction:
    """Return the confidence function for a registered name, or the callable itself.

    >>> resolve_confidence("mean") is image_confidence
    True
    """
    if callable(confidence):
        return confidence
    try:
        return CONFIDENCE_FUNCTIONS[confidence]
    except KeyError:
        raise ValueError(
            f"unknown confidence function {confidence!r}; choose one of {sorted(CONFIDENCE_FUNCTIONS)} "
            "or pass a callable(scores, min_score) -> float"
        ) from None


def validate_threshold(threshold: float, name: str = "threshold") -> float:
    """Return ``threshold`` as a float, or raise naming it when it is NaN or negative.

    Confidences live in [0, 1], so a threshold above 1 is accepted with a defined meaning: no image
    can exit and every image goes to the base (the base-alone baseline, with the saver's cost).

    >>> validate_threshold(0.25)
    0.25
    """
    value = float(threshold)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0 (confidences are in [0, 1]), got {threshold!r}")
    return value


@dataclass(frozen=True)
class ExitPolicy:
    """The exit rule as one value: exit at a stage when its image confidence is ``>= threshold``.

    The same value carries the confidence rule alone (``threshold`` None) where the threshold is
    not chosen yet: a sweep, a grid or a picker scans thresholds under one confidence rule, and
    :meth:`with_threshold` fixes one.

    Attributes:
        threshold: ``t >= 0``; above 1 nothing exits; None: not chosen yet (:meth:`exits` refuses).
        confidence: how a stage's answer becomes one confidence: a name of
            :data:`CONFIDENCE_FUNCTIONS` (``"mean"``, the paper's), a callable
            ``(scores, min_score) -> float``, a router object or a router file (resolved where the
            answers are, e.g. :func:`tinysaver_det.detection.router_files.resolve_router`).
        min_score: the score floor given to a score function (boxes below it still stay in the answer).

    >>> ExitPolicy(0.25).exits(0.25)
    True
    >>> ExitPolicy(0.0).exits(0.0)  # an image with no box exits only at t = 0
    True
    >>> ExitPolicy(0.3, "max", 0.1)
    ExitPolicy(threshold=0.3, confidence='max', min_score=0.1)
    >>> ExitPolicy(confidence="max").with_threshold(0.3)
    ExitPolicy(threshold=0.3, confidence='max', min_score=0.05)
    """

    threshold: float | None = None
    confidence: object = "mean"
    min_score: float = DEFAULT_MIN_SCORE

    def __post_init__(self) -> None:
        if self.threshold is not None:
            object.__setattr__(self, "threshold", validate_threshold(self.threshold))
        min_score = float(self.min_score)
        if not 0 <= min_score <= 1:
            raise ValueError(f"min_score must be a number in [0, 1], got {self.min_score!r}")
        object.__setattr__(self, "min_score", min_score)

    def with_threshold(self, threshold: float) -> "ExitPolicy":
        """The same confidence rule exiting at ``threshold``."""
        return replace(self, threshold=threshold)

    def exits(self, confidence):
        """Exit decision for one confidence (bool) or an array of them (bool array)."""
        if self.threshold is None:
            raise ValueError("this exit policy has no threshold yet: give one (ExitPolicy.with_threshold)")
        decision = np.asarray(confidence, dtype=np.float64) >= self.threshold
        return bool(decision) if decision.ndim == 0 else decision


def stage_policies(rules, n_stages: int) -> list[ExitPolicy]:
    """One :class:`ExitPolicy` per exiting stage: ``rules`` is one policy for every stage or one per stage.

    Raises:
        ValueError: a list of another length than ``n_stages``.

    >>> [p.confidence for p in stage_policies(ExitPolicy(confidence="max"), 2)]
    ['max', 'max']
    """
    policies = [rules] * n_stages if isinstance(rules, ExitPolicy) else list(rules)
    if len(policies) != n_stages:
        raise ValueError(f"exit policies: {len(policies)} given for {n_stages} exiting stages")
    return policies
