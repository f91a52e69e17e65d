"""tinysaver-det: tiny detectors as computational savers for large ones (TinySaver, Wang et al. 2024).

The top level re-exports the framework-free pieces (numpy only). Framework adapters are imported from
their modules, so that importing the package loads neither torch, Ultralytics nor mmdet:
``tinysaver_det.adapters.ultralytics.UltralyticsDetector``, ``tinysaver_det.adapters.mmdet.MMDetDetector``,
and the mmdet plug-in ``tinysaver_det.mmdet``.
"""

from tinysaver_det.core import (
    ExitPolicy,
    delta_cost_tr,
    expected_cost,
    image_confidence,
    pareto_front,
    r_match,
    select_saver,
    sweep,
)
from tinysaver_det.detection.cascade import Cascade, MultiStageCascade
from tinysaver_det.detection.types import Detections, Detector, Prediction
from tinysaver_det.version import __version__

__all__ = [
    "Cascade",
    "Detections",
    "Detector",
    "ExitPolicy",
    "MultiStageCascade",
    "Prediction",
    "__version__",
    "delta_cost_tr",
    "expected_cost",
    "image_confidence",
    "pareto_front",
    "r_match",
    "select_saver",
    "sweep",
]
