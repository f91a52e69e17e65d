"""Capture the saver's own features during the YOLO prediction that makes its detections.

:class:`FeaturePredictor` is the evaluation predictor of :mod:`tinysaver_det.adapters.ultralytics_predictor`
plus two taps on the same forward pass, so a post-evaluator costs no second forward:

* a forward pre-hook on the Detect head takes the FPN maps entering it and pools each channel
  (global average and max);
* the predictor's NMS pass (:attr:`~tinysaver_det.adapters.ultralytics_predictor.EvaluationPredictor.last_nms`)
  gives the anchor index of every kept box and the raw head output before NMS (every anchor's box and class
  scores), which describe the candidates each kept box absorbed
  (:func:`tinysaver_det.detection.saver_features.candidate_features`). In the validator's multi-label mode an
  anchor kept under two labels is described twice (by its best class), so features depend on the NMS mode,
  which the predictions' provenance records.

Only the forward passes that run between ``preprocess`` and ``postprocess`` of a prediction are
read: the warm-up and the FLOPs counter's dummy forward are ignored. ``forward_calls`` counts the
head's calls during predictions (one per batch; tests check it).
"""

from __future__ import annotations

import numpy as np
import torch

from tinysaver_det.adapters.ultralytics_predictor import EvaluationPredictor, NmsPass
from tinysaver_det.detection.saver_features import (
    MAX_DESCRIBED,
    candidate_features,
    candidate_flops,
    pooling_flops,
    xywh_to_xyxy,
)
from tinysaver_det.core.policy import DEFAULT_MIN_SCORE

class FeaturePredictor(EvaluationPredictor):
    """The evaluation predictor that also leaves, per image of the last batch, its feature vector.

    Attributes:
        captured: ``[(values, flops), ...]`` one per image of the last batch, in batch order.
        forward_calls: Detect-head calls during predictions (not warm-up or FLOPs counting).
        forwarded_images: images those calls covered (their batch sizes summed).
    """

    captured: list | None = None
    forward_calls: int = 0
    forwarded_images: int = 0
    min_score: float = DEFAULT_MIN_SCORE

    def preprocess(self, im):
        tensor = super().preprocess(im)
        self._hook_head()
        self._capturing, self._pooled, self._shapes = True, None, []
        return tensor

    def _hook_head(self) -> None:
        if getattr(self, "_hooked", None) is self.model:
            return
        head = self.model.model.model[-1]  # AutoBackend -> DetectionModel -> Sequential[-1] = Detect
        head.register_forward_pre_hook(self._read_head_input)
        self._hooked = self.model
        self._n_classes = int(head.nc)

    def _read_head_input(self, module, args) -> None:
        if not getattr(self, "_capturing", False):
            return
        maps = args[0]
        self.forward_calls += 1
        self.forwarded_images += int(maps[0].shape[0])
        with torch.no_grad():
            pooled = [torch.cat([m.float().mean(dim=(2, 3)), m.float().amax(dim=(2, 3))], dim=1) for m in maps]
        self._pooled = torch.cat(pooled, dim=1).cpu().numpy().astype(np.float64)
        self._shapes = [tuple(int(s) for s in m.shape[1:]) for m in maps]

    def postprocess(self, preds, img, orig_imgs, **kwargs):
        results = super().postprocess(preds, img, orig_imgs, **kwargs)
        self._capturing = False
        self.captured = self._describe(self.last_nms)
        return results

    def _describe(self, nms_pass: NmsPass | None) -> list:
        if self._pooled is None or nms_pass is None:
            raise RuntimeError("feature capture: the Detect head or NMS did not run during this prediction")
        raw = nms_pass.prediction[0] if isinstance(nms_pass.prediction, (list, tuple)) else nms_pass.prediction
        raw = raw.detach().float().cpu().numpy()  # (B, 4 + C, A): xywh, class scores
        conf, iou = float(self.args.conf), float(self.args.iou)
        level_sizes = [h * w for _, h, w in self._shapes]
        pool_cost = pooling_flops(self._shapes)
        captured = []
        for b in range(raw.shape[0]):
            boxes = xywh_to_xyxy(raw[b, :4].T)
            scores = raw[b, 4 : 4 + self._n_classes].T
            output = nms_pass.outputs[b].detach().cpu().numpy()
            kept = nms_pass.kept[b].detach().cpu().numpy().astype(np.int64).reshape(-1)
            values, pairs = candidate_features(boxes, scores, kept, output[:, 4], level_sizes, conf, iou,
                                               self.min_score)
            described = min(int(np.count_nonzero(output[:, 4] >= self.min_score)), MAX_DESCRIBED)
            flops = pool_cost + candidate_flops(len(boxes), self._n_classes, described, pairs)
            captured.append((np.concatenate([values, self._pooled[b]]), flops))
        return captured
