"""Framework adapters implementing :class:`tinysaver_det.detection.types.Detector`.

Each adapter module imports its framework at import time, so import the one you use:
``from tinysaver_det.adapters.ultralytics import UltralyticsDetector`` or
``from tinysaver_det.adapters.mmdet import MMDetDetector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


def is_mmdet_config(weights) -> bool:
    """Whether ``weights`` names an mmdet config (a ``.py`` file) rather than Ultralytics weights.

    >>> is_mmdet_config("rtmdet_l_8xb32-300e_coco.py"), is_mmdet_config("yolov8n.pt")
    (True, False)
    """
    return isinstance(weights, (str, Path)) and Path(weights).suffix == ".py"


def resolve_weights(weights):
    """A demo model name (``demo:pico``, ``demo:n``, ``demo:s``) as its weights file; anything else unchanged.

    The one place where demo names are read, so that every command and the Python API take them.

    >>> resolve_weights("yolov8n.pt")
    'yolov8n.pt'
    """
    if isinstance(weights, (str, Path)) and str(weights).startswith("demo:"):
        from tinysaver_det.assets import demo_weights

        return demo_weights(str(weights))
    return weights


def check_half(half: bool, device: str | None) -> None:
    """Refuse fp16 on the CPU (``device`` None is the CPU): Ultralytics would run fp32 there without a
    word, and the run would not be the one asked for.

    >>> check_half(True, "0"), check_half(False, "cpu")
    (None, None)
    """
    if half and str(device or "cpu").strip().lower() == "cpu":
        from tinysaver_det.errors import TinySaverInputError

        raise TinySaverInputError("--half (fp16) needs a GPU, and the device is the CPU; drop --half or pass --device 0")


def check_imgsz(weights, imgsz: int | None) -> None:
    """Refuse an input size for an mmdet config: its size comes from its test pipeline, and passing one
    on would be a TypeError deep in the adapter.

    >>> check_imgsz("yolov8n.pt", 320), check_imgsz("rtmdet.py", None)
    (None, None)
    """
    if imgsz is not None and is_mmdet_config(weights):
        from tinysaver_det.errors import TinySaverInputError

        raise TinySaverInputError(f"{weights}: --imgsz sets an Ultralytics model's input size; an mmdet "
                                  "model's comes from its config's test pipeline")


def create_detector(weights, category_ids_by_name: Mapping[str, int] | None = None, **options):
    """Build the adapter that fits ``weights``.

    A ``.py`` file is an mmdet config (:class:`~tinysaver_det.adapters.mmdet.MMDetDetector`, whose
    ``checkpoint`` option gives its weights); anything else is an Ultralytics YOLO (``.pt``, ``.yaml``,
    an official name such as ``yolov8n.pt``, a demo name such as ``demo:pico``, or a ``YOLO`` object).
    ``category_ids_by_name`` maps the model's classes to a dataset's ids by name; ``None`` keeps the
    model's own class indices. ``options`` go to the adapter's constructor; those set to ``None``
    are dropped, so the adapter's defaults apply.
    """
    options = {key: value for key, value in options.items() if value is not None}
    weights = resolve_weights(weights)
    check_half(options.get("half", False), options.get("device"))
    if is_mmdet_config(weights):
        from tinysaver_det.adapters.mmdet import MMDetDetector

        from tinysaver_det.errors import TinySaverInputError

        # Options of the Ultralytics adapter that an mmdet model has no counterpart for: refused by name.
        if options.pop("half", False):
            raise TinySaverInputError(f"{weights}: --half is not supported for mmdet models (fp32 only)")
        check_imgsz(weights, options.get("imgsz"))
        if options.pop("features", False):
            raise TinySaverInputError(f"{weights}: an mmdet model captures no saver features (YOLO savers only)")
        if "nms" in options:
            raise TinySaverInputError(f"{weights}: --nms chooses an Ultralytics model's NMS; an mmdet model's "
                                      "comes from its config's test_cfg")
        return MMDetDetector(weights, category_ids_by_name, **options)
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(weights, category_ids_by_name, **options)
