"""The operating point file: a chosen cascade written by ``tinysaver pick`` and loaded to deploy it.

``operating_point.json`` says everything that decides which images exit and what they cost, so that a
threshold picked on a calibration split can be saved, reviewed and loaded again:

=================  ==================================================================================
``saver``/``base`` ``weights`` (a path, an official name or a demo name), ``sha256`` of the weights file,
                   ``imgsz``, ``predict`` (conf, iou, max_det, nms), ``class_map`` (saver only); an mmdet
                   model's ``weights`` is its config (``config_sha256``), and ``checkpoint`` (None:
                   random weights) has ``sha256``
``confidence``     ``{"name": "mean"}`` or ``{"router_file": path, "sha256": ...}``
``min_score``      score floor of the confidence
``t``              the exit threshold
``target``         what the pick was asked for (``kind``, ``value``, ``unit``) and whether it held
``calibration``    measured on the calibration split: ``AP``, ``gflops_per_image``, ``exit_ratio``,
                   ``images``, ``annotations_sha256``
``held_out``       the same on the held-out split, plus ``bootstrap``: a percentile interval over
                   images (resampled with replacement) for the AP and the GFLOPs per image
=================  ==================================================================================

A K-stage cascade (K >= 3, ``pick --models pico n s``) is written with ``stages`` (one entry per model,
cheapest first, as ``saver``/``base`` above; ``class_map`` on the first) and ``t`` as a list (one
threshold per stage but the last) instead of ``saver``, ``base`` and one ``t``; one ``confidence`` and
``min_score`` serve every stage. :func:`tinysaver_det.build.build_cascade` builds either form.

Loading checks each recorded sha256 against the file found now; a weights or router file that
changed is refused, naming both hashes. This module imports no framework; building the models
(:meth:`OperatingPointFile.build_model`, :func:`tinysaver_det.build.build_cascade`) imports the
adapters lazily.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tinysaver_det.detection.nms_mode import PREDICTOR
from tinysaver_det.detection.router_files import is_router_file
from tinysaver_det.detection.types import detector_settings
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

    ``settings`` is an adapter's ``settings`` dict (:attr:`~tinysaver_det.detection.types.DetectorBase.settings`),
    as a run records it: Ultralytics' weights path, sha256, imgsz, conf, iou, max_det, NMS mode
    (:mod:`tinysaver_det.detection.nms_mode`); an mmdet model's
    config (``weights``) and ``config_sha256``, ``checkpoint`` and its ``sha256``.

    >>> model_entry("cfg.py", {"weights": "/m/cfg.py", "config_sha256": "c", "checkpoint": None, "sha256": None})
    {'weights': 'cfg.py', 'config_sha256': 'c', 'checkpoint': None, 'sha256': None}
    """
    if "config_sha256" in settings:  # an mmdet model: its config and its checkpoint
        return {"weights": weights_reference(spec), "config_sha256": settings["config_sha256"],
                "checkpoint": settings.get("checkpoint"), "sha256": settings.get("sha256"), **extra}
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
    """The contents of an ``operating_point.json`` (see the module docstring for each field).

    A K-stage file (K >= 3) has ``stages`` (every model's entry, cheapest first) and ``thresholds``
    (one per stage but the last); its ``saver``, ``base`` and ``t`` are then the first stage, the last
    stage and the first threshold (build it with :meth:`multistage`).
    """

    saver: dict
    base: dict
    confidence: dict
    min_score: float
    t: float
    target: dict | None = None
    calibration: dict | None = None
    held_out: dict | None = None
    extra: dict = field(default_factory=dict)
    stages: tuple = ()
    thresholds: tuple = ()

    @classmethod
    def multistage(cls, stages, thresholds, confidence: dict, min_score: float, **fields) -> "OperatingPointFile":
        """A cascade of ``len(stages)`` models: a 2-stage file when there are 2, else the ``stages`` form."""
        stages, thresholds = tuple(dict(s) for s in stages), tuple(float(t) for t in thresholds)
        if len(stages) < 2 or len(thresholds) != len(stages) - 1:
            raise TinySaverInputError(f"operating point: {len(stages)} stages need {len(stages) - 1} thresholds, "
                                      f"got {len(thresholds)}")
        many = len(stages) > 2
        return cls(stages[0], stages[-1], confidence, min_score, thresholds[0], **fields,
                   stages=stages if many else (), thresholds=thresholds if many else ())

    @property
    def n_stages(self) -> int:
        return len(self.stages) or 2

    @property
    def stage_entries(self) -> tuple[dict, ...]:
        """Every model's entry, cheapest first (``(saver, base)`` for a 2-stage file)."""
        return self.stages or (self.saver, self.base)

    @property
    def stage_thresholds(self) -> tuple[float, ...]:
        """One threshold per stage but the last (``(t,)`` for a 2-stage file)."""
        return self.thresholds or (self.t,)

    @property
    def class_map(self) -> dict:
        """``{saver class name: base class name}`` recorded with the first model."""
        return dict(self.stage_entries[0].get("class_map") or {})

    def to_dict(self) -> dict:
        from tinysaver_det import __version__

        models = ({"stages": list(self.stages), "t": list(self.thresholds)} if self.stages
                  else {"saver": self.saver, "base": self.base, "t": self.t})
        return {
            "format": FORMAT, "version": VERSION, "package_version": __version__,
            **models, "confidence": self.confidence, "min_score": self.min_score, "target": self.target,
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
        many = "stages" in data
        missing = [k for k in (("stages",) if many else ("saver", "base")) + ("confidence", "min_score", "t")
                   if k not in data]
        if missing:
            raise TinySaverInputError(f"{source}: missing {missing}")
        if many:
            if not isinstance(data["stages"], list) or not isinstance(data["t"], list):
                raise TinySaverInputError(f"{source}: stages and t must be lists (one t per stage but the last)")
            entries = {f"stages[{k}]": entry for k, entry in enumerate(data["stages"])}
        else:
            entries = {role: data[role] for role in ("saver", "base")}
        for role, entry in entries.items():
            if not isinstance(entry, Mapping) or "weights" not in entry:
                raise TinySaverInputError(f"{source}: {role} must be an object with 'weights'")
        known = {"format", "version", "package_version", "saver", "base", "stages", "confidence", "min_score", "t",
                 "target", "calibration", "held_out"}
        fields = dict(confidence=dict(data["confidence"]), min_score=_finite(data["min_score"], "min_score"),
                      target=data.get("target"), calibration=data.get("calibration"), held_out=data.get("held_out"),
                      extra={k: v for k, v in data.items() if k not in known})
        if many:
            thresholds = [_finite(t, "t") for t in data["t"]]
            return cls.multistage(list(entries.values()), thresholds, **fields)
        return cls(saver=dict(data["saver"]), base=dict(data["base"]), t=_finite(data["t"], "t"), **fields)

    def confidence_option(self) -> str:
        """The ``confidence=`` option it records: a name, or the router file after its sha256 check."""
        if "router_file" in self.confidence:
            path = Path(self.confidence["router_file"])
            if not path.is_file():
                raise FileNotFoundError(f"router file of the operating point not found: {path}")
            check_sha256(path, self.confidence.get("sha256"), "router file")
            return str(path)
        return str(self.confidence.get("name", "mean"))

    def exit_policies(self) -> list:
        """One :class:`~tinysaver_det.core.policy.ExitPolicy` per stage but the last (the router file checked once)."""
        from tinysaver_det.core.policy import ExitPolicy

        confidence = self.confidence_option()
        return [ExitPolicy(t, confidence, self.min_score) for t in self.stage_thresholds]

    def build_model(self, role: str | int, category_ids_by_name: Mapping[str, int] | None = None, *,
                    device: str | None = None, half: bool = False, features: bool = False):
        """Build one model it records, after checking its files' sha256.

        A local weights file (an mmdet config and checkpoint) is checked before it is loaded; an
        official name that Ultralytics resolves (or downloads) is checked on the file Ultralytics
        loaded. The class map is not applied here: :func:`tinysaver_det.build.build_cascade` applies
        :attr:`class_map` (or :func:`tinysaver_det.build.with_class_map` with a dataset).

        Args:
            role: ``"saver"``, ``"base"``, or a stage index (0 = the cheapest model).
            category_ids_by_name: a dataset's ``{name: id}`` (evaluation); None: the model's own classes.
            device: None: the adapter's default (the CPU).
            features: capture a YOLO model's own features (a router file that reads them).
        """
        from tinysaver_det.adapters import is_mmdet_config, resolve_weights
        from tinysaver_det.build import build_detector

        if isinstance(role, int):
            entry, role = self.stage_entries[role], ("saver", "base")[role] if self.n_stages == 2 else f"stage {role}"
        else:
            entry = getattr(self, role)
        weights = resolve_weights(entry["weights"])
        if is_mmdet_config(weights):
            checkpoint = entry.get("checkpoint")
            check_sha256(weights, entry.get("config_sha256"), f"{role} config")
            if checkpoint:
                check_sha256(checkpoint, entry.get("sha256"), f"{role} checkpoint")
            return build_detector((weights, checkpoint) if checkpoint else weights, role,
                                  category_ids_by_name=category_ids_by_name, device=device, half=half,
                                  features=features)
        if Path(weights).is_file():
            check_sha256(weights, entry.get("sha256"), f"{role} weights")
        predict = dict(entry.get("predict") or {})
        predict.setdefault("nms", PREDICTOR)  # a point picked before the mode was recorded was measured with it
        detector = build_detector(weights, role, category_ids_by_name=category_ids_by_name, imgsz=entry.get("imgsz"),
                                  device=device, half=half, features=features, **predict)
        loaded = detector_settings(detector).get("sha256")
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
