"""The evaluation path on the real COCO val2017 subset."""

import json

import numpy as np
import pytest

from tinysaver_det.detection.coco import STAT_KEYS
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.types import Detections


@pytest.fixture(scope="module")
def ground_truth(coco_annotations):
    return load_coco(coco_annotations)


def ground_truth_as_detections(ground_truth):
    detections = []
    for image_id in sorted(ground_truth.getImgIds()):
        anns = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=image_id))
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        detections.append(Detections(image_id, boxes, np.ones(len(anns)), [a["category_id"] for a in anns]))
    return detections


def test_ground_truth_as_detections_scores_ap_one(ground_truth):
    detections = ground_truth_as_detections(ground_truth)
    assert len(detections) == 500
    results = [entry for dets in detections for entry in dets.to_coco()]
    metrics = coco_bbox_metrics(ground_truth, results)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert metrics[key] == pytest.approx(1.0, abs=1e-12), key


def test_results_round_trip_through_json_keeps_ap(ground_truth, tmp_path):
    detections = ground_truth_as_detections(ground_truth)
    rng = np.random.default_rng(0)
    jittered = [Detections(d.image_id, d.boxes + rng.normal(0, 3, d.boxes.shape), rng.random(len(d)), d.category_ids)
                for d in detections]
    results = [entry for dets in jittered for entry in dets.to_coco()]
    (tmp_path / "r.json").write_text(json.dumps(results))
    reloaded = json.loads((tmp_path / "r.json").read_text())
    assert coco_bbox_metrics(ground_truth, reloaded) == coco_bbox_metrics(ground_truth, results)
    assert 0.1 < coco_bbox_metrics(ground_truth, results)["AP"] < 0.99


def test_no_detections_scores_zero_not_an_error(ground_truth):
    metrics = coco_bbox_metrics(ground_truth, [])
    assert set(metrics) == set(STAT_KEYS)
    assert metrics["AP"] == 0.0 and metrics["AR100"] == 0.0


def test_image_subset_restricts_evaluation(ground_truth):
    detections = ground_truth_as_detections(ground_truth)
    first = detections[:10]
    results = [entry for dets in first for entry in dets.to_coco()]
    assert coco_bbox_metrics(ground_truth, results, [d.image_id for d in first])["AP"] == pytest.approx(1.0)
    assert coco_bbox_metrics(ground_truth, results)["AP"] < 0.5
