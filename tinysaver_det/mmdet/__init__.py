"""mmdetection 3.x plug-in: TinySaver as an mmdet detector, run by mmengine's ``Runner``.

Importing this package registers, in mmdet's registries, the ``TinySaverDetector`` model, the
``TinySaverRouting`` metric (per-image routing, gathered across ranks) and the ``KeepOriginalImage``
transform. A config loads it with::

    custom_imports = dict(imports=['tinysaver_det.mmdet'], allow_failed_imports=False)

See ``configs/`` and ``tools/test_mmdet.py``.
"""

from tinysaver_det.adapters import mmdet as _mmdet_adapter  # first: a missing mmdet fails with the install hint
from tinysaver_det.mmdet.detector import TinySaverDetector
from tinysaver_det.mmdet.routing import TinySaverRouting
from tinysaver_det.mmdet.transforms import KeepOriginalImage

__all__ = ["KeepOriginalImage", "TinySaverDetector", "TinySaverRouting"]
