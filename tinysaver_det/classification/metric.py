"""Top-1 accuracy of a classifier cascade, as a :class:`~tinysaver_det.core.cascade_model.SelectionMetric`."""

from __future__ import annotations

import numpy as np

from tinysaver_det.classification.records import ClassifierRecord

_MODELS = ("saver", "base")


class AccuracyMetric:
    """Top-1 accuracy of a saver/base cascade from each model's per-sample correctness.

    Accuracy is a mean of per-sample correctness, so the cascade's accuracy for any routing is the
    mean, over samples, of the answering model's correctness: no model reruns.

    Args:
        saver_correct: (N,) bool, the saver's top-1 is right.
        base_correct: (N,) bool, the base's top-1 is right, same samples in the same order.

    >>> metric = AccuracyMetric([True, False, True], [True, True, False])
    >>> metric.selected_many(np.array([[0, 1, 0], [1, 1, 1]]))
    [{'top1': 1.0}, {'top1': 0.6666666666666666}]
    >>> metric.routed(np.array([True, False, True]))
    {'top1': 1.0}
    >>> metric.subset("saver", np.array([True, True, False]))
    0.5
    """

    primary = "top1"
    n_models = len(_MODELS)

    def __init__(self, saver_correct, base_correct) -> None:
        saver = np.asarray(saver_correct, dtype=bool).reshape(-1)
        base = np.asarray(base_correct, dtype=bool).reshape(-1)
        if len(saver) != len(base):
            raise ValueError(
                f"saver_correct ({len(saver)}) and base_correct ({len(base)}) must cover the same samples"
            )
        self._correct = np.stack([saver, base])  # (models, N), in cascade order
        self.n_samples = len(base)

    @classmethod
    def from_records(cls, saver: ClassifierRecord, base: ClassifierRecord) -> "AccuracyMetric":
        """Pair two records of the same samples; their labels must agree sample by sample."""
        if not np.array_equal(saver.labels, base.labels):
            raise ValueError(
                "saver and base records disagree on the labels: they must cover the same samples in the same order"
            )
        return cls(saver.correct, base.correct)

    def _masks(self, masks) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape[-1:] != (self.n_samples,):
            raise ValueError(f"mask must have shape ({self.n_samples},), got {masks.shape}")
        return masks

    def selected_many(self, stages) -> list[dict[str, float]]:
        """Accuracy for each row of an ``(S, N)`` array of model indices (0: saver, 1: base)."""
        stages = np.asarray(stages, dtype=np.int64)
        if stages.ndim != 2 or stages.shape[1] != self.n_samples:
            raise ValueError(f"stages must have shape (S, {self.n_samples}), got {stages.shape}")
        right = self._correct[stages, np.arange(self.n_samples)]
        return [{"top1": float(row.mean())} for row in right]

    def subset_many(self, model: int | str, masks) -> np.ndarray:
        """``(P,)`` accuracy of one model (index, or ``"saver"`` / ``"base"``) on each mask's samples; NaN on none."""
        if isinstance(model, str):
            if model not in _MODELS:
                raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
            model = _MODELS.index(model)
        masks = np.atleast_2d(self._masks(masks))
        counts = masks.sum(axis=1)
        right = (masks & self._correct[model]).sum(axis=1)
        return np.divide(right, counts, out=np.full(len(masks), np.nan), where=counts > 0)

    def routed(self, exit_mask) -> dict[str, float]:
        """Accuracy when the samples where ``exit_mask`` is True take the saver's answer, the rest the base's."""
        return self.selected_many(np.where(self._masks(exit_mask), 0, 1)[None])[0]

    def subset(self, model: int | str, mask) -> float:
        """Accuracy of one model on the samples where ``mask`` is True; NaN when none is."""
        return float(self.subset_many(model, self._masks(mask)[None])[0])
