"""Which NMS made a YOLO model's boxes: Ultralytics' validator's or its predictor's.

Ultralytics runs two different NMS calls on the same raw head output:

* ``validator`` (``DetectionValidator.postprocess``): ``multi_label=True``, a box is kept once for every
  class whose score passes ``conf``. Ultralytics' own mAP figures (and the paper's YOLOv8 figures) are
  these; it is the evaluation default here.
* ``predictor`` (``DetectionPredictor.postprocess``): one label per box, the best class. What
  ``YOLO.predict`` returns, and how this package evaluated before the mode was recorded.

AP, the image confidence and so the routing all depend on the mode, so it is recorded with the predictions
(``run.json``, a predictions file's provenance, an operating point), and inputs made in different modes are
refused together. Framework-free: the offline tools and the command line read it.
"""

from __future__ import annotations

from typing import Mapping

from tinysaver_det.errors import TinySaverInputError

VALIDATOR = "validator"
PREDICTOR = "predictor"
#: The NMS modes of a YOLO model, the evaluation default first.
NMS_MODES = (VALIDATOR, PREDICTOR)
DEFAULT_NMS = VALIDATOR


def check_nms_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`NMS_MODES`.

    >>> check_nms_mode("predictor")
    'predictor'
    """
    if mode not in NMS_MODES:
        raise TinySaverInputError(f"nms mode must be one of {', '.join(NMS_MODES)}, got {mode!r}")
    return mode


def recorded_nms_mode(settings: Mapping | None) -> str | None:
    """The NMS mode a model's recorded settings (``run.json`` entry, provenance ``model``) say made its boxes.

    A YOLO model's settings recorded before the mode was (they have ``quantize``, no ``nms``) were made with
    the predictor's NMS; a model without an NMS mode (mmdet, a custom Detector) or nothing recorded: None.

    >>> recorded_nms_mode({"nms": "validator", "quantize": 32}), recorded_nms_mode({"quantize": 32})
    ('validator', 'predictor')
    >>> recorded_nms_mode({"name": "rtmdet"}) is None
    True
    """
    if not isinstance(settings, Mapping):
        return None
    if "nms" in settings:
        return str(settings["nms"])
    return PREDICTOR if "quantize" in settings else None
