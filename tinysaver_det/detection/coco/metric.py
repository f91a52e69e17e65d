"""The one cascade metric object over cached matchings: any routing of images to K models, scored exactly.

:class:`CocoCascadeMetric` is the metric protocol of :mod:`tinysaver_det.core.cascade_model`
(``SelectionMetric``): :meth:`~CocoCascadeMetric.selected_many` (per image the index of the answering
model) and :meth:`~CocoCascadeMetric.subset_many` (one model alone on subsets of the images, for
``r_match``). For a saver/base pair it also reads exit masks (:meth:`~CocoCascadeMetric.routed_many`).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from tinysaver_det.detection.coco.accumulate import check_selections, MergedEvaluations, resolve_stats
from tinysaver_det.detection.coco.ground_truth import CocoGroundTruth, load_ground_truth  # noqa: F401 (doctest)
from tinysaver_det.detection.coco.match import PerImageEval, evaluate_images
from tinysaver_det.detection.coco.nested import is_chain, nested_ap
from tinysaver_det.detection.coco.params import CocoParams
from tinysaver_det.detection.types import Detections


class CocoCascadeMetric:
    """COCO bbox metrics of a cascade of K models for any per-image choice of model.

    Every model is matched once (:func:`evaluate_images`) and all are merged once. After that, each
    routing only picks and counts cached entries. Routings are over ``image_ids`` (sorted image ids
    of the ground truth): an ``(S, I)`` array of model indices (:meth:`selected_many`), or, for two
    models (saver, base), [I] exit masks: True takes the saver's detections, False the base's
    (:meth:`routed_many`).

    Args:
        evaluations: each model's :class:`PerImageEval`, in cascade order (cheapest first).
        workers: see the attribute (keyword only).

    Attributes:
        primary: ``"AP"``, the headline key of :meth:`routed`.
        n_models: number of models K.
        n_samples: number of images I.
        image_ids: [I] the image id of each mask position.
        workers: processes that score many routings at once (``*_many``), threads for r_match's chain of
            exit sets (:func:`~tinysaver_det.detection.coco.nested.nested_ap`); results do not depend on it.

    >>> from tinysaver_det.detection.types import Detections
    >>> gt = load_ground_truth({"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}], "annotations": [
    ...     {"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100} for i in (1, 2)]})
    >>> hit = {i: Detections(i, [[0, 0, 10, 10]], [0.9], [1]) for i in (1, 2)}
    >>> metric = CocoCascadeMetric.from_detections(gt, saver={1: hit[1]}, base=hit)
    >>> [round(stats["AP"], 3) for stats in metric.routed_many(np.array([[True, True], [False, False]]))]
    [0.505, 1.0]
    >>> [round(stats["AP"], 3) for stats in metric.selected_many(np.array([[0, 0], [1, 1]]))]
    [0.505, 1.0]
    >>> metric.subset("saver", np.array([True, False])) == metric.subset("base", np.array([True, False]))
    True
    """

    primary = "AP"
    _pair_names = ("saver", "base")

    def __init__(self, *evaluations: PerImageEval, workers: int = 1):
        if len(evaluations) == 1 and not isinstance(evaluations[0], PerImageEval):
            evaluations = tuple(evaluations[0])  # one sequence of evaluations
        if not evaluations:
            raise ValueError("a cascade metric needs at least one model's evaluation")
        self._evaluations = tuple(evaluations)
        self._merged = MergedEvaluations(self._evaluations)
        self.n_models = len(self._evaluations)
        self.image_ids = self._evaluations[0].ground_truth.image_ids
        self.n_samples = len(self.image_ids)
        self.workers = workers

    @classmethod
    def from_detections(
        cls,
        ground_truth: CocoGroundTruth,
        saver: Mapping[int, Detections] | Iterable[Detections],
        base: Mapping[int, Detections] | Iterable[Detections],
        params: CocoParams | None = None,
    ) -> "CocoCascadeMetric":
        """Evaluate both models' detections (:func:`evaluate_images`) and merge them."""
        return cls(evaluate_images(ground_truth, saver, params), evaluate_images(ground_truth, base, params))

    def routed(self, exit_mask: np.ndarray) -> dict[str, float]:
        """The 12 stats of a saver/base cascade: True -> the saver's detections, False -> the base's."""
        return self.routed_many(np.asarray(exit_mask)[None])[0]

    def selected_many(self, stages: np.ndarray) -> list[dict[str, float]]:
        """The 12 COCO stats for each row of an ``(S, I)`` array of model indices (the ``SelectionMetric``)."""
        stages = np.asarray(stages)
        if stages.ndim != 2 or stages.shape[1] != self.n_samples:
            raise ValueError(f"stages must have shape (S, {self.n_samples}), got {stages.shape}")
        one_hot = np.stack([stages == k for k in range(self.n_models)], axis=1)
        selections = check_selections(one_hot, self.n_models, self.n_samples, "stages")
        return self._merged.summaries(selections, workers=self.workers)

    def routed_many(self, exit_masks: np.ndarray) -> list[dict[str, float]]:
        """:meth:`routed` for each row of an [S×I] stack of exit masks (e.g. one per threshold)."""
        self._check_pair()
        exit_masks = np.asarray(exit_masks)
        if exit_masks.dtype != bool:
            raise TypeError(f"exit_masks must be a bool array, got dtype {exit_masks.dtype}")
        if exit_masks.ndim != 2:
            raise ValueError(f"exit_masks must have shape (n_masks, {self.n_samples}), got {exit_masks.shape}")
        return self.selected_many(np.where(exit_masks, 0, 1))

    def subset(self, model: int | str, mask: np.ndarray) -> float:
        """AP of one model alone on the images where ``mask`` is True (-1 without any gt there).

        This equals pycocotools with ``params.imgIds`` set to those images.
        """
        return float(self.subset_many(model, np.asarray(mask)[None])[0])

    def subset_many(self, model: int | str, masks: np.ndarray) -> np.ndarray:
        """:meth:`subset` for each row of a [P×I] stack of masks, in one evaluation (``core.r_match`` uses it).

        ``model``: its index in the cascade, or for a pair ``"saver"`` (0) / ``"base"`` (1).
        """
        k = self._model_index(model)
        masks = check_selections(np.asarray(masks)[:, None], 1, self.n_samples, "masks")[:, 0]
        (_, _, _, area, max_det), = (stat for stat in resolve_stats(self._merged.params) if stat[0] == self.primary)
        if area is not None and max_det is not None and is_chain(masks):
            values = nested_ap(self._merged, k, masks, area, max_det, self.workers)  # r_match's exit sets, in one walk
            if values is not None:
                return values
        selections = np.zeros((len(masks), self.n_models, self.n_samples), dtype=bool)
        selections[:, k] = masks
        summaries = self._merged.summaries(selections, keys=(self.primary,), workers=self.workers)
        return np.array([stats[self.primary] for stats in summaries], dtype=np.float64)

    def _model_index(self, model: int | str) -> int:
        if isinstance(model, str):
            self._check_pair()
            if model not in self._pair_names:
                raise ValueError(f"model must be one of {self._pair_names} or an index, got {model!r}")
            return self._pair_names.index(model)
        if not 0 <= int(model) < self.n_models:
            raise ValueError(f"model index {model} out of range for {self.n_models} models")
        return int(model)

    def _check_pair(self) -> None:
        if self.n_models != 2:
            raise ValueError(f"exit masks route between a saver and a base: this metric has {self.n_models} models")
