"""Detection routers: the learned post-evaluator over the saver's detections, router files, and the
one resolver of a ``--confidence`` option.

The cascade rule (:class:`~tinysaver_det.core.policy.ExitPolicy`) needs one number per image. A
*router* computes it from the saver's whole answer for that image: any object with ``scores``
(N,), ``boxes`` (N, 4) xyxy and ``category_ids`` (N,) arrays, such as
:class:`~tinysaver_det.detection.types.Detections`. The cascade, the sweeps and the mmdet plug-in
all take a router through :func:`resolve_router`, which accepts (the task-agnostic part is
:func:`tinysaver_det.core.router.score_router`):

* a registered name of :data:`~tinysaver_det.core.policy.CONFIDENCE_FUNCTIONS` (``"mean"``, the
  paper's rule, ``"max"``, ``"topk_mean"``, ``"high_share"``, ``"entropy"``);
* a callable ``(scores, min_score) -> float`` (the original hook; it still works unchanged);
* a router object (:class:`Router`: ``name``, ``__call__(detections) -> float``,
  ``gflops(detections) -> float``), e.g. a :class:`LogisticRouter`;
* the path of a router file (``.json``, written by :meth:`LogisticRouter.save`).

:class:`LogisticRouter` is the paper's suggested *post-evaluator* (Sec. 3.2): a logistic regression
over features of the saver's output only (:func:`detection_features`: score statistics, box count
and sizes, class spread), trained to predict whether the saver's answer for an image is as good as
the base's. Its confidence is that probability. Its cost is counted (:meth:`LogisticRouter.gflops`)
so that the paper's Eq. 5 condition can be checked: an evaluator of cost ``C_E`` pays for itself at
matched performance when ``C_E < (r_E - r) * C_B``.

numpy and the standard library only; router files are json (no pickle).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det.core.policy import (
    DEFAULT_MIN_SCORE,
    entropy_confidence,
    high_score_share,
    image_confidence,
    topk_mean_score,
)
from tinysaver_det.core.router import Router, score_router
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_text, read_json, strict_json_dumps


# ---------------------------------------------------------------------------------------------
# Features of the saver's output (the learned router's input).

#: Names of :func:`detection_features`, in order. A router file stores them and is refused when they differ.
FEATURE_NAMES = (
    "log_n_kept",  # log(1 + number of boxes >= min_score)
    "log_n_25",  # log(1 + number of boxes >= 0.25)
    "log_n_50",  # log(1 + number of boxes >= 0.5)
    "mean_score",  # the paper's confidence
    "max_score",
    "top3_mean",
    "score_std",  # of the kept scores
    "high_share",  # share of kept boxes >= 0.5
    "entropy_conf",  # 1 - mean binary entropy of the kept scores
    "log_size",  # score-weighted mean of log(sqrt(box area)), boxes in pixels
    "small_share",  # score-weighted share of kept boxes with sqrt(area) < 32 px
    "log_n_classes",  # log(1 + number of distinct classes among boxes >= 0.25)
    "class_entropy",  # score-weighted entropy (nats) of the class distribution of the kept boxes
    "ambiguity",  # score-weighted mean, over kept boxes, of the highest IoU with a kept box of another class
    "empty",  # 1 when no box is kept
)

#: The ambiguity feature compares at most this many top-scoring kept boxes (bounds its O(n^2) cost).
AMBIGUITY_MAX_BOXES = 100


def _pairwise_iou_xyxy(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = boxes.T
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    w = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    h = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = w * h
    union = area[:, None] + area - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def detection_features(detections, min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """The :data:`FEATURE_NAMES` features of one image's detections, as a float64 ``(F,)`` array.

    Only the boxes scoring ``>= min_score`` are described (as for the paper's confidence); an image
    with none gets zeros and ``empty = 1``.

    >>> class Dets:
    ...     scores = np.array([0.9, 0.6, 0.01])
    ...     boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    ...     category_ids = np.array([1, 2, 1])
    >>> features = dict(zip(FEATURE_NAMES, detection_features(Dets()).round(4).tolist()))
    >>> features["mean_score"], features["high_share"], features["ambiguity"], features["empty"]
    (0.75, 1.0, 1.0, 0.0)
    """
    scores = np.asarray(detections.scores, dtype=np.float64).reshape(-1)
    keep = scores >= min_score
    features = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
    if not keep.any():
        features[-1] = 1.0
        return features
    order = np.argsort(-scores[keep], kind="stable")
    kept = scores[keep][order]
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)[keep][order]
    classes = np.asarray(detections.category_ids).reshape(-1)[keep][order]
    weights = kept / kept.sum()
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    _, class_index = np.unique(classes, return_inverse=True)
    class_share = np.bincount(class_index, weights=weights)
    class_share = class_share[class_share > 0]
    top = min(len(kept), AMBIGUITY_MAX_BOXES)
    iou = _pairwise_iou_xyxy(boxes[:top])
    iou[classes[:top, None] == classes[None, :top]] = 0.0  # only boxes of another class compete
    ambiguity = float((iou.max(axis=1) * kept[:top]).sum() / kept[:top].sum())
    features[:] = (
        np.log1p(len(kept)),
        np.log1p(np.count_nonzero(kept >= 0.25)),
        np.log1p(np.count_nonzero(kept >= 0.5)),
        image_confidence(kept, min_score),
        kept[0],
        topk_mean_score(kept, min_score, k=3),
        kept.std(),
        high_score_share(kept, min_score),
        entropy_confidence(kept, min_score),
        float(weights @ np.log(np.maximum(sides, 1.0))),
        float(weights @ (sides < 32)),
        np.log1p(len(np.unique(classes[kept >= 0.25]))),
        float(-(class_share * np.log(class_share)).sum()),
        ambiguity,
        0.0,
    )
    return features


def feature_flops(n_boxes: int, n_kept: int) -> float:
    """An upper estimate of the FLOPs of :func:`detection_features` plus one logistic prediction.

    Counted: the floor comparison (1 per box), sorting the kept scores (``n log2 n`` comparisons),
    about 40 arithmetic operations per kept box for the statistics, sizes and class shares, 14 per
    pair for the IoUs of the ambiguity feature (at most :data:`AMBIGUITY_MAX_BOXES` boxes), and
    ``2F + 30`` for standardising, the dot product and the sigmoid.

    >>> feature_flops(300, 0)  # 300 comparisons + 2 * 15 + 30
    360.0
    """
    n = float(n_kept)
    pairs = float(min(n_kept, AMBIGUITY_MAX_BOXES)) ** 2
    sort = n * np.log2(n) if n > 1 else 0.0
    return float(n_boxes + sort + 40 * n + 14 * pairs + 2 * len(FEATURE_NAMES) + 30)


def feature_matrix(detections: Sequence, min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """``(N, F)`` :func:`detection_features` of each image."""
    return np.stack([detection_features(d, min_score) for d in detections])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic function


def check_router_saver(router_name: str, recorded: str | None, settings: Mapping | None) -> None:
    """Refuse, before any image runs, a saver (its ``settings``) other than the one a router file was trained for.

    Every router kind that records its saver's weights sha256 calls this one check: a router learned on one
    saver's outputs silently mis-routes another's. A saver that knows no sha256 (``settings`` None or without
    one) cannot be checked and is accepted; a router file that records none (written before routers recorded
    their saver) is accepted with a one-line note on stderr.

    Raises:
        TinySaverInputError: the recorded sha256 and the saver's differ, naming both.
    """
    if settings is None or settings.get("sha256") is None:
        return
    if recorded is None:
        print(f"note: router {router_name!r} records no saver (an older file): not checked against the saver "
              f"{settings.get('name')!r}", file=sys.stderr)
        return
    if settings["sha256"] != recorded:
        raise TinySaverInputError(
            f"router {router_name!r} was trained on the saver with sha256 {recorded[:12]}..., the cascade's saver "
            f"{settings.get('name')!r} has sha256 {str(settings['sha256'])[:12]}...: retrain it for this saver"
        )


@dataclass(frozen=True)
class LogisticRouter:
    """The learned post-evaluator: ``P(saver's answer is as good as the base's | saver's output)``.

    A logistic regression over the standardised :func:`detection_features`. Train it with
    :meth:`fit` on a calibration split, keep it as json with :meth:`save`, use it wherever a
    confidence is taken (``Cascade(..., confidence=router)`` or ``confidence="router.json"``).

    Attributes:
        weights: (F,) coefficients of the standardised features.
        bias: intercept.
        mean, scale: (F,) the standardisation learned from the training features.
        min_score: the score floor of the features (the file's value is used, whatever the cascade's).
        name: how tables name it.
        info: facts about the training (samples, positive share, label rule), stored in the file.
        saver: sha256 of the saver's weights it was trained on (None: unknown); the cascade refuses
            another saver (:meth:`check_saver`).
    """

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    min_score: float = DEFAULT_MIN_SCORE
    name: str = "learned"
    info: Mapping = field(default_factory=dict)
    saver: str | None = None

    kind = "logistic"

    def __post_init__(self) -> None:
        for attribute in ("weights", "mean", "scale"):
            value = np.asarray(getattr(self, attribute), dtype=np.float64).reshape(-1)
            if value.shape != (len(FEATURE_NAMES),):
                raise ValueError(
                    f"{attribute} must have {len(FEATURE_NAMES)} values (one per feature), got {value.shape}"
                )
            object.__setattr__(self, attribute, value)
        if not (self.scale > 0).all():
            raise ValueError("scale must be > 0 for every feature")
        object.__setattr__(self, "bias", float(self.bias))

    def predict_features(self, features) -> np.ndarray:
        """Confidences of a ``(N, F)`` feature matrix (or one ``(F,)`` row)."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale @ self.weights + self.bias
        return _sigmoid(z)

    def __call__(self, detections) -> float:
        return float(self.predict_features(detection_features(detections, self.min_score)))

    def gflops(self, detections) -> float:
        scores = np.asarray(detections.scores).reshape(-1)
        return feature_flops(len(scores), int(np.count_nonzero(scores >= self.min_score))) * 1e-9

    def check_saver(self, settings: Mapping | None) -> None:
        """Refuse a saver other than the one it was trained on (:func:`check_router_saver`)."""
        check_router_saver(self.name, self.saver, settings)

    @classmethod
    def fit(
        cls,
        features,
        labels,
        l2: float = 1.0,
        min_score: float = DEFAULT_MIN_SCORE,
        name: str = "learned",
        info: Mapping | None = None,
        max_iter: int = 100,
        saver: str | None = None,
    ) -> "LogisticRouter":
        """Fit by Newton's method (IRLS) with an L2 penalty ``l2 / 2 * |w|^2`` on the standardised weights.

        Args:
            features: (N, F) rows of :func:`detection_features`.
            labels: (N,) bool, True where the saver's answer was as good as the base's.
            l2: ridge strength (the bias is not penalised).
            saver: sha256 of the saver's weights whose outputs ``features`` come from (recorded in the file).

        Raises:
            ValueError: when the labels are all equal (nothing to learn) or the shapes disagree.

        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, len(FEATURE_NAMES)))
        >>> router = LogisticRouter.fit(x, x[:, 3] + 0.1 * rng.normal(size=200) > 0)
        >>> int(np.argmax(np.abs(router.weights))), bool(router.weights[3] > 0)
        (3, True)
        """
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=bool).reshape(-1).astype(np.float64)
        if x.ndim != 2 or x.shape != (len(y), len(FEATURE_NAMES)):
            raise ValueError(f"features must have shape ({len(y)}, {len(FEATURE_NAMES)}), got {x.shape}")
        if y.min() == y.max():
            raise ValueError(f"labels are all {bool(y[0])}: a router needs both outcomes to learn from")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        design = np.hstack([(x - mean) / scale, np.ones((len(y), 1))])
        penalty = np.full(design.shape[1], float(l2))
        penalty[-1] = 0.0
        theta = np.zeros(design.shape[1])
        for _ in range(max_iter):
            p = _sigmoid(design @ theta)
            gradient = design.T @ (p - y) + penalty * theta
            hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(theta))
            step = np.linalg.solve(hessian, gradient)
            theta -= step
            if np.abs(step).max() < 1e-10:
                break
        facts = {"n_samples": int(len(y)), "positive_share": float(y.mean()), "l2": float(l2), **(info or {})}
        return cls(theta[:-1], theta[-1], mean, scale, min_score, name, facts, saver)

    def to_dict(self) -> dict:
        """JSON-ready form; :meth:`from_dict` inverts it exactly (floats round-trip through json)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "min_score": self.min_score,
            "feature_names": list(FEATURE_NAMES),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "info": dict(self.info),
            "saver_sha256": self.saver,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "LogisticRouter":
        names = tuple(data.get("feature_names", ()))
        if names != FEATURE_NAMES:
            raise ValueError(
                f"router was trained on features {list(names)}, this version computes {list(FEATURE_NAMES)}: retrain it"
            )
        return cls(data["weights"], data["bias"], data["mean"], data["scale"], data["min_score"], data["name"],
                   data.get("info", {}), data.get("saver_sha256"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the router as json; returns the path."""
        path = Path(path)
        atomic_write_text(path, strict_json_dumps(self.to_dict(), indent=2) + "\n")  # strict JSON, never half a file
        return path


#: Router file kinds: the ``kind`` field of a router json -> the class that reads it.
ROUTER_KINDS = {LogisticRouter.kind: LogisticRouter}


def _router_kinds() -> dict:
    """:data:`ROUTER_KINDS` plus the feature post-evaluator (its module imports this one, so it is read here)."""
    from tinysaver_det.detection.post_evaluator import FeatureRouter

    return {**ROUTER_KINDS, FeatureRouter.kind: FeatureRouter}


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
        reader = _router_kinds()[data["kind"]]
    except (KeyError, TypeError):
        raise ValueError(f"router file {path} has no known 'kind'; known kinds: {sorted(_router_kinds())}") from None
    return reader.from_dict(data)


def resolve_router(confidence="mean", min_score: float = DEFAULT_MIN_SCORE) -> Router:
    """The :class:`Router` for a confidence option: a name, a score function, a router, or a router file.

    Args:
        confidence: a key of ``CONFIDENCE_FUNCTIONS``; a callable ``(scores, min_score) -> float``;
            a :class:`Router`; or the path of a ``.json`` router file.
        min_score: the score floor given to score functions (a router keeps its own).

    >>> resolve_router("max").name
    'max'
    >>> resolve_router(lambda scores, min_score: 1.0).name
    '<lambda>'
    """
    if not isinstance(confidence, Router) and isinstance(confidence, (str, os.PathLike)) and Path(confidence).suffix == ".json":
        return load_router(confidence)
    return score_router(confidence, min_score)
