"""TinySaver as an mmdet 3.x detector: an Ultralytics saver in front of any mmdet detector."""

from __future__ import annotations

import dataclasses
import os
from time import perf_counter
from typing import Sequence

import numpy as np
import torch
from mmdet.datasets import CocoDataset
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import load_checkpoint
from mmengine.structures import InstanceData

from tinysaver_det.adapters.mmdet import MMDetFlops, instances_to_detections
from tinysaver_det.build import build_detector, stage_needs_features, with_class_map
from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ConfidenceFunction, ExitPolicy
from tinysaver_det.core.score_routers import Router
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.detection.cascade import Cascade
from tinysaver_det.detection.images import load_image
from tinysaver_det.detection.types import Prediction

ROUTING_KEY = "tinysaver"  # metainfo key of each sample's routing record


def _default_saver_device() -> str:
    """The GPU of this process (``LOCAL_RANK`` under a launcher) when there is one, else the CPU."""
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"


def _load_base_alone_checkpoint(module: "TinySaverDetector", state_dict: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: a checkpoint of the base alone loads into ``base.``.

    Official model-zoo weights are the base detector's state dict (``backbone.*``, ``bbox_head.*``),
    while this model keeps the base under ``base.``. When none of the keys is ``base.*``, each key
    gets that prefix, so mmengine's ``load_from`` (mmdet's ``tools/test.py CONFIG CHECKPOINT``),
    ``load_checkpoint`` and ``base_checkpoint`` all load official weights without a screen of missing
    and unexpected keys. Keys under ``module.base_training_only`` (parts of the published model that
    serve training only and that this inference model leaves out) are dropped. A checkpoint of a
    whole TinySaverDetector (``base.*`` keys) loads unchanged.
    """
    keys = [key for key in state_dict if key.startswith(prefix)]
    if not keys or any(key.startswith(prefix + "base.") for key in keys):
        return
    for key in keys:
        value = state_dict.pop(key)
        name = key[len(prefix):]
        if not name.startswith(module.base_training_only):
            state_dict[f"{prefix}base.{name}"] = value


def _checkpoint_classes(checkpoint: dict):
    """Class names stored in an mmdet checkpoint's meta (``dataset_meta.classes``, or old ``CLASSES``)."""
    meta = checkpoint.get("meta", {})
    dataset_meta = {key.lower(): value for key, value in meta.get("dataset_meta", {}).items()}
    return dataset_meta.get("classes", meta.get("CLASSES"))


class _PreprocessedBase:
    """The base detector as a Detector over one batch the data preprocessor already made.

    The cascade hands it the original images of the images it defers, with their positions in the
    batch as ids; the base runs on those rows of the preprocessed tensor (its own resize, normalization
    and padding), with their data samples, so its boxes come back in original coordinates when
    ``rescale`` is set, labels in the base's label order.
    """

    name = "base"

    def __init__(self, detector: "TinySaverDetector", inputs: torch.Tensor, samples: list, rescale: bool) -> None:
        self._detector = detector
        self._inputs = inputs
        self._samples = samples
        self._rescale = rescale

    def predict(self, images: Sequence[np.ndarray], positions: Sequence[int]) -> Prediction:
        if not positions:
            return Prediction([], [], [], [])
        rows = list(positions)
        start = perf_counter()
        samples = self._detector.base.predict(
            self._inputs[rows], [self._samples[row] for row in rows], rescale=self._rescale
        )
        seconds = (perf_counter() - start) / len(rows)
        shape = tuple(int(side) for side in self._inputs.shape[-2:])
        gflops = self._detector.base_flops(shape)
        detections = [instances_to_detections(sample.pred_instances, row) for sample, row in zip(samples, rows)]
        return Prediction(detections, [gflops] * len(rows), [seconds] * len(rows), [shape] * len(rows))


@MODELS.register_module()
class TinySaverDetector(BaseDetector):
    """A TinySaver cascade (paper Sec. 4.5) that mmengine's Runner tests like any mmdet detector.

    For each batch the saver (an Ultralytics YOLO) runs on the original images, read from each data
    sample's ``img_path`` (or its ``ori_img``, see :class:`~tinysaver_det.mmdet.KeepOriginalImage`),
    never on the base's resized tensor. Images whose confidence is ``>= threshold`` keep the saver's
    full detection list; the others go, as one sub-batch of the preprocessed inputs, through the base.
    Routing is :class:`~tinysaver_det.detection.cascade.Cascade`'s, so the plug-in and the Python API
    cannot drift apart.

    Labels: mmdet's metrics read labels as indices into the dataset's classes, which are the base's
    classes (``classes``). The saver's class names are mapped onto those indices by name, so a COCO
    YOLO and a COCO mmdet model agree whatever their own label orders are.

    Each returned sample carries ``pred_instances`` in original-image pixels (``rescale=True``, what
    ``forward`` uses) and, under the metainfo key ``'tinysaver'``, its routing record: ``image_id``,
    ``confidence``, ``exited``, ``n_boxes``, ``saver_gflops``, ``base_gflops`` (0 when it exited) and
    ``seconds`` (the saver's call, plus the base's forward and post-processing when it ran; the Runner's
    data pipeline is not in it).

    Args:
        saver: ``dict(weights=..., **options)`` for
            :class:`~tinysaver_det.adapters.ultralytics.UltralyticsDetector` (``imgsz``, ``conf``, ``iou``,
            ``max_det``, ``device``, ``class_names``...). ``device`` defaults to this process's GPU if any.
        base: any mmdet detector model config.
        threshold: exit threshold t.
        min_score: boxes below it do not count towards the confidence (they stay in the answer).
        confidence: a name from ``tinysaver_det.core.CONFIDENCE_FUNCTIONS``, a callable
            ``(scores, min_score) -> float``, a router object or a router file (``.json``, e.g. the
            learned post-evaluator of ``tools/compare_routers.py``); see ``detection.router_files.resolve_router``.
        classes: the base's class names in label order, which must be the test dataset's
            ``metainfo['classes']``. Default: those stored in ``base_checkpoint``, else COCO's 80 (the
            rule of ``mmdet.apis.init_detector``).
        base_checkpoint: an mmdet checkpoint of the base alone (official model-zoo weights), loaded
            into ``self.base``. mmengine's ``Runner.test`` never calls ``init_weights``, so a
            ``Pretrained`` ``init_cfg`` on the base would not load; this does. The Runner's
            ``load_from`` (mmdet's ``tools/test.py CONFIG CHECKPOINT``) loads such a checkpoint into
            ``self.base`` too.
        base_training_only: prefixes of base checkpoint keys that belong to training-only parts of
            the published model left out of ``base`` (Co-DINO's auxiliary ATSS and Faster R-CNN
            heads: ``('rpn_head.', 'roi_head.', 'bbox_head.')``); dropped when a checkpoint of the
            base alone is loaded, instead of being listed as unexpected keys.
        data_preprocessor: default: the base's own (the base sees the inputs it was trained on).
        init_cfg: mmengine's initialization config.
        operating_point: an ``operating_point.json`` (``tinysaver pick``): the saver (sha256-checked),
            ``threshold``, ``min_score`` and ``confidence`` come from it (``saver`` then only gives
            ``device``; ``threshold`` may be left out).

    Raises:
        ValueError: ``classes`` disagrees with the number of classes the base predicts, or a saver
            class name is not among ``classes`` (give ``class_names`` in ``saver``).
    """

    def __init__(
        self,
        saver: dict | None,
        base: dict,
        threshold: float | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        confidence: str | ConfidenceFunction | Router = "mean",
        classes: Sequence[str] | None = None,
        base_checkpoint: str | None = None,
        base_training_only: Sequence[str] = (),
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
        operating_point: str | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or base.get("data_preprocessor"), init_cfg=init_cfg)
        point = None
        if operating_point is not None:
            from tinysaver_det.operating_point import read_operating_point

            point = read_operating_point(operating_point)
            if point.n_stages != 2:
                raise ValueError(f"operating point {operating_point} is a {point.n_stages}-stage cascade; "
                                 "TinySaverDetector runs a saver and a base")
            policy = point.exit_policies()[0]
        elif threshold is None:
            raise ValueError("TinySaverDetector needs a threshold (or an operating_point file)")
        else:
            policy = ExitPolicy(threshold, confidence, min_score)
        self.threshold, self.min_score = policy.threshold, policy.min_score
        self.confidence = resolve_router(policy.confidence, self.min_score)
        # Inference only: SyncBN (a training choice, and rejected by DDP on CPU) computes what BN does in
        # eval mode, so it becomes BN, as mmengine's Runner does for one-process runs.
        self.base = revert_sync_batchnorm(MODELS.build(base))
        self.base_training_only = tuple(base_training_only)
        self.register_load_state_dict_pre_hook(_load_base_alone_checkpoint)
        stored_classes = None
        if base_checkpoint is not None:
            stored_classes = _checkpoint_classes(load_checkpoint(self, base_checkpoint, map_location="cpu"))
        self.classes = tuple(classes or stored_classes or CocoDataset.METAINFO["classes"])
        self._check_base_classes()
        saver = dict(saver or {})
        labels = {name: label for label, name in enumerate(self.classes)}
        saver.setdefault("device", _default_saver_device())
        features = stage_needs_features(policy)  # a feature router reads the saver's own features
        if point is not None:
            self.saver = point.build_model("saver", with_class_map(labels, point.class_map), device=saver["device"],
                                           features=features)
        elif "weights" not in saver:
            raise ValueError(f"saver needs weights=<Ultralytics .pt/.yaml or official name>, got {saver}")
        else:
            features = features or bool(saver.pop("features", False))
            self.saver = build_detector(saver.pop("weights"), "saver", category_ids_by_name=labels, features=features,
                                        **saver)
        self.base_flops = MMDetFlops(self.base)

    def _check_base_classes(self) -> None:
        for head in ("query_head", "bbox_head"):
            num_classes = getattr(getattr(self.base, head, None), "num_classes", None)
            if num_classes is not None and num_classes != len(self.classes):
                raise ValueError(
                    f"the base's {head} predicts {num_classes} classes but `classes` names {len(self.classes)}; "
                    "set `classes` to the base's class names in label order"
                )

    @property
    def uncounted_ops(self) -> dict[str, tuple[str, ...]]:
        """Per model, the ops that ran but are not in the GFLOPs (see :mod:`tinysaver_det.flops`)."""
        return {"saver": self.saver.uncounted_ops, "base": self.base_flops.uncounted_ops}

    def predict(
        self, batch_inputs: torch.Tensor, batch_data_samples: list[DetDataSample], rescale: bool = True
    ) -> list[DetDataSample]:
        """Route each image of the batch to the saver or the base and return every sample with its answer.

        Args:
            batch_inputs: (N, C, H, W) from the base's data preprocessor; only deferred rows are used.
            batch_data_samples: their samples (``img_path`` or ``ori_img``, ``scale_factor``...).
            rescale: boxes in original-image pixels (True) or in the resized image's (False).
        """
        images = [self._original_image(sample) for sample in batch_data_samples]
        base = _PreprocessedBase(self, batch_inputs, batch_data_samples, rescale)
        cascade = Cascade(self.saver, base, self.threshold, self.min_score, self.confidence)
        outputs = cascade(images, list(range(len(images))))
        results = []
        for sample, output in zip(batch_data_samples, outputs):
            boxes = output.detections.boxes
            if output.record.exited and not rescale:  # the saver answers in original pixels
                boxes = boxes * np.tile(sample.scale_factor, 2)
            results.append(InstanceData(
                bboxes=torch.as_tensor(boxes, dtype=torch.float32, device=batch_inputs.device),
                scores=torch.as_tensor(output.detections.scores, dtype=torch.float32, device=batch_inputs.device),
                labels=torch.as_tensor(output.detections.category_ids, dtype=torch.long, device=batch_inputs.device),
            ))
            record = dataclasses.replace(output.record, image_id=sample.metainfo.get("img_id"))
            sample.set_metainfo({ROUTING_KEY: dataclasses.asdict(record)})
        return self.add_pred_to_datasample(batch_data_samples, results)

    @staticmethod
    def _original_image(sample: DetDataSample) -> np.ndarray:
        if "ori_img" in sample:
            return sample.ori_img
        if sample.metainfo.get("img_path"):
            return load_image(sample.img_path)
        raise ValueError(
            "the saver needs the original image, but this data sample has no img_path (an in-memory "
            "image); add dict(type='KeepOriginalImage') after the loading transform of the test pipeline "
            "and 'ori_img' to PackDetInputs' meta_keys"
        )

    def loss(self, batch_inputs, batch_data_samples):
        raise NotImplementedError("TinySaverDetector is inference-only: train the saver and the base separately")

    def _forward(self, batch_inputs, batch_data_samples=None):
        raise NotImplementedError(
            "TinySaverDetector has no single tensor forward (it routes per image); use mode='predict'"
        )

    def extract_feat(self, batch_inputs):
        raise NotImplementedError("TinySaverDetector has no shared features: the saver and the base have their own")
