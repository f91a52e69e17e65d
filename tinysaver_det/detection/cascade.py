"""The detection cascade: the saver answers the images it is confident on, the base the rest.

:class:`MultiStageCascade` runs K >= 2 detectors, cheapest first, with one threshold per stage but
the last (the rule of :mod:`tinysaver_det.core.cascade_model`); :class:`Cascade` is its two-stage form
with the saver/base vocabulary of the paper and of the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ExitPolicy
from tinysaver_det.core.score_routers import Router
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.detection.types import Detections, Detector, Prediction, detector_predict_args
from tinysaver_det.errors import TinySaverInputError


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
    counts the saver, plus the base only when the image was routed to it. ``router_gflops`` is the
    router's own counted cost on the image (0 for the score rules; a post-evaluator's, paper Eq. 5).
    """

    image_id: int
    confidence: float
    exited: bool
    n_boxes: int
    saver_gflops: float
    base_gflops: float
    seconds: float
    router_gflops: float = 0.0


def model_outputs(prediction: Prediction) -> list[ModelOutput]:
    """One :class:`ModelOutput` per image of a batch prediction."""
    return [ModelOutput(*fields) for fields in zip(prediction.detections, prediction.gflops, prediction.seconds)]


#: What ``confidence=`` accepts: a name of ``CONFIDENCE_FUNCTIONS``, a callable ``(scores, min_score) -> float``,
#: a :class:`~tinysaver_det.core.score_routers.Router` (sees the whole Detections), or a router file path (.json).
ConfidenceOption = Union[str, os.PathLike, Router, Callable[..., float]]


@dataclass(frozen=True)
class StageOutput:
    """What a multi-stage cascade did with one image.

    Attributes:
        detections: the answer: the full detection list of the stage that answered.
        stage: index of that stage (0 = the cheapest model).
        confidences: the confidence of each non-final stage the image reached, in order.
        outputs: one entry per stage: that model's output, or None where it did not run.
        gflops: GFLOPs the cascade spent: the stages ``0..stage`` (not the extra runs of ``run_all``)
            and the routers that decided at the stages before.
        seconds: model seconds spent, likewise.
        router_gflops: the routers' own counted cost within ``gflops``.
    """

    detections: Detections
    stage: int
    confidences: tuple[float, ...]
    outputs: tuple[ModelOutput | None, ...]
    gflops: float
    seconds: float
    router_gflops: float = 0.0


@dataclass(frozen=True)
class CascadeOutput(StageOutput):
    """A two-stage cascade's :class:`StageOutput` with the saver/base names of the paper and of the run
    directory: what :class:`Cascade` returns, so that ``run`` and ``__call__`` give one type for any K.

    Attributes (beside :class:`StageOutput`'s):
        saver: the saver's output (it runs on every image).
        base: the base's output, None where it did not run.
        record: the image's :class:`ImageRecord` (a ``records.jsonl`` row of a cascade run).
    """

    @property
    def saver(self) -> ModelOutput:
        return self.outputs[0]

    @property
    def base(self) -> ModelOutput | None:
        return self.outputs[1]

    @property
    def record(self) -> ImageRecord:
        exited = self.stage == 0
        return ImageRecord(
            image_id=self.saver.detections.image_id,
            confidence=self.confidences[0],
            exited=exited,
            n_boxes=len(self.detections),
            saver_gflops=self.saver.gflops,
            base_gflops=0.0 if exited else self.base.gflops,
            seconds=self.seconds,
            router_gflops=self.router_gflops,
        )


def _per_stage(option, n: int, name: str) -> list:
    if isinstance(option, (list, tuple)):
        if len(option) != n:
            raise ValueError(f"{name}: {len(option)} given for {n} stages that exit (one per stage but the last)")
        return list(option)
    return [option] * n


def check_score_floor(detector: Detector, min_score: float) -> None:
    """Refuse an exiting stage that drops boxes the exit rule must see.

    The image confidence is computed from every box scoring ``>= min_score``; a detector set to
    keep only boxes above a higher ``conf`` (Ultralytics' ``predict`` default 0.25, the usual
    deployment setting) would hide some of them and silently change which images exit. A
    detector states its floor as ``predict_args["conf"]`` (the Ultralytics adapter); one that
    states none is taken as it is.

    Raises:
        TinySaverInputError: naming the detector, its conf and the min score.
    """
    conf = detector_predict_args(detector).get("conf")
    if conf is not None and conf > min_score:
        raise TinySaverInputError(
            f"{detector.name!r} predicts with conf={conf:g} > min_score={min_score:g}: the router must see "
            f"every box scoring >= min_score (the image confidence is computed from them), so a higher conf "
            f"would change which images exit. Give it conf <= {min_score:g} (default 0.001) and filter the "
            "returned boxes instead (TinySaver.predict(conf=...), tinysaver predict --conf)"
        )


class MultiStageCascade:
    """K >= 2 detectors, cheapest first: an image stops at the first stage whose confidence reaches
    that stage's threshold; the last stage answers every image that reaches it.

    Each stage runs once per batch on the images still pending, as one batch.

    Args:
        stages: the detectors, cheapest first.
        thresholds: one exit rule per stage but the last: an
            :class:`~tinysaver_det.core.policy.ExitPolicy` (threshold, confidence, min_score as one
            value), or a bare threshold (``>= 0``; above 1 that stage never answers) that takes
            ``confidence`` and ``min_score`` below.
        min_score: score floor given to score-function confidences of bare thresholds.
        confidence: for bare thresholds, one option for every exiting stage, or a sequence with one
            per exiting stage: a name from ``tinysaver_det.core.CONFIDENCE_FUNCTIONS``, a callable
            ``(scores, min_score) -> float``, a router object, or a router file (``.json``); see
            :func:`tinysaver_det.detection.router_files.resolve_router`.
        run_all: run every stage on every image (to cache all answers for offline sweeps); the
            routing and the cost counted are unchanged.

    Calling the cascade (``cascade(images, ids)``, the same as :meth:`run`) gives one
    :attr:`output_type` per image: :class:`StageOutput`, or its two-stage view :class:`CascadeOutput`
    for a :class:`Cascade`.
    """

    #: What :meth:`run` returns per image.
    output_type: type[StageOutput] = StageOutput

    def __init__(
        self,
        stages: Sequence[Detector],
        thresholds: Sequence[float | ExitPolicy] | float | ExitPolicy,
        min_score: float = DEFAULT_MIN_SCORE,
        confidence: ConfidenceOption | Sequence[ConfidenceOption] = "mean",
        run_all: bool = False,
    ) -> None:
        self.stages = list(stages)
        if len(self.stages) < 2:
            raise ValueError(f"a cascade needs at least 2 stages, got {len(self.stages)}")
        rules = [thresholds] if isinstance(thresholds, ExitPolicy) or np.ndim(thresholds) == 0 else list(thresholds)
        if len(rules) != len(self.stages) - 1:
            raise ValueError(
                f"thresholds: {len(rules)} given for {len(self.stages)} stages; give one per stage but the last"
            )
        options = _per_stage(confidence, len(rules), "confidence")
        self.policies = [
            rule if isinstance(rule, ExitPolicy) else ExitPolicy(rule, option, min_score)
            for rule, option in zip(rules, options)
        ]
        self.min_score = self.policies[0].min_score
        for stage, policy in zip(self.stages, self.policies):
            check_score_floor(stage, policy.min_score)
        self.routers = [resolve_router(policy.confidence, policy.min_score) for policy in self.policies]
        for router, stage in zip(self.routers, self.stages):  # a router bound to one saver refuses another
            check = getattr(router, "check_saver", None)
            if check is not None:
                check(getattr(stage, "settings", None))  # None: a detector known by name only is not checked
        self.run_all = run_all

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(policy.threshold for policy in self.policies)

    def run(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> list[StageOutput]:
        """Run the cascade on one batch of BGR uint8 images: one :attr:`output_type` per image, in order."""
        n, last = len(images), len(self.stages) - 1
        outputs: list[list[ModelOutput | None]] = [[None] * len(self.stages) for _ in range(n)]
        confidences: list[list[float]] = [[] for _ in range(n)]
        router_gflops = [0.0] * n
        answered_at = [last] * n
        pending = list(range(n))
        for k, model in enumerate(self.stages):
            to_run = list(range(n)) if self.run_all else pending
            if not to_run:
                break
            prediction = model.predict([images[i] for i in to_run], [image_ids[i] for i in to_run])
            for i, output in zip(to_run, model_outputs(prediction)):
                outputs[i][k] = output
            if k == last:
                break
            still_pending = []
            for i in pending:
                confidence = float(self.routers[k](outputs[i][k].detections))
                confidences[i].append(confidence)
                router_gflops[i] += float(self.routers[k].gflops(outputs[i][k].detections))
                if self.policies[k].exits(confidence):
                    answered_at[i] = k
                else:
                    still_pending.append(i)
            pending = still_pending
        return [self._answer(outputs[i], answered_at[i], confidences[i], router_gflops[i]) for i in range(n)]

    def _answer(self, outputs: list[ModelOutput | None], stage: int, confidences: list[float],
                router_gflops: float = 0.0) -> StageOutput:
        spent = outputs[: stage + 1]
        return self.output_type(
            detections=outputs[stage].detections,
            stage=stage,
            confidences=tuple(confidences),
            outputs=tuple(outputs),
            gflops=float(sum(o.gflops for o in spent)) + router_gflops,
            seconds=float(sum(o.seconds for o in spent)),
            router_gflops=router_gflops,
        )

    __call__ = run


class Cascade(MultiStageCascade):
    """TinySaver for detection (paper Sec. 4.5): the two-stage :class:`MultiStageCascade`.

    The saver runs on every image of a batch. An image whose confidence (default: mean score of
    its boxes >= ``min_score``, 0 with none) is ``>= threshold`` keeps the saver's full detection
    list; the other images go to the base, as one batch.

    Args:
        saver, base: any :class:`~tinysaver_det.detection.types.Detector`.
        threshold: the exit rule, an :class:`~tinysaver_det.core.policy.ExitPolicy` (threshold,
            confidence, min_score as one value), or a bare exit threshold t (0 keeps every saver
            answer, t > 1 sends everything to the base) with ``min_score`` and ``confidence``.
        min_score: boxes below it do not count towards the confidence (they stay in the answer).
        confidence: a name from ``tinysaver_det.core.CONFIDENCE_FUNCTIONS``, a callable
            ``(scores, min_score) -> float``, a router object that sees the saver's whole
            Detections (e.g. a learned :class:`~tinysaver_det.detection.logistic_router.LogisticRouter`), or the
            path of a router file (``.json``).
        run_base_on_all: also run the base on exited images, so that every image has both models'
            predictions and later threshold sweeps need no re-run (``--full``).

    It returns :class:`CascadeOutput` (a :class:`StageOutput` with ``saver``, ``base`` and ``record``).
    """

    output_type = CascadeOutput

    def __init__(
        self,
        saver: Detector,
        base: Detector,
        threshold: float | ExitPolicy,
        min_score: float = DEFAULT_MIN_SCORE,
        confidence: ConfidenceOption = "mean",
        run_base_on_all: bool = False,
    ) -> None:
        super().__init__([saver, base], [threshold], min_score, confidence, run_all=run_base_on_all)
        self.saver, self.base = saver, base
        self.policy = self.policies[0]
        self.router = self.routers[0]
        self.confidence_name = self.router.name
        self.run_base_on_all = run_base_on_all
