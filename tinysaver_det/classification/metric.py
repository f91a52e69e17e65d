"""Top-1 accuracy of a classifier cascade, as a :class:`~tinysaver_det.core.sweep.SystemMetric`."""

from __future__ import annotations

import numpy as np

from tinysaver_det.classification.records import ClassifierRecord

_MODELS = ("saver", "base")


class AccuracyMetric:
    """Top-1 accuracy of the cascade from each model's per-sample correctness.

    Accuracy is a mean of per-sample correctness, so the cascade's accuracy for any exit mask is
    the mean of the saver's correctness where it exits and the base's elsewhere: no model reruns.

    Args:
        saver_correct: (N,) bool, the saver's top-1 is right.
        base_correct: (N,) bool, the base's top-1 is right, same samples in the same order.

    >>> metric = AccuracyMetric([True, False, True], [True, True, False])
    >>> metric.routed(np.array([True, False, True]))
    {'top1': 1.0}
    >>> metric.subset("saver", np.array([True, True, False]))
    0.5
    """

    primary = "top1"

    def __init__(self, saver_correct, base_correct) -> None:
        self._correct = {
            "saver": np.asarray(saver_correct, dtype=bool).reshape(-1),
            "base": np.asarray(base_correct, dtype=bool).reshape(-1),
        }
        if len(self._correct["saver"]) != len(self._correct["base"]):
            raise ValueError(
                f"saver_correct ({len(self._correct['saver'])}) and base_correct "
                f"({len(self._correct['base'])}) must cover the same samples"
            )
        self.n_samples = len(self._correct["base"])

    @classmethod
    def from_records(cls, saver: ClassifierRecord, base: ClassifierRecord) -> "AccuracyMetric":
        """Pair two records of the same samples; their labels must agree sample by sample."""
        if not np.array_equal(saver.labels, base.labels):
            raise ValueError(
                "saver and base records disagree on the labels: they must cover the same samples in the same order"
            )
        return cls(saver.correct, base.correct)

    def _mask(self, mask) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_samples,):
            raise ValueError(f"mask must have shape ({self.n_samples},), got {mask.shape}")
        return mask

    def routed(self, exit_mask) -> dict[str, float]:
        """Accuracy when the samples where ``exit_mask`` is True take the saver's answer, the rest the base's."""
        mask = self._mask(exit_mask)
        return {"top1": float(np.where(mask, self._correct["saver"], self._correct["base"]).mean())}

    def subset(self, model: str, mask) -> float:
        """Accuracy of ``model`` (``"saver"`` or ``"base"``) on the samples where ``mask`` is True; NaN when none is."""
        if model not in _MODELS:
            raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
        selected = self._correct[model][self._mask(mask)]
        return float(selected.mean()) if selected.size else float("nan")
