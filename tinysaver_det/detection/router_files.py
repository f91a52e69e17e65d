"""Router files and the one resolver of a ``--confidence`` option.

The cascade rule (:class:`~tinysaver_det.core.policy.ExitPolicy`) needs one number per image. A
*router* computes it from the saver's whole answer for that image: any object with ``scores``
(N,), ``boxes`` (N, 4) xyxy and ``category_ids`` (N,) arrays, such as
:class:`~tinysaver_det.detection.types.Detections`. The cascade, the sweeps and the mmdet plug-in
all take a router through :func:`resolve_router`, which accepts (the task-agnostic part is
:func:`tinysaver_det.core.score_routers.score_router`):

* a registered name of :data:`~tinysaver_det.core.policy.CONFIDENCE_FUNCTIONS` (``"mean"``, the
  paper's rule, ``"max"``, ``"topk_mean"``, ``"high_share"``, ``"entropy"``);
* a callable ``(scores, min_score) -> float`` (the original hook; it still works unchanged);
* a router object (:class:`~tinysaver_det.core.score_routers.Router`: ``name``,
  ``__call__(detections) -> float``, ``gflops(detections) -> float``);
* the path of a router file (:func:`is_router_file`: ``.json``, written by a router's ``save``),
  whose ``kind`` names its class in :data:`ROUTER_KINDS`.

This module sits above the router classes (it imports them, they never import it), so the list of
kinds is complete when the module is.

numpy and the standard library only; router files are json (no pickle).
"""

from __future__ import annotations

import os
from pathlib import Path

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ExitPolicy
from tinysaver_det.core.score_routers import Router, score_router
from tinysaver_det.detection.feature_router import FeatureRouter
from tinysaver_det.detection.logistic_router import LogisticRouter
from tinysaver_det.io import read_json

#: Router file kinds: the ``kind`` field of a router json -> the class that reads it.
ROUTER_KINDS = {LogisticRouter.kind: LogisticRouter, FeatureRouter.kind: FeatureRouter}


def is_router_file(confidence) -> bool:
    """Whether a confidence option names a router file (a path ending in ``.json``), not a name or an object.

    >>> is_router_file("learned_router.json"), is_router_file("mean")
    (True, False)
    """
    return isinstance(confidence, (str, os.PathLike)) and Path(confidence).suffix == ".json"


def load_router(path: str | os.PathLike) -> Router:
    """Read a router file written by a router's ``save`` (json with a ``kind`` of :data:`ROUTER_KINDS`).

    The file is read by the project's one json reader (:func:`tinysaver_det.io.read_json`), whose
    errors are the ones this function gave: ``router file not found: <path>`` (``FileNotFoundError``)
    and ``router file <path> is not valid json: <why>`` (a :class:`~tinysaver_det.errors.TinySaverInputError`,
    a ``ValueError``, so a command line reports it as a wrong input).
    """
    path = Path(path)
    data = read_json(path, "router file")
    try:
        reader = ROUTER_KINDS[data["kind"]]
    except (KeyError, TypeError):
        raise ValueError(f"router file {path} has no known 'kind'; known kinds: {sorted(ROUTER_KINDS)}") from None
    return reader.from_dict(data)


def resolve_router(rule: ExitPolicy | object = "mean", min_score: float | None = None) -> Router:
    """The :class:`Router` of a confidence option: a name, a score function, a router, or a router file.

    Args:
        rule: an :class:`~tinysaver_det.core.policy.ExitPolicy` (its ``confidence`` and
            ``min_score``; the offline studies pass one), or the confidence option itself: a key of
            ``CONFIDENCE_FUNCTIONS``, a callable ``(scores, min_score) -> float``, a :class:`Router`,
            or the path of a ``.json`` router file.
        min_score: with a bare option, the score floor given to score functions (default 0.05;
            a router keeps its own). An exit policy carries its own.

    >>> resolve_router("max").name
    'max'
    >>> resolve_router(ExitPolicy(confidence="topk_mean", min_score=0.1)).min_score
    0.1
    >>> resolve_router(lambda scores, min_score: 1.0).name
    '<lambda>'
    """
    if isinstance(rule, ExitPolicy):
        if min_score is not None:
            raise ValueError("give min_score in the exit policy, not beside it")
        policy = rule
    else:
        policy = ExitPolicy(confidence=rule, min_score=DEFAULT_MIN_SCORE if min_score is None else min_score)
    if not isinstance(policy.confidence, Router) and is_router_file(policy.confidence):
        return load_router(policy.confidence)
    return score_router(policy)


def router_needs_saver_features(confidence) -> bool:
    """Whether a ``--confidence`` option (name, router, router file) needs the saver run with ``features=True``.

    >>> router_needs_saver_features("mean")
    False
    """
    return bool(getattr(resolve_router(confidence), "needs_saver_features", False))
