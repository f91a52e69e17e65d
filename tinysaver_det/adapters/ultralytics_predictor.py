"""The Ultralytics predictor every YOLO prediction of this package runs, and its one NMS call.

:class:`EvaluationPredictor` is Ultralytics' ``DetectionPredictor`` (same letterbox, same forward pass,
same scaling back to the original image) whose ``postprocess`` calls ``nms.non_max_suppression`` itself,
with every argument of the chosen mode written out (:func:`run_nms`):

* ``validator`` (the evaluation default): as ``DetectionValidator.postprocess`` calls it: ``multi_label=True``,
  the model's conf / IoU / max_det, class-aware;
* ``predictor``: as ``DetectionPredictor.postprocess`` calls it: one label per box.

In both, Ultralytics' NMS time limit is lifted: it stops after ``2 + 0.05 * batch`` seconds and silently
returns nothing for the rest of the batch, which on a busy CPU at conf 0.001 loses whole images' boxes.

Ultralytics rebuilds its predictor when the class passed to ``YOLO.predict`` changes, and takes no argument
of ours, so the mode is a class attribute: :meth:`EvaluationPredictor.with_nms` gives the class of a mode
(one class per mode, cached, so the predictor is built once). The saver-feature predictor
(:mod:`tinysaver_det.adapters.ultralytics_features`) extends this one and reads :attr:`~EvaluationPredictor.last_nms`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ultralytics.models.yolo.detect import DetectionPredictor
from ultralytics.utils import nms, ops

from tinysaver_det.detection.nms_mode import DEFAULT_NMS, PREDICTOR, VALIDATOR, check_nms_mode


def run_nms(prediction, args, mode: str, end2end: bool = False):
    """Ultralytics' NMS as its validator (``mode="validator"``) or its predictor (``"predictor"``) calls it.

    ``args`` are the predictor's settings (``conf``, ``iou``, ``classes``, ``agnostic_nms``, ``max_det``).
    The validator passes no ``classes``; the predictor's default ``classes`` is None, so both calls filter
    alike unless classes are asked for. Returns ``(outputs, kept)``: per image an ``(N, 6)`` tensor
    (xyxy, score, class) and the anchor index of each row (an anchor appears once per label it keeps).
    """
    return nms.non_max_suppression(
        prediction,
        args.conf,
        args.iou,
        args.classes,
        args.agnostic_nms,
        multi_label=check_nms_mode(mode) == VALIDATOR,
        max_det=args.max_det,
        nc=0,  # detection: every channel after the 4 box ones is a class score
        max_time_img=math.inf,
        end2end=end2end,
        return_idxs=True,
    )


@dataclass
class NmsPass:
    """One batch's NMS: the raw head output it read, its outputs (in input-image pixels, before scaling
    back) and the anchor index of each kept row."""

    prediction: object
    outputs: list
    kept: list


class EvaluationPredictor(DetectionPredictor):
    """Ultralytics' DetectionPredictor with this package's NMS call; records the input shape it ran.

    Attributes:
        nms_mode: the NMS of this class (see the module docstring).
        keep_single_label: in the validator mode, also run the predictor's single-label NMS on the same
            forward pass and leave its results in :attr:`single_label_results` (what ``YOLO.predict``
            would have returned), for a deployment that routes on the evaluated answer but returns
            Ultralytics' usual boxes.
        input_shape: the shape of the last batch's input tensor.
        last_nms: the last batch's :class:`NmsPass` in :attr:`nms_mode`.
        single_label_results: the last batch's single-label ``Results`` (None unless asked for).
    """

    nms_mode: ClassVar[str] = DEFAULT_NMS
    keep_single_label: ClassVar[bool] = False
    _modes: ClassVar[dict] = {}

    input_shape: tuple[int, ...] = ()
    last_nms: NmsPass | None = None
    single_label_results: list | None = None

    @classmethod
    def with_nms(cls, mode: str, keep_single_label: bool = False) -> type["EvaluationPredictor"]:
        """This class set to the NMS ``mode`` (the same class object for the same arguments)."""
        key = (cls, check_nms_mode(mode), bool(keep_single_label))
        if key not in EvaluationPredictor._modes:
            attributes = {"nms_mode": mode, "keep_single_label": bool(keep_single_label), "__module__": cls.__module__}
            EvaluationPredictor._modes[key] = type(f"{cls.__name__}_{mode}", (cls,), attributes)
        return EvaluationPredictor._modes[key]

    def preprocess(self, im):
        tensor = super().preprocess(im)
        self.input_shape = tuple(tensor.shape)
        return tensor

    def postprocess(self, preds, img, orig_imgs, **kwargs):
        end2end = getattr(self.model, "end2end", False)
        outputs, kept = run_nms(preds, self.args, self.nms_mode, end2end)
        self.last_nms = NmsPass(preds, outputs, kept)
        if not isinstance(orig_imgs, list):  # a torch batch, as in DetectionPredictor.postprocess
            orig_imgs = ops.convert_torch2numpy_batch(orig_imgs)[..., ::-1]
        self.single_label_results = None
        if self.keep_single_label and self.nms_mode != PREDICTOR:
            single, _ = run_nms(preds, self.args, PREDICTOR, end2end)
            self.single_label_results = self.construct_results(single, img, orig_imgs)
        # construct_results scales its rows back to the original image in place: last_nms keeps the originals
        return self.construct_results([output.clone() for output in outputs], img, orig_imgs)
