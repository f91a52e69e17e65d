"""The mmdet plug-in and adapter on real COCO images with real RTMDet / DINO architectures (random weights).

The saver is the shipped demo YOLO (its 8 shape classes given 8 COCO names, as in the subset config);
the bases are randomly initialised, saved once as mmdet checkpoints and loaded by both the plug-in
(mmengine's Runner) and the Python API (MMDetDetector in the spine's Cascade), so the two paths run
the same weights on the same pixels.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tinysaver_det import assets
from tinysaver_det.adapters import create_detector
from tinysaver_det.adapters.ultralytics import UltralyticsDetector
from tinysaver_det.core import image_confidence
from tinysaver_det.detection.cascade import Cascade
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.images import load_image
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.runner import evaluate_cascade
from tinysaver_det.detection.types import Detections
from tinysaver_det.io import read_jsonl

pytest.importorskip("mmdet")
from mmcv.transforms import Compose  # noqa: E402
from mmdet.datasets import CocoDataset as MMDetCocoDataset  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from tinysaver_det.mmdet.evaluate_config import run_test  # noqa: E402  (registers the plug-in)

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
SUBSET_CONFIG = CONFIGS / "tinysaver_demo_rtmdet-tiny_coco-subset.py"
DINO_CONFIG = CONFIGS / "tinysaver_yolov8n_dino-4scale-r50_coco.py"
N_IMAGES = 8

init_default_scope("mmdet")  # what the Runner does: models built here resolve mmdet's registries
COCO_KEYS = {"AP": "mAP", "AP50": "mAP_50", "AP75": "mAP_75", "APs": "mAP_s", "APm": "mAP_m", "APl": "mAP_l"}


def subset_config(base: str) -> Config:
    """The subset config with its RTMDet-L base, or with DINO-4scale R-50 swapped in (test scale 320)."""
    cfg = Config.fromfile(SUBSET_CONFIG)
    if base == "dino":
        dino = Config.fromfile(DINO_CONFIG)
        cfg.model.base = dino.model.base
        pipeline = dino.test_dataloader.dataset.pipeline
        next(t for t in pipeline if t.type == "Resize").scale = (533, 320)
        cfg.test_dataloader.dataset.pipeline = pipeline
    return cfg


def base_only(cfg: Config) -> Config:
    """The mmdet config of the cascade's base alone (its model and test pipeline), for MMDetDetector."""
    base = copy.deepcopy(cfg)
    base.model = cfg.model.base
    return base


@pytest.fixture(scope="module")
def images(coco_subset):
    """The first 8 COCO-subset images by id, in a COCO annotation file of their own (ids sorted)."""
    return CocoDataset(coco_subset(N_IMAGES), assets.asset_path(assets.COCO_IMAGES))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A randomly initialised (seeded, mmdet's init_weights) RTMDet-L and DINO, saved as mmdet checkpoints."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for base in ("rtmdet", "dino"):
        torch.manual_seed(0)
        model = MODELS.build(subset_config(base).model.base)
        model.init_weights()
        paths[base] = folder / f"{base}.pth"
        meta = {"dataset_meta": {"classes": MMDetCocoDataset.METAINFO["classes"]}}
        torch.save({"state_dict": model.state_dict(), "meta": meta}, paths[base])
    return paths


def saver_for(cfg: Config, category_ids_by_name) -> UltralyticsDetector:
    options = dict(cfg.model.saver)
    return UltralyticsDetector(options.pop("weights"), category_ids_by_name, **options)


def median_confidence(cfg, dataset, batch_size) -> float:
    """The median saver confidence over the images, batched as the run will batch them."""
    saver = saver_for(cfg, dataset.category_ids_by_name)
    confidences = []
    for start in range(0, len(dataset), batch_size):
        infos = dataset.images[start : start + batch_size]
        prediction = saver.predict([load_image(dataset.path(i)) for i in infos], [i.image_id for i in infos])
        confidences += [image_confidence(d.scores) for d in prediction.detections]
    return float(np.median(confidences))


def configure(cfg: Config, dataset: CocoDataset, threshold: float, batch_size: int, outfile_prefix=None) -> Config:
    cfg.model.threshold = threshold
    cfg.test_dataloader.batch_size = batch_size
    cfg.test_dataloader.dataset.ann_file = str(dataset.annotation_file)
    cfg.test_evaluator[0].ann_file = str(dataset.annotation_file)
    if outfile_prefix is not None:
        cfg.test_evaluator[0].outfile_prefix = str(outfile_prefix)
    return cfg


def test_tinysaver_det_imports_without_mmdet():
    code = """
import sys
for name in ("mmdet", "mmcv", "mmengine"):
    sys.modules[name] = None  # importing any of them now raises ModuleNotFoundError
import tinysaver_det, tinysaver_det.adapters, tinysaver_det.adapters.ultralytics
import tinysaver_det.detection.cascade, tinysaver_det.detection.runner, tinysaver_det.detection.coco.reference
try:
    import tinysaver_det.mmdet
except ModuleNotFoundError as error:
    assert "pip install" in str(error), error
else:
    raise AssertionError("tinysaver_det.mmdet imported without mmdet")
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.slow
# The official Co-DINO variant loads only from an mmdetection checkout: tests/test_mmdet_configs.py
# loads it from a stand-in checkout.
@pytest.mark.parametrize("config", sorted(p for p in CONFIGS.glob("tinysaver_*.py") if "_official_" not in p.name),
                         ids=lambda path: path.stem)
def test_every_config_loads_and_names_its_parts(config):
    cfg = Config.fromfile(config)
    assert cfg.custom_imports.imports[0] == "tinysaver_det.mmdet" and not cfg.custom_imports.allow_failed_imports
    assert cfg.model.type == "TinySaverDetector" and cfg.model.min_score == 0.05
    assert cfg.test_evaluator[0].type == "CocoMetric" and cfg.test_evaluator[1].type == "TinySaverRouting"
    assert cfg.model.base.backbone.init_cfg is None  # nothing to download
    assert {"CoDETR": "codino", "RTMDet": "rtmdet", "DINO": "dino"}[cfg.model.base.type] in config.stem


@pytest.mark.usefixtures("assets_folder")  # the subset config's saver is a demo model
@pytest.mark.parametrize("config", ["tinysaver_yolov8n_rtmdet-l_coco.py", "tinysaver_yolov8n_dino-4scale-r50_coco.py"])
def test_rtmdet_and_dino_configs_build_their_model(config):
    cfg = Config.fromfile(CONFIGS / config)
    cfg.model.saver = Config.fromfile(SUBSET_CONFIG).model.saver  # yolov8n.pt would need a download
    model = MODELS.build(cfg.model)
    assert type(model.base).__name__ == cfg.model.base.type
    assert type(model.data_preprocessor).__name__ == "DetDataPreprocessor"  # the base's own
    assert model.data_preprocessor.mean.flatten().tolist() == pytest.approx(cfg.model.base.data_preprocessor.mean)
    assert len(model.classes) == 80 and all(k.startswith("base.") for k in model.state_dict() if "preprocessor" not in k)


def test_yolov8n_coco_names_map_onto_mmdet_coco_classes():
    """The configs' saver (official yolov8n.pt, COCO names) maps onto mmdet's COCO labels by name, 1:1."""
    import ultralytics
    from ultralytics.utils import YAML

    from tinysaver_det.detection.categories import category_lookup

    names = YAML.load(Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml")["names"]
    classes = MMDetCocoDataset.METAINFO["classes"]
    lookup = category_lookup(names, {name: label for label, name in enumerate(classes)})
    assert sorted(lookup.tolist()) == list(range(80))


@pytest.mark.slow
@pytest.mark.parametrize("base, batch_size", [("rtmdet", 4), ("dino", 1)])
def test_runner_matches_the_python_cascade(base, batch_size, images, checkpoints, tmp_path):
    cfg = subset_config(base)
    threshold = median_confidence(cfg, images, batch_size)
    configure(cfg, images, threshold, batch_size, outfile_prefix=tmp_path / "coco")
    metrics = run_test(cfg, checkpoints[base], work_dir=tmp_path / "runner")

    # The Python API: the same saver, the same base config and weights through MMDetDetector, same batches.
    base_config = tmp_path / "base_config.py"
    base_only(cfg).dump(base_config)
    mmdet_base = create_detector(base_config, images.category_ids_by_name, checkpoint=checkpoints[base])
    cascade = Cascade(saver_for(cfg, images.category_ids_by_name), mmdet_base, threshold)
    summary = evaluate_cascade(cascade, images, tmp_path / "python", batch_size=batch_size, progress=False)

    routing = json.loads((tmp_path / "runner" / "routing.json").read_text())
    records = read_jsonl(tmp_path / "python" / "records.jsonl")
    assert [r["image_id"] for r in routing] == [r["image_id"] for r in records] == images.image_ids
    assert 0 < sum(r["exited"] for r in routing) < N_IMAGES  # both branches ran
    for plugin, python in zip(routing, records):
        assert plugin["exited"] == python["exited"] == (plugin["confidence"] >= threshold)
        assert plugin["confidence"] == pytest.approx(python["confidence"], abs=1e-9)
        assert plugin["n_boxes"] == python["n_boxes"]
        assert plugin["saver_gflops"] == pytest.approx(python["saver_gflops"], rel=1e-9)
        assert plugin["base_gflops"] == pytest.approx(python["base_gflops"], rel=1e-9)
        assert (plugin["base_gflops"] > 0) != plugin["exited"]
    assert metrics["tinysaver/exit_ratio"] == pytest.approx(summary.cascade.exit_ratio)
    assert metrics["tinysaver/gflops_per_image"] == pytest.approx(summary.cascade.gflops_per_image, rel=1e-9)

    # CocoMetric's numbers equal tinysaver_det's evaluation of the very detections CocoMetric scored...
    plugin_results = json.loads((tmp_path / "coco.bbox.json").read_text())
    ours = coco_bbox_metrics(load_coco(images.annotation_file), plugin_results, images.image_ids)
    for key, name in COCO_KEYS.items():
        assert metrics[f"coco/bbox_{name}"] == round(ours[key], 3), key
        assert metrics[f"coco/bbox_{name}"] == round(summary.cascade.metrics[key], 3), key
    # ...and those detections are the Python cascade's: same labels (mapped by name), original pixels.
    python_results = json.loads((tmp_path / "python" / "results.json").read_text())
    assert len(plugin_results) == len(python_results)
    for plugin, python in zip(plugin_results, python_results):
        assert (plugin["image_id"], plugin["category_id"]) == (python["image_id"], python["category_id"])
        np.testing.assert_allclose(plugin["bbox"], python["bbox"], atol=1e-2)
        assert plugin["score"] == pytest.approx(python["score"], abs=1e-5)

    written = json.loads((tmp_path / "runner" / "metrics.json").read_text())
    assert written["metrics"] == metrics and "FLOPs = 2 * MACs" in written["flops_convention"]
    deformable = "mmcv.ops.MultiScaleDeformableAttention"
    assert (deformable in written["uncounted_ops"]["base"]) == (base == "dino")
    if base == "dino":  # on CPU mmcv samples with grid_sample, which the counter lists too
        assert "grid_sampler_2d" in written["uncounted_ops"]["base"]


@pytest.mark.slow
def test_coco_metric_and_ours_agree_where_ap_is_not_zero(images):
    """Random bases score AP 0 in the runs above, so pin the two evaluations together here on detections
    with real AP: jittered ground-truth boxes, handed to CocoMetric as mmdet labels (the plug-in's label
    space) and to tinysaver_det as dataset category ids. Able to fail on a label-to-category mismatch,
    a coordinate convention or a max-detections convention."""
    from mmdet.evaluation import CocoMetric

    ground_truth = load_coco(images.annotation_file)
    classes = MMDetCocoDataset.METAINFO["classes"]
    label_of = {images.category_ids_by_name[name]: label for label, name in enumerate(classes)}
    metric = CocoMetric(ann_file=str(images.annotation_file), metric="bbox", proposal_nums=(1, 10, 100))
    metric.dataset_meta = {"classes": classes}
    rng = np.random.default_rng(0)
    results = []
    for info in images.images:
        annotations = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=info.image_id))
        xywh = np.array([a["bbox"] for a in annotations]).reshape(-1, 4)
        xywh[:, :2] += rng.normal(0, 0.1, xywh[:, :2].shape) * xywh[:, 2:]
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        scores = rng.uniform(0.05, 1.0, len(boxes))
        category_ids = np.array([a["category_id"] for a in annotations], dtype=np.int64)
        results += Detections(info.image_id, boxes, scores, category_ids).to_coco()
        metric.process({}, [{
            "img_id": info.image_id,
            "ori_shape": (info.height, info.width),
            "pred_instances": {
                "bboxes": torch.as_tensor(boxes, dtype=torch.float32),
                "scores": torch.as_tensor(scores, dtype=torch.float32),
                "labels": torch.as_tensor([label_of[c] for c in category_ids], dtype=torch.long),
            },
        }])
    mmdet_metrics = metric.evaluate(size=len(images))
    ours = coco_bbox_metrics(ground_truth, results, images.image_ids)
    assert 0.2 < ours["AP"] < 0.95
    for key, name in COCO_KEYS.items():
        assert mmdet_metrics[f"coco/bbox_{name}"] == round(ours[key], 3), key


@pytest.mark.slow
def test_two_processes_give_the_one_process_metrics_and_routing(images, checkpoints, tmp_path):
    cfg = subset_config("rtmdet")
    threshold = median_confidence(cfg, images, batch_size=1)
    options = [f"model.threshold={threshold!r}", f"test_dataloader.dataset.ann_file={images.annotation_file}",
               f"test_evaluator.0.ann_file={images.annotation_file}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = {
        1: [sys.executable, "tools/test_mmdet.py"],
        2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "tools/test_mmdet.py", "--launcher", "pytorch"],
    }
    for processes, command in runs.items():
        command += [str(SUBSET_CONFIG), "--checkpoint", str(checkpoints["rtmdet"]),
                    "--work-dir", str(tmp_path / str(processes)), "--cfg-options", *options]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    one, two = (json.loads((tmp_path / str(p) / "metrics.json").read_text())["metrics"] for p in (1, 2))
    assert one == two
    assert 0 < one["tinysaver/exit_ratio"] < 1
    routing_one, routing_two = (json.loads((tmp_path / str(p) / "routing.json").read_text()) for p in (1, 2))
    assert len(routing_one) == len(routing_two) == N_IMAGES
    for a, b in zip(routing_one, routing_two):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


@pytest.mark.slow
def test_plugin_reads_arrays_kept_by_the_pipeline_and_honours_rescale(images):
    """Arrays (no img_path) need KeepOriginalImage; without it the error says so. rescale=False
    returns the saver's boxes in the resized image's pixels, as mmdet heads do."""
    cfg = subset_config("rtmdet")
    cfg.model.threshold = 0.0  # every image exits: this is about the saver's input and output frames
    model = MODELS.build(cfg.model).eval()
    meta_keys = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    from_file = Compose(pipeline)
    pipeline[0] = dict(type="LoadImageFromNDArray")
    pipeline[-1] = dict(type="PackDetInputs", meta_keys=(*meta_keys, "ori_img"))
    from_array = Compose([pipeline[0], dict(type="KeepOriginalImage"), *pipeline[1:]])
    info = images.images[0]
    image = load_image(images.path(info))

    with torch.no_grad():
        by_path = model.test_step(pseudo_collate([from_file(dict(img_path=str(images.path(info)), img_id=info.image_id))]))
        by_array = model.test_step(pseudo_collate([from_array(dict(img=image, img_id=info.image_id))]))
    assert by_array[0].img_path is None and by_array[0].tinysaver["exited"]
    for field in ("bboxes", "scores", "labels"):
        assert torch.equal(getattr(by_path[0].pred_instances, field), getattr(by_array[0].pred_instances, field))

    data = model.data_preprocessor(pseudo_collate([from_file(dict(img_path=str(images.path(info)), img_id=1))]))
    resized = model.predict(data["inputs"], data["data_samples"], rescale=False)[0]
    scale = torch.tensor(resized.scale_factor * 2, dtype=torch.float32)
    torch.testing.assert_close(resized.pred_instances.bboxes, by_path[0].pred_instances.bboxes * scale)

    bare = Compose([pipeline[0], *pipeline[1:-1], dict(type="PackDetInputs", meta_keys=meta_keys)])
    with pytest.raises(ValueError, match="KeepOriginalImage"):
        model.test_step(pseudo_collate([bare(dict(img=image, img_id=1))]))


@pytest.mark.slow
def test_plugin_checks_its_classes_against_the_base():
    cfg = subset_config("rtmdet")
    cfg.model.classes = ["person", "car"]
    with pytest.raises(ValueError, match="predicts 80 classes"):
        MODELS.build(cfg.model)


def test_eval_coco_takes_a_base_checkpoint_only_with_an_mmdet_config(capsys, eval_coco_tool):
    with pytest.raises(SystemExit):
        eval_coco_tool.parse_args(["--base", "yolov8s.pt", "--base-checkpoint", "base.pth"])
    assert "needs an mmdet config" in capsys.readouterr().err
