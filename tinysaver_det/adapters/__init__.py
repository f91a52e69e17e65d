"""Framework adapters implementing :class:`tinysaver_det.detection.types.Detector`.

Each adapter module imports its framework at import time, so import the one you use:
``from tinysaver_det.adapters.ultralytics import UltralyticsDetector`` or
``from tinysaver_det.adapters.mmdet import MMDetDetector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


def is_mmdet_config(weights: str | Path) -> bool:
    """Whether ``weights`` names an mmdet config (a ``.py`` file) rather than Ultralytics weights.

    >>> is_mmdet_config("rtmdet_l_8xb32-300e_coco.py"), is_mmdet_config("yolov8n.pt")
    (True, False)
    """
    return Path(weights).suffix == ".py"


def create_detector(weights: str | Path, category_ids_by_name: Mapping[str, int], **options):
    """Build the adapter that fits ``weights``.

    A ``.py`` file is an mmdet config (:class:`~tinysaver_det.adapters.mmdet.MMDetDetector`, whose
    ``checkpoint`` option gives its weights); anything else is an Ultralytics YOLO (``.pt``, ``.yaml``
    or an official name such as ``yolov8n.pt``). ``options`` go to the adapter's constructor; those
    set to ``None`` are dropped, so the adapter's defaults apply.
    """
    options = {key: value for key, value in options.items() if value is not None}
    if is_mmdet_config(weights):
        from tinysaver_det.adapters.mmdet import MMDetDetector

        return MMDetDetector(weights, category_ids_by_name, **options)
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(weights, category_ids_by_name, **options)
