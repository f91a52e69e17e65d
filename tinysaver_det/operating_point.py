"""The operating point file: a chosen cascade written by ``tinysaver pick`` and loaded to deploy it.

``operating_point.json`` says everything that decides which images exit and what they cost, so that a
threshold picked on a calibration split can be saved, reviewed and loaded again:

=================  ==================================================================================
``saver``/``base`` ``weights`` (a path, an official name or a demo name), ``sha256`` of the weights file,
                   ``imgsz``, ``predict`` (conf, iou, max_det, nms), ``class_map`` (saver only); an mmdet
                   base also has ``checkpoint`` (whose sha256 is recorded) and ``config_sha256``
``confidence``     ``{"name": "mean"}`` or ``{"router_file": path, "sha256": ...}``
``min_score``      score floor of the confidence
``t``              the exit threshold
``target``         what the pick was asked for (``kind``, ``value``, ``unit``) and whether it held
``calibration``    measured on the calibration split: ``AP``, ``gflops_per_image``, ``exit_ratio``,
                   ``images``, ``annotations_sha256``
``held_out``       the same on the held-out split, plus ``bootstrap``: a percentile interval over
                   images (resampled with replacement) for the AP and the GFLOPs per image
=================  ==================================================================================

Loading checks each recorded sha256 against the file found now; a weights or router file that
changed is refused, naming both hashes. This module imports no framework; building the models
(:meth:`OperatingPointFile.build_model`) imports the adapters lazily.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tinysaver_det.detection.categories import normalize_name
from tinysaver_det.detection.router_files import is_router_file
from tinysaver_det.detection.nms_mode import PREDICTOR
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_json, read_json, sha256_file

FORMAT = "tinysaver-operating-point"
VERSION = 1
FILE_NAME = "operating_point.json"


def check_sha256(path: str | os.PathLike, recorded: str | None, what: str) -> None:
    """Refuse a file whose sha256 is not the recorded one (no record: nothing to check).

    Raises:
        TinySaverInputError: naming the file, the recorded hash and the hash found.
    """
    if not recorded:
        return
    found = sha256_file(path)
    if found != recorded:
        raise TinySaverInputError(
            f"{what} {path} has sha256 {found}, but the operating point was picked with sha256 {recorded}: "
            "a different file; pick again for it, or restore the recorded one"
        )


def weights_reference(spec: str | os.PathLike) -> str:
    """How a weights spec is written in the file: a demo or official name as given, a local file absolute.

    >>> weights_reference("demo:pico"), weights_reference("yolov8n.pt")
    ('demo:pico', 'yolov8n.pt')
    """
    text = str(spec)
    if text.startswith("demo:") or not Path(text).is_file():
        return text
    return str(Path(text).resolve())


def model_entry(spec: str | os.PathLike, settings: Mapping[str, Any], **extra) -> dict:
    """The ``saver``/``base`` entry for a model given as ``spec`` whose adapter reports ``settings``.

    ``settings`` is an adapter's ``settings`` dict (weights path, sha256, imgsz, conf, iou, max_det, and a
    YOLO model's NMS mode, :mod:`tinysaver_det.detection.nms_mode`).
    """
    predict = {key: settings[key] for key in ("conf", "iou", "max_det", "nms") if key in settings}
    return {
        "weights": weights_reference(spec),
        "sha256": settings.get("sha256"),
        "imgsz": settings.get("imgsz"),
        "predict": predict,
        **extra,
    }


def confidence_entry(confidence: str | os.PathLike) -> dict:
    """``{"name": ...}`` for a registered confidence name, ``{"router_file", "sha256"}`` for a router file."""
    if is_router_file(confidence):
        path = Path(confidence)
        if not path.is_file():
            raise FileNotFoundError(f"router file not found: {path}")
        return {"router_file": str(path.resolve()), "sha256": sha256_file(path)}
    if not isinstance(confidence, str):
        raise TinySaverInputError(
            f"an operating point records a confidence name or a router file, not {type(confidence).__name__}"
        )
    return {"name": confidence}


def _finite(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise TinySaverInputError(f"operating point: {name} must be a finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class OperatingPointFile:
    """The contents of an ``operating_point.json`` (see the module docstring for each field)."""

    saver: dict
    base: dict
    confidence: dict
    min_score: float
    t: float
    target: dict | None = None
    calibration: dict | None = None
    held_out: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from tinysaver_det import __version__

        return {
            "format": FORMAT, "version": VERSION, "package_version": __version__,
            "saver": self.saver, "base": self.base, "confidence": self.confidence,
            "min_score": self.min_score, "t": self.t, "target": self.target,
            "calibration": self.calibration, "held_out": self.held_out, **self.extra,
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically as indented, strict json (no NaN); a folder gets ``operating_point.json``."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / FILE_NAME
        data = self.to_dict()
        json.dumps(data, allow_nan=False)  # refuse NaN/inf before anything is written
        atomic_write_json(path, data, indent=2)
        return path

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "operating point") -> "OperatingPointFile":
        if data.get("format") != FORMAT:
            raise TinySaverInputError(f"{source}: not an operating point file (format {data.get('format')!r})")
        if data.get("version") != VERSION:
            raise TinySaverInputError(f"{source}: version {data.get('version')!r}; this package reads {VERSION}")
        missing = [k for k in ("saver", "base", "confidence", "min_score", "t") if k not in data]
        if missing:
            raise TinySaverInputError(f"{source}: missing {missing}")
        for role in ("saver", "base"):
            if not isinstance(data[role], Mapping) or "weights" not in data[role]:
                raise TinySaverInputError(f"{source}: {role} must be an object with 'weights'")
        known = {"format", "version", "package_version", "saver", "base", "confidence", "min_score", "t",
                 "target", "calibration", "held_out"}
        return cls(
            saver=dict(data["saver"]), base=dict(data["base"]), confidence=dict(data["confidence"]),
            min_score=_finite(data["min_score"], "min_score"), t=_finite(data["t"], "t"),
            target=data.get("target"), calibration=data.get("calibration"), held_out=data.get("held_out"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def confidence_option(self) -> str:
        """The ``confidence=`` option it records: a name, or the router file after its sha256 check."""
        if "router_file" in self.confidence:
            path = Path(self.confidence["router_file"])
            if not path.is_file():
                raise FileNotFoundError(f"router file of the operating point not found: {path}")
            check_sha256(path, self.confidence.get("sha256"), "router file")
            return str(path)
        return str(self.confidence.get("name", "mean"))

    def build_model(self, role: str, category_ids_by_name: Mapping[str, int] | None = None, *,
                    device: str = "cpu", half: bool = False, features: bool = False):
        """Build the saver or the base it records, after checking the weights' sha256.

        A local weights file is checked before it is loaded; an official name that Ultralytics
        resolves (or downloads) is checked on the file Ultralytics loaded.

        Args:
            role: ``"saver"`` or ``"base"``.
            category_ids_by_name: a dataset's ``{name: id}`` (evaluation); None: the model's own
                classes (deployment, where :class:`~tinysaver_det.api.TinySaver` maps the saver onto
                the base). For the saver, the recorded ``class_map`` is applied on top.
            features: capture a YOLO saver's own features (a router file that reads them).
        """
        from tinysaver_det.adapters import create_detector, is_mmdet_config, resolve_weights

        entry = getattr(self, role)
        class_map = entry.get("class_map") or {}
        if category_ids_by_name is not None and class_map:  # renamed saver classes take their base name's id
            ids = {normalize_name(name): i for name, i in category_ids_by_name.items()}
            category_ids_by_name = {**category_ids_by_name, **{
                saver_name: ids[normalize_name(base_name)] for saver_name, base_name in class_map.items()
                if normalize_name(base_name) in ids}}
        weights = resolve_weights(entry["weights"])
        if is_mmdet_config(weights):
            checkpoint = entry.get("checkpoint")
            check_sha256(weights, entry.get("config_sha256"), f"{role} config")
            if checkpoint:
                check_sha256(checkpoint, entry.get("sha256"), f"{role} checkpoint")
            return create_detector(weights, category_ids_by_name, checkpoint=checkpoint, device=device, half=half)
        if Path(weights).is_file():
            check_sha256(weights, entry.get("sha256"), f"{role} weights")
        predict = dict(entry.get("predict") or {})
        predict.setdefault("nms", PREDICTOR)  # a point picked before the mode was recorded was measured with it
        detector = create_detector(weights, category_ids_by_name, imgsz=entry.get("imgsz"), device=device, half=half,
                                   features=features or None, **predict)
        loaded = detector.settings.get("sha256") if hasattr(detector, "settings") else None
        if entry.get("sha256") and loaded and loaded != entry["sha256"]:
            raise TinySaverInputError(
                f"{role} weights {weights} loaded with sha256 {loaded}, but the operating point was picked with "
                f"sha256 {entry['sha256']}"
            )
        return detector


def read_operating_point(path: str | os.PathLike) -> OperatingPointFile:
    """Read and check an ``operating_point.json`` (a folder means its ``operating_point.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"operating point file not found: {path}")
    data = read_json(path, "operating point")
    if not isinstance(data, Mapping):
        raise TinySaverInputError(f"operating point {path}: expected a json object")
    return OperatingPointFile.from_dict(data, str(path))
