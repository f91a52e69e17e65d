"""Ultralytics YOLO as a :class:`~tinysaver_det.detection.types.Detector`.

Every prediction setting is passed explicitly: Ultralytics' ``predict`` otherwise applies
``conf=0.25``, which would silently change both the image confidence (boxes >= 0.05) and the AP.
Evaluation defaults follow Ultralytics' own ``val``: conf 0.001, IoU 0.7, max_det 300, and its NMS
(multi-label; ``nms="predictor"`` for the predictor's single-label one), run by
:class:`~tinysaver_det.adapters.ultralytics_predictor.EvaluationPredictor`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property, partial
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from ultralytics import YOLO

from tinysaver_det.adapters.ultralytics_predictor import EvaluationPredictor
from tinysaver_det.detection.categories import category_lookup, normalize_name
from tinysaver_det.detection.nms_mode import DEFAULT_NMS, check_nms_mode
from tinysaver_det.detection.types import DetectorBase, Detections, Prediction, SaverFeatures
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.flops import FlopCount, FlopsCache, count_flops_running_if_needed
from tinysaver_det.io import sha256_file
from tinysaver_det.timing import ModelClock


def load_yolo(weights: str | Path | YOLO) -> YOLO:
    """Load a YOLO model from a local ``.pt``/``.yaml`` file or an official name, or check a loaded one.

    A bare official name such as ``yolov8n.pt`` that is not a local file goes through
    Ultralytics' own loader, which downloads the official weights when online. An
    ``ultralytics.YOLO`` object is used as it is (after the same detection-model check).

    Raises:
        FileNotFoundError: ``weights`` is not a local file and Ultralytics cannot fetch it by name.
        TinySaverInputError: the file exists but is not a PyTorch YOLO detection model (not a
            checkpoint at all, an exported format, or another task such as classification).
    """
    if isinstance(weights, YOLO):
        model = weights
        weights = model.ckpt_path or model.model_name or "YOLO object"
    else:
        weights = Path(weights)
        if not weights.exists() and weights.parent != Path("."):
            raise FileNotFoundError(f"weights file not found: {weights}")
        try:
            model = YOLO(str(weights))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"weights file not found: {weights} ({error})") from None
        except Exception as error:  # Ultralytics raises many types for a bad checkpoint; name the file.
            said = " ".join(str(error).split())  # Ultralytics' message spans lines; the error is one line
            raise TinySaverInputError(f"cannot load {weights} as an Ultralytics YOLO model: {said}") from error
    # Exported formats load as a path string and fail later, deep in predict; other tasks have no boxes.
    if not isinstance(model.model, torch.nn.Module) or model.task != "detect":
        raise TinySaverInputError(
            f"{weights} is not a PyTorch YOLO detection model (.pt checkpoint or .yaml): Ultralytics "
            f"reads it as task {model.task!r} with a {type(model.model).__name__} model"
        )
    return model


def _run_size(model, imgsz: int) -> int:
    """The inference size Ultralytics actually runs for ``imgsz``: rounded up to a multiple of the
    model's largest stride (its predictor does the same, with a warning), so that ``run.json``
    records the size that ran, not the size asked for."""
    from ultralytics.utils.checks import check_imgsz

    stride = int(max(getattr(model.model, "stride", [32])))
    return int(check_imgsz(int(imgsz), stride=stride))


class UltralyticsDetector(DetectorBase):
    """A YOLO model (any Ultralytics detection checkpoint or yaml) behind the Detector protocol.

    Args:
        weights: a local ``.pt``/``.yaml`` path, an official name (``yolov8n.pt``) or an
            ``ultralytics.YOLO`` object.
        category_ids_by_name: the dataset's ``{category name: id}``; model classes map by name.
            ``None``: no dataset, the model's own class indices are the ids (:attr:`names`).
        imgsz: inference size; default: the size the checkpoint was trained at (640 if unknown).
        conf, iou, max_det: NMS settings, Ultralytics' validation defaults.
        nms: ``"validator"`` (default): NMS as Ultralytics' ``DetectionValidator`` runs it, a box kept once
            per class scoring above ``conf`` (Ultralytics' own mAP); ``"predictor"``: as ``YOLO.predict``
            runs it, one label per box (see :mod:`tinysaver_det.detection.nms_mode`).
        device: torch device string (``"cpu"``, ``"0"``...).
        half: fp16 inference (GPU only).
        class_names: override the checkpoint's class names (e.g. a yaml-built model).
        name: how the model is named in tables and errors; default: the weights' file name.
        features: also capture the saver's own features (pooled neck maps, candidate statistics) from
            the same forward pass, attached to each Detections (a post-evaluator's input).
    """

    def __init__(
        self,
        weights: str | Path | YOLO,
        category_ids_by_name: Mapping[str, int] | None = None,
        *,
        imgsz: int | None = None,
        conf: float = 0.001,
        iou: float = 0.7,
        max_det: int = 300,
        device: str = "cpu",
        half: bool = False,
        class_names: Mapping[int, str] | Sequence[str] | None = None,
        name: str | None = None,
        features: bool = False,
        nms: str = DEFAULT_NMS,
    ) -> None:
        #: The NMS mode of the boxes :meth:`predict` returns (recorded in :attr:`settings`).
        self.nms = check_nms_mode(nms)
        #: Also keep, per image of the last :meth:`predict` call, the boxes ``YOLO.predict`` would return
        #: (single label, from the same forward pass) in :attr:`single_label_answers`: what
        #: :class:`~tinysaver_det.api.TinySaver` returns while it routes on the evaluated answer.
        self.keep_single_label = False
        #: ``{image id: Detections}`` of the last :meth:`predict` call, single label (see above).
        self.single_label_answers: dict[int, Detections] = {}
        self.model = load_yolo(weights)
        # where Ultralytics found or fetched it (a YOLO object built from a yaml has no file)
        source = self.model.ckpt_path or (weights if isinstance(weights, (str, Path)) else self.model.model_name)
        self._checkpoint = Path(source or "")
        self.name = name or self._checkpoint.name or "YOLO"
        class_names = class_names or self.model.names
        #: ``{class index: name}`` of the model itself.
        self.class_names = dict(class_names if isinstance(class_names, Mapping) else enumerate(class_names))
        self.map_classes(category_ids_by_name)
        self.predict_args = dict(
            imgsz=_run_size(self.model, imgsz or self.model.overrides.get("imgsz", 640)),
            conf=conf,
            iou=iou,
            max_det=max_det,
            device=device,
            quantize=16 if half else 32,
            verbose=False,
            save=False,
        )
        self._flops = FlopsCache(self._count_one_image)
        self._clock = ModelClock()
        self._predictor = EvaluationPredictor
        if features:
            from tinysaver_det.adapters.ultralytics_features import FeaturePredictor

            self._predictor = FeaturePredictor

    def map_classes(self, category_ids_by_name: Mapping[str, int] | None, among: str = "the dataset's categories") -> None:
        """Map the model's classes to ``category_ids_by_name`` by name (None: its own indices).

        Sets :attr:`category_ids` (class index -> output id) and :attr:`names` (output id -> name).
        """
        if category_ids_by_name is None:  # no dataset: the model's own indices
            category_ids_by_name = {name: index for index, name in self.class_names.items()}
        self.category_ids = category_lookup(self.class_names, category_ids_by_name, self.name, among)
        names = {normalize_name(name): name for name in category_ids_by_name}
        #: ``{output id: class name}``: what each output id means (the target's spelling of the name).
        self.names = {
            int(self.category_ids[index]): names[normalize_name(name)] for index, name in sorted(self.class_names.items())
        }

    @cached_property
    def settings(self) -> dict:
        """What makes this model's predictions, for a run's ``run.json``: the weights file with its
        sha256, the class-to-category map and every predict setting. A resumed run must have the same.

        A ``.yaml`` model has random weights, which no hash can pin: its sha256 is the yaml's, or None
        for an official name that Ultralytics resolves inside its package."""
        predict = {key: value for key, value in self.predict_args.items() if key not in ("verbose", "save")}
        return {
            "name": self.name,
            "weights": str(self._checkpoint.resolve()),
            "sha256": sha256_file(self._checkpoint) if self._checkpoint.is_file() else None,
            "category_ids": self.category_ids.tolist(),
            **predict,
            "nms": self.nms,
            **({"features": self._feature_recipe} if self._feature_recipe else {}),
        }

    @property
    def _feature_recipe(self) -> str | None:
        if self._predictor is EvaluationPredictor:
            return None
        from tinysaver_det.detection.saver_features import RECIPE

        return RECIPE

    @property
    def uncounted_ops(self) -> tuple[str, ...]:
        """Ops that ran but are not in the GFLOPs (see :mod:`tinysaver_det.flops`)."""
        return self._flops.uncounted_ops

    def predict(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> Prediction:
        """Detect on a batch of BGR uint8 images (one Ultralytics batch)."""
        if len(images) != len(image_ids):
            raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
        if not images:
            return Prediction([], [], [], [])
        predictor = self._predictor.with_nms(self.nms, self.keep_single_label)
        run = partial(self.model.predict, predictor=predictor, **self.predict_args)
        # warm-up: one image pays for the predictor's set-up (fusing, moving to the device) outside the time
        results, seconds = self._clock.time(lambda: run(list(images), batch=len(images)),
                                            warmup=lambda: run(list(images[:1]), batch=1))
        seconds /= len(images)
        height, width = self.model.predictor.input_shape[2:]
        gflops = self._flops((height, width)).gflops
        detections = [self._to_detections(result, image_id) for result, image_id in zip(results, image_ids)]
        if self.keep_single_label:  # in the predictor's mode the answer itself is single-label
            single = self.model.predictor.single_label_results or results
            self.single_label_answers = {i: self._to_detections(r, i) for r, i in zip(single, image_ids)}
        if self._feature_recipe:
            detections = self._with_features(detections, self.model.predictor.captured)
        n = len(images)
        return Prediction(detections, [gflops] * n, [seconds] * n, [(height, width)] * n)

    def _to_detections(self, result, image_id: int) -> Detections:
        boxes = result.boxes.cpu().numpy()
        return Detections(image_id, boxes.xyxy, boxes.conf, self.category_ids[boxes.cls.astype(np.int64)])

    def _with_features(self, detections: list[Detections], captured: list) -> list[Detections]:
        if len(captured) != len(detections):
            raise RuntimeError(f"{self.name}: features captured for {len(captured)} of {len(detections)} images")
        saver = self.settings["sha256"]
        return [
            replace(d, features=SaverFeatures(self._feature_recipe, saver, values, flops * 1e-9))
            for d, (values, flops) in zip(detections, captured)
        ]

    def _forward_one_image(self, shape: tuple[int, int]):
        """The network that ran (the fused module inside Ultralytics' AutoBackend) and a call of it on
        one image of ``shape``, whose input is made inside the call (fake when counted without running)."""
        backend = self.model.predictor.model
        dtype = torch.float16 if backend.fp16 else torch.float32
        return backend.model, lambda: backend.model(torch.zeros((1, 3, *shape), device=backend.device, dtype=dtype))

    def _count_one_image(self, shape: tuple[int, int]) -> FlopCount:
        network, forward = self._forward_one_image(shape)
        return count_flops_running_if_needed(forward, network, self.name)
