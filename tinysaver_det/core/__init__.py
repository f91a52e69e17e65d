"""Task-agnostic cascade maths: numpy and the standard library only.

Nothing under ``tinysaver_det.core`` may import torch, Ultralytics or mmdet: classification and
detection plug into these functions with plain arrays, so the offline simulation (sweeps) and the
online cascade share one rule.
"""

from tinysaver_det.core.cost import expected_cost
from tinysaver_det.core.policy import (
    CONFIDENCE_FUNCTIONS,
    DEFAULT_MIN_SCORE,
    ExitPolicy,
    image_confidence,
    max_score,
    resolve_confidence,
    topk_mean_score,
)

__all__ = [
    "CONFIDENCE_FUNCTIONS",
    "DEFAULT_MIN_SCORE",
    "ExitPolicy",
    "expected_cost",
    "image_confidence",
    "max_score",
    "resolve_confidence",
    "topk_mean_score",
]
