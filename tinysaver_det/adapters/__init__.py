"""Framework adapters implementing :class:`tinysaver_det.detection.types.Detector`.

Each adapter module imports its framework at import time, so import the one you use:
``from tinysaver_det.adapters.ultralytics import UltralyticsDetector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


def create_detector(weights: str | Path, category_ids_by_name: Mapping[str, int], **options):
    """Build the adapter that fits ``weights``: an Ultralytics YOLO (``.pt``, ``.yaml`` or an
    official name such as ``yolov8n.pt``). ``options`` go to the adapter's constructor."""
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(weights, category_ids_by_name, **options)
