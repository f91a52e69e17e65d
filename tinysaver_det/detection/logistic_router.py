"""The learned post-evaluator over the saver's detections: :class:`LogisticRouter`, and the saver check
every router file kind shares (:func:`check_router_saver`).

:class:`LogisticRouter` is the paper's suggested *post-evaluator* (Sec. 3.2): a logistic regression
over features of the saver's output only
(:func:`~tinysaver_det.detection.output_features.detection_features`: score statistics, box count
and sizes, class spread), trained to predict whether the saver's answer for an image is as good as
the base's. Its confidence is that probability. Its cost is counted (:meth:`LogisticRouter.gflops`)
so that the paper's Eq. 5 condition can be checked: an evaluator of cost ``C_E`` pays for itself at
matched performance when ``C_E < (r_E - r) * C_B``. Router files (reading them, resolving a
``--confidence`` option) are :mod:`tinysaver_det.detection.router_files`.

numpy and the standard library only; router files are json (no pickle).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE
from tinysaver_det.detection.output_features import FEATURE_NAMES, detection_features, feature_flops
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_text, strict_json_dumps


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, written without overflow for any float64 input."""
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
        return sigmoid(z)

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
            p = sigmoid(design @ theta)
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
