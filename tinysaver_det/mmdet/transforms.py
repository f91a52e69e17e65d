"""Keep the decoded image for the saver when there is no file to read it from again."""

from __future__ import annotations

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class KeepOriginalImage(BaseTransform):
    """Store a copy of the image as loaded (before any resize) in ``results['ori_img']``.

    The saver runs on original pixels. For dataset images the detector reads them again from
    ``img_path``; arrays given to ``LoadImageFromNDArray`` (``inference_detector`` on an ndarray) have
    no path, so place this transform right after the loading one and add ``'ori_img'`` to
    ``PackDetInputs``' ``meta_keys``.
    """

    def transform(self, results: dict) -> dict:
        results["ori_img"] = results["img"].copy()
        return results
