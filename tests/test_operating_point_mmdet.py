"""The mmdet plug-in loads an operating point file: saver (sha256-checked), threshold, confidence."""

import shutil
from pathlib import Path

import pytest

from tinysaver_det import assets
from tinysaver_det.io import sha256_file
from tinysaver_det.operating_point import OperatingPointFile

pytest.importorskip("mmdet")
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import tinysaver_det.mmdet  # noqa: E402,F401  (registers the plug-in)

SUBSET_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tinysaver_demo_rtmdet-tiny_coco-subset.py"
init_default_scope("mmdet")


def _point(weights: Path, class_map: dict) -> OperatingPointFile:
    saver = {"weights": str(weights), "sha256": sha256_file(weights), "imgsz": 256,
             "predict": {"conf": 0.001, "iou": 0.7, "max_det": 300}, "class_map": class_map}
    return OperatingPointFile(saver, {"weights": str(SUBSET_CONFIG)}, {"name": "max"}, 0.1, 0.3)


@pytest.mark.slow
def test_the_plugin_takes_saver_threshold_and_confidence_from_an_operating_point(tmp_path):
    cfg = Config.fromfile(SUBSET_CONFIG)
    from_config = MODELS.build(cfg.model)
    shapes = ["circle", "octagon", "square", "rectangle", "triangle", "arrowhead", "star", "cross"]
    weights = tmp_path / "pico.pt"
    shutil.copy(assets.asset_path(assets.DEMO_SAVER), weights)
    path = _point(weights, dict(zip(shapes, cfg.model.saver.class_names))).write(tmp_path / "op.json")
    model = MODELS.build({**cfg.model, "saver": {"device": "cpu"}, "threshold": None, "operating_point": str(path)})
    assert (model.threshold, model.min_score, model.confidence.name) == (0.3, 0.1, "max")
    assert model.saver.category_ids.tolist() == from_config.saver.category_ids.tolist()
    shutil.copy(assets.demo_weights("n"), weights)  # the file changed after the pick
    with pytest.raises(Exception, match=r"has sha256 [0-9a-f]{64}, but the operating point was picked with"):
        MODELS.build({**cfg.model, "saver": None, "threshold": None, "operating_point": str(path)})
