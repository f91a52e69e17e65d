"""mmdet and the front door: the plug-in loads an operating point file; an mmdet config is a TinySaver base."""

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
@pytest.mark.usefixtures("assets_folder")  # a demo saver
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


@pytest.mark.slow
def test_an_mmdet_config_is_a_base_of_the_front_door(tmp_path):
    """A base from an mmdet config (random RTMDet-tiny, COCO's 80 classes); the saver's shapes mapped by class_map."""
    from ultralytics.engine.results import Results

    from tinysaver_det.api import TinySaver
    from tinysaver_det.detection.categories import normalize_name

    config = tmp_path / "rtmdet_tiny_320.py"
    config.write_text(
        "_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'\n"
        "model = dict(backbone=dict(init_cfg=None))\n"
        "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(320, 320), keep_ratio=True),\n"
        "                 dict(type='Pad', size=(320, 320), pad_val=dict(img=(114, 114, 114))),\n"
        "                 dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',\n"
        "                                                   'scale_factor'))]\n"
        "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    shapes = ["circle", "octagon", "square", "rectangle", "triangle", "arrowhead", "star", "cross"]
    coco = Config.fromfile(SUBSET_CONFIG).model.saver.class_names
    cascade = TinySaver("demo:pico", config, 0.09, class_map=dict(zip(shapes, coco)))
    assert len(cascade.names) == 80 and cascade.names[0] == "person"
    images = sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:4]
    results = cascade.predict([str(p) for p in images], batch=4, conf=0.0)
    assert all(isinstance(r, Results) for r in results) and results[0].plot().shape == (256, 256, 3)
    assert any(r.exited for r in results)
    for r in results:
        assert (r.gflops["base"] > 0) == (not r.exited)
        if r.exited:  # the saver's shapes come back under their COCO names
            assert {normalize_name(r.names[int(c)]) for c in r.boxes.cls} <= {normalize_name(n) for n in coco}


@pytest.mark.slow
def test_the_plugin_builds_a_feature_saver_for_a_feature_router_of_an_operating_point(tmp_path):
    """An operating point whose confidence reads the saver's own features: the plug-in builds its saver
    with features=True (through the one cascade builder), so a batch routes by the router's confidence."""
    import numpy as np
    import torch
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from tinysaver_det.adapters.ultralytics import UltralyticsDetector
    from tinysaver_det.detection.images import load_image
    from tinysaver_det.detection.feature_router import fit_feature_router
    from tinysaver_det.operating_point import confidence_entry

    cfg = Config.fromfile(SUBSET_CONFIG)
    weights = tmp_path / "pico.pt"
    shutil.copy(assets.asset_path(assets.DEMO_SAVER), weights)
    paths = sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:8]
    saver = UltralyticsDetector(weights, imgsz=320, features=True)
    detections = saver.predict([load_image(p) for p in paths], list(range(len(paths)))).detections
    router = fit_feature_router(detections, np.random.default_rng(0).normal(size=len(paths)),
                                block_choices=[("outputs", "candidates", "pooled")])
    router_file = router.save(tmp_path / "features_router.json")
    confidences = np.array([router(d) for d in detections])
    t = float(np.median(confidences))
    shapes = ["circle", "octagon", "square", "rectangle", "triangle", "arrowhead", "star", "cross"]
    entry = {"weights": str(weights), "sha256": sha256_file(weights), "imgsz": 320,
             "predict": {"conf": 0.001, "iou": 0.7, "max_det": 300, "nms": saver.settings["nms"]},
             "class_map": dict(zip(shapes, cfg.model.saver.class_names))}
    path = OperatingPointFile(entry, {"weights": str(SUBSET_CONFIG)}, confidence_entry(router_file), 0.05, t).write(
        tmp_path / "op.json")

    model = MODELS.build({**cfg.model, "saver": {"device": "cpu"}, "threshold": None, "operating_point": str(path)})
    model.eval()
    assert model.saver.settings["features"] == router.recipe
    pipeline = Compose([step for step in cfg.test_dataloader.dataset.pipeline if step["type"] != "LoadAnnotations"])
    batch = pseudo_collate([pipeline(dict(img_path=str(p), img_id=i)) for i, p in enumerate(paths)])
    with torch.no_grad():
        samples = model.test_step(batch)
    routing = [sample.tinysaver for sample in samples]
    np.testing.assert_allclose([r["confidence"] for r in routing], confidences, rtol=0, atol=1e-9)
    assert [r["exited"] for r in routing] == [bool(c >= t) for c in confidences]
    assert 0 < sum(r["exited"] for r in routing) < len(paths)
    assert all((r["base_gflops"] > 0) == (not r["exited"]) for r in routing)


RTMDET_SHAPES = (
    "_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'\n"
    "model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=8))\n"
    "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(256, 256), keep_ratio=True),\n"
    "                 dict(type='Pad', size=(256, 256), pad_val=dict(img=(114, 114, 114))),\n"
    "                 dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',\n"
    "                                                   'scale_factor'))]\n"
    "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n"
)


@pytest.mark.slow
def test_pick_over_an_mmdet_base_writes_operating_points_that_rebuild_the_cascade(tmp_path):
    """predict-coco (pico) and an mmdet base's predictions (random RTMDet-tiny over the 8 shapes, config
    plus checkpoint) -> pick, which reads both models' settings from their provenance files -> one
    operating point per target that TinySaver.from_operating_point rebuilds, config and checkpoint
    pinned by sha256."""
    import json

    import numpy as np
    import torch

    from tinysaver_det.adapters.mmdet import MMDetDetector
    from tinysaver_det.api import TinySaver
    from tinysaver_det.cli import main
    from tinysaver_det.core.policy import image_confidence
    from tinysaver_det.detection.cache import read_predictions
    from tinysaver_det.detection.dataset import CocoDataset, restrict_annotations
    from tinysaver_det.detection.runner import predict_dataset
    from tinysaver_det.errors import TinySaverInputError
    from tinysaver_det.operating_point import read_operating_point

    images = assets.asset_path(assets.DEMO_IMAGES)
    full = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    ann = tmp_path / "instances_8.json"
    ann.write_text(json.dumps(restrict_annotations(full, [info["id"] for info in full["images"][:8]])))
    dataset = CocoDataset(ann, images)
    weights = tmp_path / "pico.pt"
    shutil.copy(assets.asset_path(assets.DEMO_SAVER), weights)
    assert main(["predict-coco", "--weights", str(weights), "--ann", str(ann), "--images", str(images),
                 "--batch", "8", "--quiet", "--out", str(tmp_path / "pico_predictions.jsonl")]) == 0

    config = tmp_path / "rtmdet_tiny_shapes.py"
    config.write_text(RTMDET_SHAPES)
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    classes = [c["name"] for c in sorted(full["categories"], key=lambda c: c["id"])]
    checkpoint = tmp_path / "rtmdet_tiny_shapes.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": classes}}}, checkpoint)
    base = MMDetDetector(config, dataset.category_ids_by_name, checkpoint)
    predict_dataset(base, dataset, tmp_path / "rtm_predictions.jsonl", batch_size=8, progress=False)

    saver_rows = read_predictions(tmp_path / "pico_predictions.jsonl")
    base_rows = read_predictions(tmp_path / "rtm_predictions.jsonl")
    budget = round(float(np.mean([r.gflops for r in saver_rows.values()]) +
                         0.5 * np.mean([r.gflops for r in base_rows.values()])), 3)
    out = tmp_path / "pick"
    assert main(["pick", "--ann", str(ann), "--model", f"pico={tmp_path / 'pico_predictions.jsonl'}",
                 "--model", f"rtm={tmp_path / 'rtm_predictions.jsonl'}", "--gflops", str(budget),
                 "--gflops", str(budget * 0.99), "--bootstrap", "5", "--out", str(out)]) == 0
    first, second = (out / f"operating_point_budget_{b:g}_GFLOPs.json" for b in (budget, budget * 0.99))
    assert first.is_file() and second.is_file()
    assert read_operating_point(out / "operating_point.json") == read_operating_point(first)
    point = read_operating_point(first)
    assert point.base["weights"] == str(config.resolve()) and point.base["config_sha256"] == sha256_file(config)
    assert point.base["checkpoint"] == str(checkpoint.resolve()) and point.base["sha256"] == sha256_file(checkpoint)
    assert point.saver["sha256"] == sha256_file(weights) and point.saver["imgsz"] == 256

    cascade = TinySaver.from_operating_point(first)
    assert isinstance(cascade.base, MMDetDetector) and cascade.names == dict(enumerate(classes))
    results = cascade.predict([str(dataset.path(info)) for info in dataset.images], batch=8, conf=0.0)
    assert [r.exited for r in results] == [image_confidence(saver_rows[i].detections.scores) >= point.t
                                           for i in dataset.image_ids]
    assert any(r.exited for r in results) and not all(r.exited for r in results)

    changed = {key: value + 1 if value.is_floating_point() else value for key, value in model.state_dict().items()}
    torch.save({"state_dict": changed, "meta": {"dataset_meta": {"classes": classes}}}, checkpoint)  # other weights
    with pytest.raises(TinySaverInputError, match=r"base checkpoint .* has sha256 [0-9a-f]{64}, but the operating"):
        TinySaver.from_operating_point(first)
