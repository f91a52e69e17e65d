"""The YOLO NMS modes: one hook, recorded wherever predictions go, mixed inputs refused, deployment boxes."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from tinysaver_det import assets
from tinysaver_det.detection.nms_mode import NMS_MODES, PREDICTOR, VALIDATOR, recorded_nms_mode
from tinysaver_det.detection.run_inputs import check_same_nms_mode, predictions_nms_mode
from tinysaver_det.errors import TinySaverInputError

ADAPTERS = Path(__file__).resolve().parent.parent / "tinysaver_det" / "adapters"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_one_nms_hook_no_mock_patch_and_no_import_cycle():
    features = imported_modules(ADAPTERS / "ultralytics_features.py")
    predictor = imported_modules(ADAPTERS / "ultralytics_predictor.py")
    assert "tinysaver_det.adapters.ultralytics" not in features | predictor
    for path in ADAPTERS.glob("ultralytics*.py"):
        assert "unittest.mock" not in imported_modules(path), path.name
    calls = [p.name for p in ADAPTERS.glob("*.py") if "non_max_suppression(" in p.read_text()]
    assert calls == ["ultralytics_predictor.py"]


@pytest.fixture(scope="module")
def four(demo_dataset):
    from tinysaver_det.detection.images import load_image

    subset = demo_dataset.subset(demo_dataset.image_ids[:4])
    return [load_image(subset.path(i)) for i in subset.images], [i.image_id for i in subset.images]


@pytest.fixture(scope="module")
def pico(demo_dataset):
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return {mode: UltralyticsDetector(assets.asset_path(assets.DEMO_SAVER), demo_dataset.category_ids_by_name, nms=mode)
            for mode in NMS_MODES}


def test_the_validator_mode_keeps_a_box_once_per_label_above_conf(pico, four):
    images, ids = four
    multi = pico[VALIDATOR].predict(images, ids).detections
    single = pico[PREDICTOR].predict(images, ids).detections
    assert pico[VALIDATOR].settings["nms"] == VALIDATOR and pico[PREDICTOR].settings["nms"] == PREDICTOR
    for m, s in zip(multi, single):
        assert len(m) > len(s)
        # some box comes back under two labels: same coordinates, other category
        boxes = [tuple(b) for b in m.boxes.round(3).tolist()]
        assert len(set(boxes)) < len(boxes)
        assert (m.scores >= 0.001).all() and (s.scores >= 0.001).all()


def test_the_single_label_answer_rides_on_the_same_forward_pass(pico, four):
    images, ids = four
    detector = pico[VALIDATOR]
    detector.keep_single_label = True
    try:
        detector.predict(images, ids)
        kept = detector.single_label_answers
    finally:
        detector.keep_single_label = False
    expected = pico[PREDICTOR].predict(images, ids).detections
    assert sorted(kept) == ids
    for image_id, d in zip(ids, expected):
        np.testing.assert_array_equal(kept[image_id].boxes, d.boxes)
        np.testing.assert_array_equal(kept[image_id].category_ids, d.category_ids)


def test_a_bad_mode_and_an_mmdet_model_with_a_mode_are_refused(tmp_path):
    from tinysaver_det.adapters import create_detector
    from tinysaver_det.detection.nms_mode import check_nms_mode

    with pytest.raises(TinySaverInputError, match="nms mode must be one of validator, predictor"):
        check_nms_mode("both")
    config = tmp_path / "model.py"
    config.write_text("model = dict(type='RTMDet')\n")
    with pytest.raises(TinySaverInputError, match="--nms chooses an Ultralytics model's NMS"):
        create_detector(config, None, nms=PREDICTOR)


def test_settings_recorded_before_the_mode_read_as_the_predictor():
    assert recorded_nms_mode({"quantize": 32, "conf": 0.001}) == PREDICTOR
    assert recorded_nms_mode({"quantize": 32, "nms": VALIDATOR}) == VALIDATOR
    assert recorded_nms_mode({"name": "custom"}) is None and recorded_nms_mode(None) is None


def test_inputs_of_different_modes_are_refused_together():
    check_same_nms_mode({"a": VALIDATOR, "b": None, "c": VALIDATOR})
    with pytest.raises(TinySaverInputError, match="a was predicted with the validator NMS and c with the predictor NMS"):
        check_same_nms_mode({"a": VALIDATOR, "b": None, "c": PREDICTOR})


def write_predictions(path: Path, mode: str | None, model_settings: dict) -> Path:
    """A one-image predictions file with its provenance (``<stem>.run.json``) recording ``mode``."""
    from tinysaver_det.detection.run_directory import predictions_run_json

    path.write_text(json.dumps({"image_id": 1, "boxes": [[0, 0, 4, 4]], "scores": [0.5], "category_ids": [1],
                                "gflops": 1.0, "seconds": 0.01}) + "\n")
    model = {**model_settings, **({"nms": mode} if mode else {})}
    predictions_run_json(path).write_text(json.dumps({"model": model}))
    return path


def test_a_sweep_cache_of_mixed_modes_is_refused(tmp_path):
    from tinysaver_det.detection.cache import load_cache

    saver = write_predictions(tmp_path / "pico_predictions.jsonl", VALIDATOR, {"quantize": 32})
    base = write_predictions(tmp_path / "s_predictions.jsonl", None, {"quantize": 32})  # older: the predictor's
    assert predictions_nms_mode(saver) == VALIDATOR and predictions_nms_mode(base) == PREDICTOR
    with pytest.raises(TinySaverInputError, match="with the predictor NMS: their numbers do not compare"):
        load_cache(assets.asset_path(assets.DEMO_ANNOTATIONS), {"pico": saver, "s": base})


def test_predict_coco_and_eval_record_the_mode(tmp_path):
    from tinysaver_det.cli import main

    out = tmp_path / "pico_predictions.jsonl"
    assert main(["predict-coco", "--weights", "demo:pico", "--limit", "2", "--quiet", "--nms", PREDICTOR,
                 "--out", str(out)]) == 0
    assert predictions_nms_mode(out) == PREDICTOR
    run = tmp_path / "run"
    assert main(["eval", "--limit", "2", "--quiet", "--batch", "2", "--out", str(run)]) == 0
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["saver"]["nms"] == recorded["base"]["nms"] == VALIDATOR  # the default


def test_an_operating_point_records_the_mode_and_an_old_one_reads_as_the_predictor(pico):
    from tinysaver_det.operating_point import model_entry

    assert model_entry("demo:pico", pico[PREDICTOR].settings)["predict"]["nms"] == PREDICTOR


def test_a_table_of_runs_in_different_modes_is_refused(tmp_path):
    from tinysaver_det.detection.run_inputs import run_nms_modes

    for name, mode in (("a", VALIDATOR), ("b", PREDICTOR)):
        (tmp_path / name).mkdir()
        settings = {"quantize": 32, "nms": mode}
        (tmp_path / name / "run.json").write_text(json.dumps({"saver": settings, "base": settings}))
    modes = {**run_nms_modes(tmp_path / "a"), **run_nms_modes(tmp_path / "b")}
    with pytest.raises(TinySaverInputError, match="their numbers do not compare"):
        check_same_nms_mode(modes)


@pytest.mark.slow
def test_deployment_returns_yolo_predict_boxes_routed_as_eval(four, tmp_path):
    """TinySaver.predict routes on the evaluated (validator) answer and returns YOLO.predict's boxes."""
    from ultralytics import YOLO

    from tinysaver_det.api import TinySaver

    images, _ = four
    cascade = TinySaver("demo:pico", "demo:s", 0.25)
    shown = cascade.predict(list(images), conf=0.0, batch=4)
    scored = cascade.predict(list(images), conf=0.0, batch=4, single_label=False)
    assert [(r.exited, r.confidence) for r in shown] == [(r.exited, r.confidence) for r in scored]
    assert {r.exited for r in shown} == {True, False}
    for image, a, b in zip(images, shown, scored):
        assert len(b.boxes) > len(a.boxes)
        weights = assets.asset_path(assets.DEMO_SAVER if a.exited else assets.DEMO_BASE)
        expected = YOLO(str(weights)).predict(image, imgsz=256, conf=0.001, iou=0.7, max_det=300, verbose=False)[0]
        assert len(a.boxes) == len(expected.boxes)
        np.testing.assert_allclose(a.boxes.conf.numpy(), expected.boxes.conf.numpy(), atol=1e-5)


def test_predict_records_the_mode_it_routed_in(tmp_path):
    import shutil

    from tinysaver_det.cli import main

    source = tmp_path / "one"
    source.mkdir()
    shutil.copy(sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[0], source)
    assert main(["predict", "--source", str(source), "--nms", PREDICTOR, "--quiet", "--out", str(tmp_path / "p")]) == 0
    recorded = json.loads((tmp_path / "p" / "predict.json").read_text())
    assert recorded["saver"]["nms"] == recorded["base"]["nms"] == PREDICTOR
