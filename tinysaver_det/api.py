"""The front door: ``TinySaver(saver, base, t).predict(source)`` on any images or video.

No dataset is needed. The answer's classes are the base's own (``names``); the saver's classes are
mapped onto them by name, and ``class_map`` covers renamed ones. Sources are decoded by Ultralytics'
own loaders (``ultralytics.data.load_inference_source``): a file, a folder, a glob, a list of
paths, numpy BGR arrays, PIL images, a video file, a webcam index, a stream URL. Each image or
frame comes back as an Ultralytics ``Results`` (:class:`CascadeResult`) that also carries the routing.

Routing and output are kept apart: the router always sees the saver's full answer at the evaluation
settings (conf 0.001, IoU 0.7, max_det 300, the NMS mode ``nms``: by default Ultralytics' validator's,
multi-label) through the same :class:`~tinysaver_det.detection.cascade.Cascade` that ``eval`` runs, so an
image is routed exactly as in an evaluation. The boxes returned are, for a YOLO stage, those
``YOLO.predict`` gives (one label per box, from the same forward pass) unless ``predict(single_label=False)``
asks for the evaluated answer; ``predict(conf=...)`` only filters the boxes returned.

Example (the demo models shipped in the assets)::

    from tinysaver_det import TinySaver

    cascade = TinySaver("demo:pico", "demo:s", t=0.25)
    for result in cascade.predict("images/", stream=True):
        print(result.path, result.exited, result.confidence, len(result.boxes))
        result.save(filename="annotated.jpg")
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Iterator, Mapping

import numpy as np
import torch
from ultralytics.data import load_inference_source
from ultralytics.engine.results import Results

from tinysaver_det.build import build_cascade, target_names
from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, validate_threshold
from tinysaver_det.detection.cascade import CascadeOutput
from tinysaver_det.detection.nms_mode import DEFAULT_NMS
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.timing import check_device, default_device

#: The settings at which the saver must answer for the router (Ultralytics' validation settings).
ROUTING_SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300}


@dataclass(frozen=True)
class Routing:
    """What the cascade did with one image or frame.

    Attributes:
        source: the image's path (Ultralytics' name for an in-memory image: ``image0.jpg``...).
        frame: 0 for an image; for a video, the source's frame number of this frame (1, 2, ...; with
            ``vid_stride`` n: n, 2n, 3n, ..., as Ultralytics decodes the last of every n frames).
        exited: the saver's answer was kept.
        confidence: the image confidence the router computed from the saver's full answer.
        stage: ``"saver"`` or ``"base"``: the model whose answer this is.
        ms: model milliseconds per image, ``{"saver", "base"}`` (base 0 when it did not run).
        gflops: GFLOPs spent, ``{"saver", "base"}`` (base 0 when it did not run).
    """

    source: str
    frame: int
    exited: bool
    confidence: float
    stage: str
    ms: dict = field(default_factory=dict)
    gflops: dict = field(default_factory=dict)


class CascadeResult(Results):
    """An Ultralytics ``Results`` (boxes in the base's classes, ``names``, ``orig_img``, ``path``,
    ``speed``; ``.plot()``, ``.save()``, ``.to_json()``) plus the cascade's :class:`Routing`.

    The routing fields are also attributes: ``exited``, ``confidence``, ``stage``, ``ms``,
    ``gflops``, ``frame``. ``speed["inference"]`` is both models' whole predict calls in ms
    (pre- and post-processing included, so ``preprocess``/``postprocess`` are None).
    """

    def __init__(self, orig_img, path, names, boxes=None, speed=None, routing: Routing | None = None, **kwargs):
        super().__init__(orig_img, path, names, boxes=boxes, speed=speed, **kwargs)
        self.routing = routing

    def new(self) -> "CascadeResult":
        """An empty copy with the same image, names, speed and routing (Ultralytics' ``_apply`` uses it)."""
        result = CascadeResult(self.orig_img, self.path, self.names, speed=self.speed, routing=self.routing)
        result.save_dir = self.save_dir
        return result

    exited = property(lambda self: self.routing.exited)
    confidence = property(lambda self: self.routing.confidence)
    stage = property(lambda self: self.routing.stage)
    ms = property(lambda self: self.routing.ms)
    gflops = property(lambda self: self.routing.gflops)
    frame = property(lambda self: self.routing.frame)


def predictions_jsonl_row(result: CascadeResult) -> dict:
    """One json-ready row of ``predictions.jsonl`` for a result: routing and detections.

    Keys: ``source, frame, exited, confidence, stage, detections`` (``[{xyxy, score, class_id,
    name}]``), ``gflops`` and ``ms`` (``{saver, base}``).
    """
    boxes = result.boxes.cpu().numpy() if result.boxes is not None else None
    detections = [] if boxes is None else [
        {"xyxy": [float(v) for v in xyxy], "score": float(score), "class_id": int(cls),
         "name": result.names[int(cls)]}
        for xyxy, score, cls in zip(boxes.xyxy, boxes.conf, boxes.cls)
    ]
    routing = asdict(result.routing)
    return {**{k: routing[k] for k in ("source", "frame", "exited", "confidence", "stage")},
            "detections": detections, "gflops": routing["gflops"], "ms": routing["ms"]}


class TinySaver:
    """A saver -> base detection cascade for inference on any images or video (no dataset needed).

    Args:
        saver, base: each a weights path or official name (``yolov8n.pt``; Ultralytics downloads it
            when online), a demo name (``demo:pico``, ``demo:n``, ``demo:s``), an ``ultralytics.YOLO``
            object, for the base an mmdet config (``.py``, or a ``(config, checkpoint)`` pair), or any
            :class:`~tinysaver_det.detection.types.Detector` (with a ``names`` dict). A saver adapter
            given as an object is re-mapped onto the base's classes (its ``category_ids`` change).
        t: exit threshold: an image whose confidence is ``>= t`` keeps the saver's answer.
        confidence: the image confidence: a name of ``CONFIDENCE_FUNCTIONS`` (default ``"mean"``,
            the paper's), a router file (``.json``), a router object or a callable.
        min_score: score floor of the confidence (boxes below it do not count; they stay in the answer).
        device: ``cpu``, ``cuda``, ``cuda:N``, ``N``; default: ``cuda:0`` when there is one, else ``cpu``.
            A device this machine lacks is refused.
        half: fp16 inference of the Ultralytics models (needs a GPU; refused on the CPU).
        imgsz: inference size of the Ultralytics models; default: each model's training size.
        class_map: ``{saver class name: base class name}`` for classes named differently.
        nms: the YOLO models' NMS (:mod:`tinysaver_det.detection.nms_mode`): ``"validator"`` (default, as
            ``eval`` scores them) or ``"predictor"``. The router reads the answer in this mode.

    Raises:
        TinySaverInputError: a saver class name the base lacks (listing them), a missing device, a
            saver that predicts with conf above ``min_score`` (the cascade's
            :func:`~tinysaver_det.detection.cascade.check_score_floor`), a wrong spec.
    """

    def __init__(
        self,
        saver,
        base,
        t: float,
        *,
        confidence="mean",
        min_score: float = DEFAULT_MIN_SCORE,
        device: str | None = None,
        half: bool = False,
        imgsz: int | None = None,
        class_map: Mapping[str, str] | None = None,
        nms: str = DEFAULT_NMS,
    ) -> None:
        t = validate_threshold(t, "t")
        self.device = check_device(default_device() if device is None else device)
        self.cascade = build_cascade([saver, base], t=t, confidence=confidence, min_score=min_score,
                                     class_map=class_map, device=self.device, half=half, imgsz=imgsz, nms=nms)
        self._adopt_cascade(class_map)

    def _adopt_cascade(self, class_map: Mapping[str, str] | None) -> None:
        self.saver, self.base = self.cascade.saver, self.cascade.base
        self.names = target_names(self.base, "base")
        for detector in (self.saver, self.base):  # YOLO stages also keep YOLO.predict's boxes (see predict)
            if hasattr(detector, "keep_single_label"):
                detector.keep_single_label = True
        self.class_map = dict(class_map or {})

    @property
    def t(self) -> float:
        return self.cascade.policy.threshold

    @property
    def min_score(self) -> float:
        return self.cascade.min_score

    @classmethod
    def from_operating_point(cls, path: str | os.PathLike, *, device: str | None = None,
                             half: bool = False) -> "TinySaver":
        """The cascade a 2-model ``operating_point.json`` describes (``tinysaver pick``), on ``device``.

        Each weights file (and a router file) must have the sha256 recorded in it: a changed file
        is refused, naming both hashes. A K-stage file (K >= 3) is refused here: build it with
        :func:`tinysaver_det.build.build_cascade` (``operating_point=path``).
        """
        from tinysaver_det.operating_point import read_operating_point

        point = read_operating_point(path)
        if point.n_stages != 2:
            raise TinySaverInputError(f"operating point {path} is a {point.n_stages}-stage cascade; TinySaver runs "
                                      "2 (saver -> base): build it with tinysaver_det.build.build_cascade(operating_point=...)")
        self = cls.__new__(cls)
        self.device = check_device(device if device is not None else default_device())
        self.cascade = build_cascade(operating_point=point, device=self.device, half=half)
        self._adopt_cascade(point.class_map)
        return self

    def predict(self, source, *, conf: float = 0.25, stream: bool = False, batch: int = 1,
                vid_stride: int = 1, single_label: bool = True) -> list[CascadeResult] | Iterator[CascadeResult]:
        """Run the cascade on every image or frame of ``source``.

        Args:
            source: anything Ultralytics' ``predict`` takes (file, folder, glob, list of paths,
                numpy BGR array(s), PIL image(s), video file, webcam index, stream URL).
            conf: boxes scoring below it are left out of the results; routing does not depend on it.
            stream: return a generator (one result at a time: a long video never sits in memory).
            batch: images per model call.
            vid_stride: take every n-th video frame (the source's frames n, 2n, ...; ``frame`` numbers them).
            single_label: a YOLO stage's boxes as ``YOLO.predict`` returns them (one label per box, the
                predictor's NMS on the same forward pass); False: the answer ``eval`` scores and the router
                read (in the validator's mode a box may carry several labels). Routing is the same.

        Returns:
            One :class:`CascadeResult` per image or frame, in source order.
        """
        conf = float(conf)
        if not 0 <= conf <= 1:
            raise TinySaverInputError(f"conf must be in [0, 1], got {conf!r}")
        if int(batch) < 1:
            raise TinySaverInputError(f"batch must be >= 1, got {batch!r}")
        results = self._stream(self._load(source, int(batch), int(vid_stride)), conf, int(batch), bool(single_label))
        return results if stream else list(results)

    __call__ = predict

    @staticmethod
    def _load(source, batch: int, vid_stride: int):
        try:
            return load_inference_source(source, batch=batch, vid_stride=vid_stride)
        except TypeError as error:
            raise TinySaverInputError(f"source: unsupported type {type(source).__name__} ({error})") from None
        except FileNotFoundError as error:
            raise FileNotFoundError(f"source: {error}") from None

    def _stream(self, dataset, conf: float, batch: int, single_label: bool) -> Iterator[CascadeResult]:
        index = 0
        for paths, images, _ in dataset:
            frames = _frames(dataset, len(images))
            for start in range(0, len(images), batch):  # in-memory lists come as one batch
                chunk = slice(start, start + batch)
                outputs = self.cascade(images[chunk], list(range(index, index + len(images[chunk]))))
                index += len(outputs)
                for path, image, frame, output in zip(paths[chunk], images[chunk], frames[chunk], outputs):
                    yield self._result(path, image, frame, output, conf, single_label)

    def _result(self, path: str, image: np.ndarray, frame: int, output: CascadeOutput, conf: float,
                single_label: bool) -> CascadeResult:
        record = output.record
        detections = output.detections
        if single_label:  # the answering YOLO stage's YOLO.predict boxes of this image (same forward pass)
            stage = self.saver if record.exited else self.base
            detections = getattr(stage, "single_label_answers", {}).get(detections.image_id, detections)
        keep = detections.scores >= conf
        boxes = np.concatenate(
            [detections.boxes[keep], detections.scores[keep, None], detections.category_ids[keep, None]], axis=1
        )
        ms = {"saver": output.saver.seconds * 1e3,
              "base": 0.0 if record.exited or output.base is None else output.base.seconds * 1e3}
        routing = Routing(
            source=str(path), frame=frame, exited=record.exited, confidence=record.confidence,
            stage="saver" if record.exited else "base", ms=ms,
            gflops={"saver": record.saver_gflops, "base": record.base_gflops},
        )
        speed = {"preprocess": None, "inference": ms["saver"] + ms["base"], "postprocess": None}
        return CascadeResult(image, str(path), self.names, boxes=torch.from_numpy(boxes).float(), speed=speed,
                             routing=routing)


def _frames(dataset, n: int) -> list[int]:
    """Frame numbers of the last batch a loader returned: 0 for images, the source's frame number for video.

    A video batch never spans two videos (Ultralytics flushes at each video's end), and the loader's
    ``frame`` counts the frames it took, the batch's last included. With ``vid_stride`` n it grabs n
    frames and decodes the last of them, so its k-th frame taken is the source's frame k * n
    (1-based: n, 2n, 3n, ...); a frame number is that, so a row names the frame of the file it shows.
    """
    mode = getattr(dataset, "mode", "image")
    if mode == "video":
        stride = getattr(dataset, "vid_stride", 1)
        return [(dataset.frame - n + 1 + i) * stride for i in range(n)]
    if mode == "stream":
        return [dataset.count] * n
    return [0] * n
