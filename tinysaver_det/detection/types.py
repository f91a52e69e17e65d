"""Typed containers shared by the cascade, the adapters and the evaluation, and the Detector protocol.

The protocol lives here, beside the cascade that consumes it; adapters (Ultralytics, mmdet) implement
it from above, so this module imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SaverFeatures:
    """What a model's own forward pass says about one image, beyond its boxes (a post-evaluator's input).

    Captured by the adapter during the prediction that made the detections (no second forward) and
    cached beside them, so a learned router can be trained and swept offline.

    Attributes:
        recipe: name/version of the feature list (a router trained on another recipe is refused).
        saver: sha256 of the weights that produced them (a router trained on another saver is refused).
        values: (F,) float64.
        gflops: the counted cost of computing ``values`` from the forward pass (pooling, candidate
            statistics), in GFLOPs; a router that reads them adds it to its own cost.
    """

    recipe: str
    saver: str | None
    values: np.ndarray
    gflops: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", np.asarray(self.values, dtype=np.float64).reshape(-1))

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "saver": self.saver, "values": self.values.tolist(), "gflops": self.gflops}

    @classmethod
    def from_dict(cls, data: dict) -> "SaverFeatures":
        return cls(data["recipe"], data.get("saver"), data["values"], float(data.get("gflops", 0.0)))


@dataclass(frozen=True)
class Detections:
    """The detections of one image.

    Attributes:
        image_id: the dataset's image id.
        boxes: (N, 4) float64, xyxy in original-image pixels.
        scores: (N,) float64 in [0, 1].
        category_ids: (N,) int64, the dataset's category ids (COCO: 1..90 with gaps).
        features: the model's own :class:`SaverFeatures` of this image, when its adapter captured them.
    """

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    features: SaverFeatures | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        category_ids = np.asarray(self.category_ids, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(category_ids):
            raise ValueError(
                f"image {self.image_id}: {len(boxes)} boxes, {len(scores)} scores and "
                f"{len(category_ids)} category ids must have the same length"
            )
        object.__setattr__(self, "image_id", int(self.image_id))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "category_ids", category_ids)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, image_id: int) -> "Detections":
        """No detections for ``image_id``."""
        return cls(image_id, np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))

    def to_coco(self) -> list[dict]:
        """COCO results entries (``bbox`` is ``[x, y, w, h]``), in the stored order.

        >>> Detections(7, [[1, 2, 4, 6]], [0.5], [3]).to_coco()
        [{'image_id': 7, 'category_id': 3, 'bbox': [1.0, 2.0, 3.0, 4.0], 'score': 0.5}]
        """
        x1, y1, x2, y2 = self.boxes.T
        return [
            {
                "image_id": self.image_id,
                "category_id": int(c),
                "bbox": [float(a), float(b), float(w), float(h)],
                "score": float(s),
            }
            for a, b, w, h, s, c in zip(x1, y1, x2 - x1, y2 - y1, self.scores, self.category_ids)
        ]

    def to_dict(self) -> dict:
        """JSON-ready form (xyxy boxes, and ``features`` when captured); :meth:`from_dict` inverts it exactly."""
        data = {
            "image_id": self.image_id,
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "category_ids": self.category_ids.tolist(),
        }
        if self.features is not None:
            data["features"] = self.features.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Detections":
        features = data.get("features")
        return cls(data["image_id"], data["boxes"], data["scores"], data["category_ids"],
                   None if features is None else SaverFeatures.from_dict(features))


@dataclass(frozen=True)
class Prediction:
    """What a detector returns for a batch: one :class:`Detections` per image and what it cost.

    ``gflops`` and ``seconds`` are per image, aligned with ``detections``. GFLOPs follow the
    convention of :mod:`tinysaver_det.flops` (FLOPs = 2 * MACs, at the input shape actually run).
    """

    detections: list[Detections]
    gflops: list[float]
    seconds: list[float]
    input_shapes: list[tuple[int, int]] = field(default_factory=list)


@runtime_checkable
class Detector(Protocol):
    """Anything the cascade can run: predict a batch of images, report the cost of that call.

    ``images`` are HxWx3 uint8 BGR arrays (OpenCV's order, what Ultralytics and mmdet expect) of the
    original pixels, ``image_ids`` their dataset ids. Boxes come back in original-image pixels with
    the dataset's category ids.

    Only ``name`` and ``predict`` are required, so any object with them is a Detector (a test's fake,
    a user's own model). The optional members are those of :class:`DetectorBase`, which states each
    one's default; read them on any Detector through :func:`detector_settings`,
    :func:`detector_names`, :func:`detector_predict_args` and :func:`detector_uncounted_ops`, which
    apply those defaults to a Detector that lacks them.
    """

    name: str

    def predict(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> Prediction:
        ...


class DetectorBase:
    """The Detector contract with its optional members and their documented defaults.

    The adapters subclass it; a Detector that does not is read through the ``detector_*`` functions
    below, with the same defaults.

    Attributes:
        name: how the model is named in tables, records and errors.
        names: ``{output id: class name}``: what each category id it returns means. Default ``{}``
            (unknown): such a Detector can be a base only with a dataset, or a saver whose ids are
            already the base's.
        predict_args: the settings it predicts with (Ultralytics' ``conf``, ``iou``, ``max_det``...).
            ``conf`` is the score floor the cascade checks against ``min_score``
            (:func:`~tinysaver_det.detection.cascade.check_score_floor`). Default ``{}``: no floor.
        settings: everything that determines its predictions (weights path and sha256, predict
            settings, class map). A run records it in ``run.json`` and refuses to resume with other
            settings; an operating point pins and rebuilds the model from it. Default
            ``{"name": name}``: the model is known by its name only.
        uncounted_ops: the ops that ran but are not in its GFLOPs (see :mod:`tinysaver_det.flops`).
            Default ``()``.
    """

    name: str = "detector"
    # Read-only defaults (a subclass sets its own, as an instance attribute or a property).
    names: Mapping[int, str] = MappingProxyType({})
    predict_args: Mapping[str, object] = MappingProxyType({})
    uncounted_ops: tuple[str, ...] = ()

    @property
    def settings(self) -> dict:
        return {"name": self.name}

    def predict(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> Prediction:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(images, image_ids)")


@runtime_checkable
class RemappableDetector(Protocol):
    """A Detector whose own classes (``class_names``: ``{class index: name}``) can be pointed at other
    category ids by name after it is built (the Ultralytics adapter): the front door maps a saver onto
    the base's classes this way."""

    name: str
    class_names: dict

    def map_classes(self, category_ids_by_name: Mapping[str, int] | None, among: str = ...) -> None:
        ...


def _optional(detector: Detector, member: str):
    """``detector.<member>``, or :class:`DetectorBase`'s default for a Detector that lacks it (or has None)."""
    value = getattr(detector, member, None)
    if value is None:
        default = getattr(DetectorBase, member)
        value = default.fget(detector) if isinstance(default, property) else default
    return value


def detector_settings(detector: Detector) -> dict:
    """What determines ``detector``'s predictions (:attr:`DetectorBase.settings`; default ``{"name": ...}``).

    >>> class Fake:
    ...     name = "fake"
    >>> detector_settings(Fake())
    {'name': 'fake'}
    """
    return dict(_optional(detector, "settings"))


def detector_names(detector: Detector) -> dict[int, str]:
    """``{output id: class name}`` (:attr:`DetectorBase.names`; default ``{}``)."""
    names = _optional(detector, "names")
    if not isinstance(names, Mapping):
        raise TypeError(f"detector {detector.name!r}: names must be a dict {{id: name}}, got {type(names).__name__}")
    return {int(k): str(v) for k, v in names.items()}


def detector_predict_args(detector: Detector) -> dict:
    """The settings it predicts with (:attr:`DetectorBase.predict_args`; default ``{}``)."""
    return dict(_optional(detector, "predict_args"))


def detector_uncounted_ops(detector: Detector) -> tuple[str, ...]:
    """The ops not in its GFLOPs (:attr:`DetectorBase.uncounted_ops`; default ``()``)."""
    return tuple(_optional(detector, "uncounted_ops"))
