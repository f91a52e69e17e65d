"""The feature post-evaluator: predict from the saver's own features how much the base would gain on an image.

The paper's post-evaluator (Sec. 3.2, Eq. 5) reads the saver's final layer; :class:`FeatureRouter`
reads, for one image, any of three feature blocks (:data:`BLOCKS`):

* ``outputs``: the statistics of the saver's detections (:func:`~tinysaver_det.detection.output_features.detection_features`);
* ``candidates``: the statistics of the candidate boxes before NMS (MetaDetect);
* ``pooled``: the pooled neck maps entering the detection head.

The last two are captured by the adapter during the saver's own prediction (``features=True``,
:mod:`tinysaver_det.detection.saver_features`) and travel with the detections
(:class:`~tinysaver_det.detection.types.SaverFeatures`), so the router needs no second forward and
trains offline from the prediction cache.

**Target.** The cascade at a budget must send to the base the images where the base gains most.
The evaluator therefore regresses the per-image gain ``AP_base - AP_saver`` (each image's own COCO
AP from the cached matching, :meth:`~tinysaver_det.detection.cache.PredictionCache.per_image_ap`)
with ridge regression on standardised inputs; its confidence is ``sigmoid(-(gain - centre) / spread)``
(high: little to gain, the saver answers). The logistic :class:`~tinysaver_det.detection.logistic_router.LogisticRouter`
instead classifies "saver as good as base", which says nothing about *how much* is lost.

**Selection** (:func:`fit_feature_router`): the feature blocks and the ridge strength are chosen by
K-fold cross-validation on the calibration split only, by the share of the attainable gain that
the predicted ranking captures when sending 5%, 10%, ... 95% of the images to the base
(:func:`captured_gain`).

**Cost.** :meth:`FeatureRouter.gflops` counts the capture (pooling, candidate statistics: their
``SaverFeatures.gflops``), the output statistics and the linear model (paper Eq. 5 needs ``C_E``).

**Refusals.** A router file records the saver's weights sha256 and the feature recipe: features
from another saver, from another recipe, or missing (a saver run without ``features=True``) are
refused with a :class:`~tinysaver_det.errors.TinySaverInputError`, never silently routed.

numpy and the standard library only; router files are json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE
from tinysaver_det.detection.logistic_router import check_router_saver, sigmoid
from tinysaver_det.detection.output_features import FEATURE_NAMES, detection_features, feature_flops
from tinysaver_det.detection.saver_features import CANDIDATE_NAMES
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_text, strict_json_dumps

#: The feature blocks a :class:`FeatureRouter` can read.
BLOCKS = ("outputs", "candidates", "pooled")

#: The block combinations :func:`fit_feature_router` chooses from by default.
DEFAULT_BLOCK_CHOICES = (("outputs",), ("outputs", "candidates"), ("outputs", "candidates", "pooled"),
                         ("candidates", "pooled"))

#: Ridge strengths :func:`fit_feature_router` chooses from by default.
DEFAULT_ALPHAS = (1.0, 10.0, 100.0, 1000.0)

#: Shares of images sent to the base at which :func:`captured_gain` is read.
ROUTED_SHARES = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))


def blocks_need_saver_features(blocks: Sequence[str]) -> bool:
    """Whether these feature blocks read features captured inside the saver (any block but ``outputs``)."""
    return any(b != "outputs" for b in blocks)


def block_values(detections, blocks: Sequence[str], min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """The input vector of one image: the named blocks, in order (no checks of the features' origin)."""
    parts = []
    for block in blocks:
        if block == "outputs":
            parts.append(detection_features(detections, min_score))
        elif block == "candidates":
            parts.append(detections.features.values[: len(CANDIDATE_NAMES)])
        elif block == "pooled":
            parts.append(detections.features.values[len(CANDIDATE_NAMES):])
        else:
            raise ValueError(f"unknown feature block {block!r}; choose from {BLOCKS}")
    return np.concatenate(parts)


def saver_features_of(detections: Sequence, blocks: Sequence[str] = ("candidates",)) -> tuple[str, str | None, int]:
    """The (recipe, saver sha256, length) shared by the captured features of ``detections``.

    Raises:
        TinySaverInputError: some image has no features, or they come from two recipes or savers.
    """
    if not blocks_need_saver_features(blocks):
        return "", None, 0
    seen = set()
    for d in detections:
        if getattr(d, "features", None) is None:
            raise TinySaverInputError(
                f"image {d.image_id} has no saver features: predict the saver with features=True "
                "(predict-coco --features) to train or use a feature post-evaluator"
            )
        seen.add((d.features.recipe, d.features.saver, len(d.features.values)))
    if len(seen) != 1:
        raise TinySaverInputError(f"the saver features come from {len(seen)} different savers/recipes: {sorted(seen)}")
    return seen.pop()


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge regression on standardised columns: ``(mean, scale, weights, bias)``; the bias is not penalised.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 3)); y = 2 * x[:, 1] + 1
    >>> mean, scale, w, b = ridge_fit(x, y, 1e-6)
    >>> bool(np.allclose(w / scale, [0, 2, 0], atol=1e-4)), round(float(b - (mean / scale) @ w), 3)
    (True, 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    weights = np.linalg.solve(z.T @ z + float(alpha) * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return mean, scale, weights, float(y.mean())


def captured_gain(predicted_gain, gain, shares: Sequence[float] = ROUTED_SHARES) -> float:
    """Mean over ``shares`` of the gain captured by sending the top predicted images to the base,
    as a share of the best possible (the images of highest true gain).

    >>> captured_gain([0.9, 0.1, 0.5], [1.0, 0.0, 0.2], shares=[1 / 3, 2 / 3])  # perfect ranking
    1.0
    >>> captured_gain([0.1, 0.9, 0.5], [1.0, 0.0, 0.2], shares=[1 / 3])
    0.0
    """
    predicted = np.asarray(predicted_gain, dtype=np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    by_prediction = gain[np.argsort(-predicted, kind="stable")]
    best = np.sort(gain)[::-1]
    values = []
    for share in shares:
        m = max(1, int(round(share * len(gain))))
        attainable = best[:m].sum()
        values.append(by_prediction[:m].sum() / attainable if attainable > 0 else 1.0)
    return float(np.mean(values))


@dataclass(frozen=True)
class FeatureRouter:
    """Ridge regression of the base's per-image gain on the saver's own features, as a router.

    Attributes:
        blocks: the feature blocks read (:data:`BLOCKS`), in order.
        recipe, saver: the :class:`~tinysaver_det.detection.types.SaverFeatures` recipe and saver sha256
            it was trained on ("" / None when only ``outputs`` are read).
        n_saver_values: length of the captured feature vector it expects (0: none).
        mean, scale, weights, bias: the standardisation and the linear model of the predicted gain.
        centre, spread: confidence = ``sigmoid(-(predicted gain - centre) / spread)``.
        min_score: score floor of the ``outputs`` block.
        name: how tables name it.
        info: facts about the training (split, selection table), stored in the file.
    """

    blocks: tuple[str, ...]
    recipe: str
    saver: str | None
    n_saver_values: int
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    centre: float
    spread: float
    min_score: float = DEFAULT_MIN_SCORE
    name: str = "features"
    info: Mapping = field(default_factory=dict)

    kind = "features"

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        unknown = [b for b in self.blocks if b not in BLOCKS]
        if unknown or not self.blocks:
            raise ValueError(f"blocks must be a non-empty selection of {BLOCKS}, got {list(self.blocks)}")
        for attribute in ("mean", "scale", "weights"):
            object.__setattr__(self, attribute, np.asarray(getattr(self, attribute), dtype=np.float64).reshape(-1))
        if not len(self.mean) == len(self.scale) == len(self.weights):
            raise ValueError("mean, scale and weights must have one value per input")
        if not (self.scale > 0).all() or not self.spread > 0:
            raise ValueError("scale and spread must be > 0")

    @property
    def needs_saver_features(self) -> bool:
        """Whether the saver must run with feature capture (``features=True``) for this router."""
        return blocks_need_saver_features(self.blocks)

    def check_features(self, detections) -> None:
        """Refuse detections whose features are missing or come from another recipe or saver."""
        if not self.needs_saver_features:
            return
        features = getattr(detections, "features", None)
        if features is None:
            raise TinySaverInputError(
                f"router {self.name!r} reads the saver's own features, but image {detections.image_id} has none: "
                "run the saver with features=True (predict-coco --features)"
            )
        if features.recipe != self.recipe:
            raise TinySaverInputError(
                f"router {self.name!r} was trained on feature recipe {self.recipe!r}, the saver gives {features.recipe!r}: retrain it"
            )
        if self.saver is not None and features.saver != self.saver:
            raise TinySaverInputError(
                f"router {self.name!r} was trained on the saver with sha256 {self.saver[:12]}..., these features come "
                f"from a saver with sha256 {str(features.saver)[:12]}...: a router file belongs to one saver; retrain it"
            )
        if len(features.values) != self.n_saver_values:
            raise TinySaverInputError(
                f"router {self.name!r} expects {self.n_saver_values} saver feature values, got {len(features.values)}"
            )

    def check_saver(self, settings: Mapping | None) -> None:
        """Refuse, before any image runs, a saver (its ``settings``) that is not the one it was trained on
        (:func:`~tinysaver_det.detection.logistic_router.check_router_saver`) or that captures other features."""
        if not self.needs_saver_features or settings is None:
            return
        check_router_saver(self.name, self.saver, settings)
        if settings.get("features") != self.recipe:
            captured = settings.get("features")
            raise TinySaverInputError(
                f"router {self.name!r} reads the saver's features (recipe {self.recipe!r}), but the saver "
                f"{settings.get('name')!r} " + ("captures none: create it with features=True" if captured is None
                                               else f"captures recipe {captured!r}")
            )

    def predicted_gain(self, inputs) -> np.ndarray:
        """The predicted per-image gain of the base for a ``(N, F)`` input matrix (or one row)."""
        return (np.asarray(inputs, dtype=np.float64) - self.mean) / self.scale @ self.weights + self.bias

    def confidence_of_inputs(self, inputs) -> np.ndarray:
        return sigmoid(-(self.predicted_gain(inputs) - self.centre) / self.spread)

    def __call__(self, detections) -> float:
        self.check_features(detections)
        return float(self.confidence_of_inputs(block_values(detections, self.blocks, self.min_score)))

    def gflops(self, detections) -> float:
        """Capture (pooling + candidate statistics), output statistics, then ``4F + 30`` for the model."""
        flops = 4.0 * len(self.weights) + 30.0
        if "outputs" in self.blocks:
            scores = np.asarray(detections.scores).reshape(-1)
            flops += feature_flops(len(scores), int(np.count_nonzero(scores >= self.min_score)))
        if self.needs_saver_features and getattr(detections, "features", None) is not None:
            flops += detections.features.gflops * 1e9
        return flops * 1e-9

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "blocks": list(self.blocks),
            "output_feature_names": list(FEATURE_NAMES),
            "candidate_feature_names": list(CANDIDATE_NAMES),
            "recipe": self.recipe,
            "saver_sha256": self.saver,
            "n_saver_values": self.n_saver_values,
            "min_score": self.min_score,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "centre": self.centre,
            "spread": self.spread,
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "FeatureRouter":
        if tuple(data.get("output_feature_names", ())) != FEATURE_NAMES or tuple(
            data.get("candidate_feature_names", ())
        ) != CANDIDATE_NAMES:
            raise TinySaverInputError("router file was written for other feature definitions than this version's: retrain it")
        return cls(
            data["blocks"], data["recipe"], data["saver_sha256"], int(data["n_saver_values"]), data["mean"],
            data["scale"], data["weights"], data["bias"], data["centre"], data["spread"], data["min_score"],
            data["name"], data.get("info", {}),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the router as json; returns the path.

        Written as :meth:`LogisticRouter.save <tinysaver_det.detection.logistic_router.LogisticRouter.save>`
        writes its file: through the one atomic writer (a crash leaves the old file or the whole new
        one), as strict JSON. A router from :func:`fit_feature_router` holds no NaN (a non-finite fit
        gives a NaN spread, which the constructor refuses); a hand-made one with a NaN is refused here
        (:class:`~tinysaver_det.io.NonFiniteJsonError`, naming the field) rather than written as a
        ``NaN`` token most JSON readers reject.
        """
        path = Path(path)
        atomic_write_text(path, strict_json_dumps(self.to_dict(), indent=2) + "\n")
        return path


def gain_target(saver_ap, base_ap) -> np.ndarray:
    """The base's per-image gain ``AP_base - AP_saver``; 0 where an image has no ground truth (AP -1)."""
    saver_ap = np.asarray(saver_ap, dtype=np.float64)
    base_ap = np.asarray(base_ap, dtype=np.float64)
    return np.where((saver_ap < 0) | (base_ap < 0), 0.0, base_ap - saver_ap)


def _choice_inputs(detections: Sequence, choices: Sequence[tuple[str, ...]], min_score: float) -> dict:
    """``{blocks: (N, F) input matrix}`` for each block choice, each distinct block computed once.

    Most default choices share the ``outputs`` block, whose :func:`detection_features` (an IoU
    matrix per image) is the costly one; its matrix is built once and joined to each choice's other
    blocks in the choice's order, giving the same values as stacking :func:`block_values` per choice.
    """
    per_block = {
        block: np.stack([block_values(d, (block,), min_score) for d in detections])
        for block in dict.fromkeys(b for blocks in choices for b in blocks)
    }
    return {blocks: np.hstack([per_block[b] for b in blocks]) for blocks in choices}


def _fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


def fit_feature_router(
    detections: Sequence,
    gain,
    block_choices: Sequence[Sequence[str]] = DEFAULT_BLOCK_CHOICES,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    folds: int = 5,
    seed: int = 0,
    min_score: float = DEFAULT_MIN_SCORE,
    name: str = "features",
    info: Mapping | None = None,
) -> FeatureRouter:
    """Choose blocks and ridge strength by K-fold CV of :func:`captured_gain` on these images, then refit on all.

    Args:
        detections: the saver's detections of the calibration images (with features when a block needs them).
        gain: (N,) the base's per-image gain (:func:`gain_target`).
        block_choices: the block combinations to try; those needing saver features are skipped when
            the detections carry none.
        alphas: ridge strengths to try.
    """
    gain = np.asarray(gain, dtype=np.float64).reshape(-1)
    if len(gain) != len(detections):
        raise ValueError(f"{len(detections)} images but {len(gain)} gains")
    has_features = all(getattr(d, "features", None) is not None for d in detections)
    choices = [tuple(b) for b in block_choices if has_features or not blocks_need_saver_features(b)]
    if not choices:
        raise TinySaverInputError("no feature block can be read: the detections carry no saver features")
    recipe, saver, n_values = saver_features_of(detections, ("candidates",)) if has_features else ("", None, 0)
    inputs = _choice_inputs(detections, choices, min_score)
    fold = _fold_ids(len(gain), folds, seed)
    table = []
    for blocks, alpha in product(choices, alphas):
        x = inputs[blocks]
        predicted = np.empty(len(gain))
        for k in range(folds):
            train, test = fold != k, fold == k
            mean, scale, w, b = ridge_fit(x[train], gain[train], alpha)
            predicted[test] = (x[test] - mean) / scale @ w + b
        table.append({"blocks": "+".join(blocks), "alpha": float(alpha), "cv_captured_gain": captured_gain(predicted, gain)})
    best = max(range(len(table)), key=lambda i: table[i]["cv_captured_gain"])
    blocks = tuple(table[best]["blocks"].split("+"))
    alpha = table[best]["alpha"]
    mean, scale, w, b = ridge_fit(inputs[blocks], gain, alpha)
    fitted = (inputs[blocks] - mean) / scale @ w + b
    spread = float(fitted.std()) or 1.0
    uses_saver = blocks_need_saver_features(blocks)
    facts = {
        "target": "per-image COCO AP of the base minus that of the saver (ridge regression)",
        "n_images": int(len(gain)),
        "alpha": float(alpha),
        "selection": f"{folds}-fold CV on these images of the captured gain at {len(ROUTED_SHARES)} routed shares",
        "cv_table": table,
        **(info or {}),
    }
    return FeatureRouter(blocks, recipe if uses_saver else "", saver if uses_saver else None,
                         n_values if uses_saver else 0, mean, scale, w, b, float(np.median(fitted)), spread,
                         min_score, name, facts)
