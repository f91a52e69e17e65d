"""The router protocol and the routers made of a score function (task-agnostic).

A *router* turns one image's answer into the confidence that the cascade rule compares.

The cascade rule (:class:`~tinysaver_det.core.policy.ExitPolicy`) needs one number per image. A
*router* computes it from the saver's whole answer for that image (for detection: an object with
``scores`` (N,), ``boxes`` (N, 4) xyxy and ``category_ids`` (N,) arrays, such as
:class:`~tinysaver_det.detection.types.Detections`). This module holds what is task-agnostic:

* the :class:`Router` protocol (``name``, ``__call__(answer) -> float``, ``gflops(answer) -> float``);
* :class:`ScoreRouter`, a confidence function of the scores (``(scores, min_score) -> float``, e.g. a
  registered name of :data:`~tinysaver_det.core.policy.CONFIDENCE_FUNCTIONS`) as a router;
* :func:`score_router`, which turns an exit policy's confidence (a name, a callable or a router) into a :class:`Router`.

The learned detection routers (the paper's post-evaluator) live in
:mod:`tinysaver_det.detection.logistic_router` and :mod:`tinysaver_det.detection.feature_router`;
:func:`tinysaver_det.detection.router_files.resolve_router` also accepts their router files.

numpy and the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from tinysaver_det.core.policy import (  # noqa: F401 (image_confidence: doctest)
    CONFIDENCE_FUNCTIONS,
    DEFAULT_MIN_SCORE,
    ConfidenceFunction,
    ExitPolicy,
    image_confidence,
)


@runtime_checkable
class Router(Protocol):
    """Anything that gives an image's confidence from the saver's detections of that image.

    Attributes:
        name: how tables and run summaries name it.
    """

    name: str

    def __call__(self, detections) -> float:
        """The confidence of one image (higher: the saver's answer is more likely good enough)."""
        ...

    def gflops(self, detections) -> float:
        """The router's own cost on this image, in GFLOPs (FLOPs = 2 * MACs, comparisons count 1)."""
        ...


@dataclass(frozen=True)
class ScoreRouter:
    """A confidence function of the box scores, ``(scores, min_score) -> float``, as a :class:`Router`.

    Its cost is reported as 0: sorting and averaging at most a few hundred scores is of the order of
    the NMS the models already run, which the models' GFLOPs do not count either.

    >>> router = ScoreRouter(image_confidence)
    >>> class Dets: scores = [0.9, 0.5, 0.01]
    >>> router(Dets()), router.name
    (0.7, 'image_confidence')
    """

    function: ConfidenceFunction
    min_score: float = DEFAULT_MIN_SCORE
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", getattr(self.function, "__name__", "custom"))

    def __call__(self, detections) -> float:
        return float(self.function(detections.scores, self.min_score))

    def gflops(self, detections) -> float:
        return 0.0


def score_router(policy: ExitPolicy = ExitPolicy()) -> Router:
    """The :class:`Router` of an exit policy's confidence: a registered name, a score function or a router.

    Args:
        policy: its ``confidence`` is a key of ``CONFIDENCE_FUNCTIONS``, a callable
            ``(scores, min_score) -> float``, or a :class:`Router` (returned as it is); its
            ``min_score`` is the score floor given to score functions (a router keeps its own).

    Raises:
        ValueError: anything else (:func:`tinysaver_det.detection.router_files.resolve_router` also reads router files).

    >>> score_router(ExitPolicy(confidence="max")).name
    'max'
    >>> score_router(ExitPolicy(confidence=lambda scores, min_score: 1.0)).name
    '<lambda>'
    """
    confidence, min_score = policy.confidence, policy.min_score
    if isinstance(confidence, Router):
        return confidence
    if isinstance(confidence, str) and confidence in CONFIDENCE_FUNCTIONS:
        return ScoreRouter(CONFIDENCE_FUNCTIONS[confidence], min_score, confidence)
    if callable(confidence):
        return ScoreRouter(confidence, min_score)
    raise ValueError(
        f"unknown confidence {confidence!r}; choose one of {sorted(CONFIDENCE_FUNCTIONS)}, a router file (.json), "
        "a router object, or a callable(scores, min_score) -> float"
    )


def router_confidences(router: Router, detections: Sequence) -> np.ndarray:
    """``(N,)`` confidences of a router over a sequence of per-image detections."""
    return np.fromiter((router(d) for d in detections), dtype=np.float64, count=len(detections))
