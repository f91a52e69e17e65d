"""The detection cascade: the saver answers the images it is confident on, the base the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ConfidenceFunction, ExitPolicy, resolve_confidence
from tinysaver_det.detection.types import Detections, Detector, Prediction


@dataclass(frozen=True)
class ModelOutput:
    """One model's answer for one image and what it cost (GFLOPs, seconds)."""

    detections: Detections
    gflops: float
    seconds: float


@dataclass(frozen=True)
class ImageRecord:
    """What happened to one image in the cascade.

    ``base_gflops`` is 0 when the image exited: it is the cost the cascade spends, even when the
    base also ran on the image to cache its answer (``run_base_on_all``). ``seconds`` likewise
    counts the saver, plus the base only when the image was routed to it.
    """

    image_id: int
    confidence: float
    exited: bool
    n_boxes: int
    saver_gflops: float
    base_gflops: float
    seconds: float


@dataclass(frozen=True)
class CascadeOutput:
    """The cascade's answer for one image, its record, and each model's own output."""

    detections: Detections
    record: ImageRecord
    saver: ModelOutput
    base: ModelOutput | None


def _outputs(prediction: Prediction) -> list[ModelOutput]:
    return [ModelOutput(*fields) for fields in zip(prediction.detections, prediction.gflops, prediction.seconds)]


class Cascade:
    """TinySaver for detection (paper Sec. 4.5).

    The saver runs on every image of a batch. An image whose confidence (default: mean score of
    its boxes >= ``min_score``, 0 with none) is ``>= threshold`` keeps the saver's full detection
    list; the other images go to the base, as one batch.

    Args:
        saver, base: any :class:`~tinysaver_det.detection.types.Detector`.
        threshold: exit threshold t; 0 keeps every saver answer, t > 1 sends everything to the base.
        min_score: boxes below it do not count towards the confidence (they stay in the answer).
        confidence: a name from ``tinysaver_det.core.CONFIDENCE_FUNCTIONS`` or a callable
            ``(scores, min_score) -> float``.
        run_base_on_all: also run the base on exited images, so that every image has both models'
            predictions and later threshold sweeps need no re-run (``--full``).
    """

    def __init__(
        self,
        saver: Detector,
        base: Detector,
        threshold: float,
        min_score: float = DEFAULT_MIN_SCORE,
        confidence: str | ConfidenceFunction = "mean",
        run_base_on_all: bool = False,
    ) -> None:
        self.saver = saver
        self.base = base
        self.policy = ExitPolicy(threshold)
        self.min_score = float(min_score)
        self.confidence = resolve_confidence(confidence)
        self.confidence_name = confidence if isinstance(confidence, str) else getattr(confidence, "__name__", "custom")
        self.run_base_on_all = run_base_on_all

    def __call__(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> list[CascadeOutput]:
        """Run the cascade on one batch of BGR uint8 images."""
        saver_outputs = _outputs(self.saver.predict(images, image_ids))
        confidences = [self.confidence(out.detections.scores, self.min_score) for out in saver_outputs]
        exits = [self.policy.exits(c) for c in confidences]
        to_base = [i for i, exited in enumerate(exits) if self.run_base_on_all or not exited]
        base_prediction = self.base.predict([images[i] for i in to_base], [image_ids[i] for i in to_base])
        base_outputs: list[ModelOutput | None] = [None] * len(images)
        for i, output in zip(to_base, _outputs(base_prediction)):
            base_outputs[i] = output
        return [
            self._combine(saver_out, base_out, confidence, exited)
            for saver_out, base_out, confidence, exited in zip(saver_outputs, base_outputs, confidences, exits)
        ]

    @staticmethod
    def _combine(saver: ModelOutput, base: ModelOutput | None, confidence: float, exited: bool) -> CascadeOutput:
        answer = saver if exited else base
        record = ImageRecord(
            image_id=saver.detections.image_id,
            confidence=confidence,
            exited=exited,
            n_boxes=len(answer.detections),
            saver_gflops=saver.gflops,
            base_gflops=0.0 if exited else base.gflops,
            seconds=saver.seconds + (0.0 if exited else base.seconds),
        )
        return CascadeOutput(answer.detections, record, saver, base)
