"""tinysaver_det.detection.coco against pycocotools, the reference it must equal.

The main data is the real COCO val2017 subset, with two detectors simulated from its ground truth
(tinysaver_det.detection.synthetic: jittered, missed, duplicated and mislabelled boxes, false
positives also on images without gt, crowd hits, >100 boxes in one image-category, a category
the gt lacks, one it lists without any gt, score ties). Small hand-made datasets pin the edge
cases one by one. Every comparison covers all 12 stats, to 1e-9.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinysaver_det.assets import COCO_ANNOTATIONS, asset_path
from tinysaver_det.core.policy import ExitPolicy
from tinysaver_det.detection.coco.accumulate import STAT_KEYS, accumulate, summarize, summarize_selections
from tinysaver_det.detection.coco.ground_truth import load_ground_truth
from tinysaver_det.detection.coco.match import evaluate_images
from tinysaver_det.detection.coco.metric import CocoCascadeMetric
from tinysaver_det.detection.coco.params import CocoParams
from tinysaver_det.detection.synthetic import BASE_PROFILE, SAVER_PROFILE, simulate_detections
from tinysaver_det.detection.types import Detections

TOLERANCE = 1e-9
# Random per-image confidences: 0 sends every image to the saver, 1.01 every image to the base.
THRESHOLDS = (0.0, 0.15, 0.35, 0.5, 0.65, 0.85, 1.01)


def pycocotools_eval(data: dict, results: list[dict], image_ids=None, max_dets=None) -> COCOeval:
    """COCOeval bbox evaluate/accumulate/summarize on copies of the inputs, without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(data)
        gt.createIndex()
        if results:
            dt = gt.loadRes(copy.deepcopy(results))
        else:  # loadRes([]) raises: build the empty result set directly
            dt = COCO()
            dt.dataset = {"images": data["images"], "categories": data["categories"], "annotations": []}
            dt.createIndex()
        evaluation = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            evaluation.params.imgIds = [int(i) for i in image_ids]
        if max_dets is not None:
            evaluation.params.maxDets = list(max_dets)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def results_list(detections) -> list[dict]:
    return [entry for d in detections for entry in d.to_coco()]


def assert_stats_equal(ours: dict, reference: COCOeval) -> None:
    assert list(ours) == list(STAT_KEYS)
    np.testing.assert_allclose(list(ours.values()), reference.stats, rtol=0, atol=TOLERANCE)


def assert_accumulation_equal(ours, reference: COCOeval) -> None:
    np.testing.assert_allclose(ours.precision, reference.eval["precision"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours.recall, reference.eval["recall"], rtol=0, atol=TOLERANCE)


# ---- the real COCO subset -------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_data() -> dict:
    with open(asset_path(COCO_ANNOTATIONS), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def ground_truth():
    return load_ground_truth(asset_path(COCO_ANNOTATIONS))


@pytest.fixture(scope="module")
def detectors(coco_data) -> dict:
    return {
        "saver": simulate_detections(coco_data, SAVER_PROFILE, seed=1),
        "base": simulate_detections(coco_data, BASE_PROFILE, seed=2),
    }


@pytest.fixture(scope="module")
def evaluations(ground_truth, detectors) -> dict:
    return {name: evaluate_images(ground_truth, dets) for name, dets in detectors.items()}


@pytest.fixture(scope="module")
def exit_masks(ground_truth) -> np.ndarray:
    confidence = np.random.default_rng(7).uniform(size=len(ground_truth.image_ids))
    return np.stack([ExitPolicy(t).exits(confidence) for t in THRESHOLDS])


@pytest.fixture(scope="module")
def routed_reference(coco_data, ground_truth, detectors, exit_masks):
    """pycocotools on the merged results of each threshold, computed once and shared."""
    cache = {}

    def reference(index: int) -> COCOeval:
        if index not in cache:
            # In the detectors' own image order, so that t=0 gives the saver's results list (same dt ids).
            exits = dict(zip(ground_truth.image_ids.tolist(), exit_masks[index]))
            merged = [(detectors["saver"] if exits[i] else detectors["base"])[i] for i in detectors["saver"]]
            cache[index] = pycocotools_eval(coco_data, results_list(merged))
        return cache[index]

    return reference


def test_simulated_detectors_cover_the_pitfalls(coco_data, detectors):
    with_gt = {ann["image_id"] for ann in coco_data["annotations"]}
    listed = {category["id"] for category in coco_data["categories"]}
    crowds = [ann for ann in coco_data["annotations"] if ann["iscrowd"]]
    for dets in detectors.values():
        groups = Counter((d.image_id, int(c)) for d in dets.values() for c in d.category_ids)
        categories = set(c for image_id, c in groups)
        assert max(groups.values()) > 100  # maxDets truncation per (image, category)
        assert 12 in categories and 12 not in listed  # dropped: category unknown to the gt
        assert 89 in categories and 89 in listed and not any(a["category_id"] == 89 for a in coco_data["annotations"])
        assert any(len(d) for image_id, d in dets.items() if image_id not in with_gt)
        assert any(len(np.unique(d.scores)) < len(d) for d in dets.values())  # ties inside an image
        assert any(len(np.unique(d.boxes, axis=0)) < len(d) for d in dets.values())  # duplicate boxes
        crowd = crowds[0]
        x, y, w, h = crowd["bbox"]
        inside = dets[crowd["image_id"]].boxes
        assert ((inside[:, 0] >= x) & (inside[:, 2] <= x + w) & (inside[:, 1] >= y) & (inside[:, 3] <= y + h)).any()


@pytest.mark.slow
def test_per_image_matches_equal_evalImgs(coco_data, ground_truth, detectors, evaluations, routed_reference):
    """The cache holds exactly evaluateImg's dtIds, dtScores, dtMatches, dtIgnore and gtIgnore."""
    reference = routed_reference(THRESHOLDS.index(0.0))  # every image answered by the saver
    ours = evaluations["saver"]
    gt = ground_truth
    entries = [e for e in reference.evalImgs if e is not None]
    assert len(entries) > 1000
    area_index = {tuple(r): a for a, r in enumerate(reference.params.areaRng)}
    for entry in entries:
        k = int(np.searchsorted(gt.category_ids, entry["category_id"]))
        i = int(np.searchsorted(gt.image_ids, entry["image_id"]))
        a = area_index[tuple(entry["aRng"])]
        dts = np.flatnonzero((ours.dt_category == k) & (ours.dt_image == i))
        dts = dts[np.argsort(ours.dt_rank[dts])]
        assert ours.dt_id[dts].tolist() == entry["dtIds"]
        assert ours.dt_score[dts].tolist() == entry["dtScores"]
        np.testing.assert_array_equal(ours.dt_matches[a][:, dts], entry["dtMatches"])
        np.testing.assert_array_equal(ours.dt_ignore[a][:, dts], entry["dtIgnore"])
        gts = np.flatnonzero((gt.category_index == k) & (gt.image_index == i))
        ignore_by_id = dict(zip(gt.ids[gts].tolist(), ours.gt_ignore[a, gts].tolist()))
        assert [ignore_by_id[g] for g in entry["gtIds"]] == entry["gtIgnore"].astype(bool).tolist()


@pytest.mark.parametrize("index", range(len(THRESHOLDS)), ids=[f"t={t}" for t in THRESHOLDS])
def test_routed_equals_pycocotools_on_merged_results(evaluations, exit_masks, routed_reference, index):
    metric = CocoCascadeMetric(evaluations["saver"], evaluations["base"])
    reference = routed_reference(index)
    stats = metric.routed_many(exit_masks)[index]
    assert_stats_equal(stats, reference)
    # Stronger than the tolerance: the same float operations in the same order give the same bits.
    assert list(stats.values()) == reference.stats.tolist()
    assert_stats_equal(metric.routed(exit_masks[index]), reference)
    selection = np.stack([exit_masks[index], ~exit_masks[index]])
    assert_accumulation_equal(accumulate([evaluations["saver"], evaluations["base"]], selection), reference)


def test_sweep_routes_both_ways(exit_masks):
    assert exit_masks[0].all() and not exit_masks[-1].any()
    assert sum(0 < mask.mean() < 1 for mask in exit_masks) >= 5


@pytest.mark.parametrize("model, index", [("saver", THRESHOLDS.index(0.0)), ("base", THRESHOLDS.index(1.01))])
def test_single_model_equals_pycocotools(evaluations, routed_reference, model, index):
    reference = routed_reference(index)  # the threshold that routes every image to this model
    assert_accumulation_equal(accumulate(evaluations[model]), reference)
    assert_stats_equal(summarize(accumulate(evaluations[model])), reference)


@pytest.mark.parametrize("model, seed", [("saver", 3), ("base", 4)])
def test_subset_equals_pycocotools_with_imgIds(coco_data, ground_truth, detectors, evaluations, model, seed):
    mask = np.random.default_rng(seed).uniform(size=len(ground_truth.image_ids)) < 0.3
    reference = pycocotools_eval(
        coco_data, results_list(detectors[model].values()), image_ids=ground_truth.image_ids[mask]
    )
    metric = CocoCascadeMetric(evaluations["saver"], evaluations["base"])
    assert metric.subset(model, mask) == pytest.approx(reference.stats[0], abs=TOLERANCE)
    assert_stats_equal(summarize_selections(evaluations[model], mask[None])[0], reference)
    assert_accumulation_equal(accumulate(evaluations[model], mask), reference)


def test_metric_protocol_attributes(ground_truth, evaluations):
    metric = CocoCascadeMetric(evaluations["saver"], evaluations["base"])
    assert metric.primary == "AP" and metric.n_samples == len(ground_truth.image_ids) == 500
    no_image = np.zeros(metric.n_samples, dtype=bool)
    assert metric.subset("saver", no_image) == -1.0  # no gt to count, as COCO reports it


# ---- hand-made edge cases -------------------------------------------------------------------


def annotation(ann_id, image_id, category_id, bbox, area=None, iscrowd=0) -> dict:
    area = bbox[2] * bbox[3] if area is None else area
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": area,
            "iscrowd": iscrowd}


@pytest.fixture
def small_data() -> dict:
    """Images 1-4 (4 without gt); category 3 listed but without gt, category 4 with a crowd only."""
    return {
        "images": [{"id": i, "width": 200, "height": 200} for i in (4, 2, 1, 3)],
        "categories": [{"id": c} for c in (1, 2, 3, 4)],
        "annotations": [
            annotation(10, 1, 1, [10, 10, 40, 40]),
            annotation(11, 1, 1, [60, 60, 32, 32], area=1024.0),  # both small and medium
            annotation(12, 1, 2, [0, 0, 100, 100], iscrowd=1),
            annotation(13, 1, 2, [120, 120, 30, 30]),
            annotation(14, 2, 1, [5, 5, 20, 20], area=300.0),  # the area field, not w*h, decides
            annotation(15, 2, 1, [5, 5, 20, 20], area=2000.0),  # an identical box: an IoU tie
            annotation(16, 3, 2, [50, 50, 60, 60]),
            annotation(17, 3, 4, [0, 0, 150, 150], iscrowd=1),
            annotation(18, 3, 1, [100, 100, 10, 10], area=90000.0),  # large by its area field
            annotation(19, 2, 9, [0, 0, 10, 10]),  # category not listed: dropped
        ],
    }


def assert_matches_pycocotools(data: dict, detections: list[Detections], params: CocoParams | None = None):
    ground_truth = load_ground_truth(data)
    reference = pycocotools_eval(data, results_list(detections), max_dets=params and params.max_dets)
    ours = accumulate(evaluate_images(ground_truth, detections, params))
    assert_accumulation_equal(ours, reference)
    if params is None:
        assert_stats_equal(summarize(ours), reference)
    return ours, reference


def test_empty_results(small_data):
    ours, _ = assert_matches_pycocotools(small_data, [])
    assert summarize(ours)["AP"] == 0.0


def test_edge_cases_match(small_data):
    detections = [
        Detections(1, [[10, 10, 50, 50], [10, 10, 50, 50], [20, 20, 40, 40]], [0.9, 0.9, 0.9], [1, 1, 1]),
        Detections(1, [[60, 60, 92, 92], [5, 5, 30, 30], [30, 30, 60, 60]], [0.8, 0.7, 0.7], [1, 2, 2]),
        Detections(2, [[5, 5, 25, 25], [6, 6, 25, 25]], [0.9, 0.9], [1, 1]),
        Detections(3, [[10, 10, 40, 40], [0, 0, 0, 50], [50, 50, 110, 110]], [0.6, 0.9, 0.4], [4, 4, 2]),
        Detections(4, [[0, 0, 50, 50], [0, 0, 10, 10]], [0.95, 0.3], [1, 3]),  # no gt on image 4
        Detections(2, [[0, 0, 10, 10], [0, 0, 30, 30]], [0.99, 0.5], [9, 3]),  # unknown / gt-less categories
        Detections(3, [[100, 100, 110, 110]], [0.1], [1]),
    ]
    ours, _ = assert_matches_pycocotools(small_data, detections)
    stats = summarize(ours)
    assert stats["AP"] > 0 and -1.0 in ours.precision  # categories 3 and 4 stay -1
    evaluation = evaluate_images(load_ground_truth(small_data), detections)
    tie = np.flatnonzero((evaluation.dt_image == 1) & (evaluation.dt_category == 0))  # image 2, category 1, by rank
    assert evaluation.dt_matches[0, 0, tie].tolist() == [15, 14]  # IoU tie: the later gt first


def test_gt_with_id_zero_is_never_matched(small_data):
    data = copy.deepcopy(small_data)
    data["annotations"][0]["id"] = 0
    detections = [Detections(1, [[10, 10, 50, 50], [60, 60, 92, 92]], [0.9, 0.8], [1, 1])]
    ours, reference = assert_matches_pycocotools(data, detections)
    assert reference.stats[0] < 1.0


def test_a_dt_on_an_ignored_gt_with_id_zero_at_low_iou_thresholds_only(small_data):
    """pycocotools ignores such a dt where it matched (IoU 0.88: thresholds up to 0.85) and counts it as a
    false positive above; the matched-somewhere split of the accumulation must not read one threshold."""
    data = copy.deepcopy(small_data)
    data["annotations"][0].update(id=0, bbox=[10, 10, 20, 20], area=1500.0)  # small box, ignored in "small"
    data["annotations"][1].update(bbox=[100, 100, 20, 20], area=400.0)
    detections = [Detections(1, [[10, 10, 30, 27.6], [100, 100, 120, 120]], [0.9, 0.8], [1, 1])]
    ours, reference = assert_matches_pycocotools(data, detections)
    small = reference.eval["precision"][:, :, 0, 1, 2]  # [T×R] category 1, area small, maxDets 100
    np.testing.assert_allclose(small[:8, :51], 1.0)  # recall up to 0.5: ignored up to IoU 0.85,
    np.testing.assert_allclose(small[8:, :51], 0.5)  # a false positive before the true one above


def test_more_than_max_dets_per_image_category(small_data):
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 150, size=(30, 2))
    boxes = np.column_stack([corners, corners + rng.uniform(10, 50, size=(30, 2))])
    boxes[::7] = [10, 10, 50, 50]  # some true positives among them
    detections = [Detections(1, boxes, np.round(rng.uniform(size=30), 1), np.ones(30, dtype=np.int64))]
    assert_matches_pycocotools(small_data, detections, CocoParams(max_dets=(1, 3, 5)))
    assert_matches_pycocotools(small_data, detections)


def test_stats_read_max_dets_by_position_as_pycocotools(small_data):
    detections = [Detections(1, [[10, 10, 50, 50]], [0.9], [1])]
    ours, reference = assert_matches_pycocotools(small_data, detections, CocoParams(max_dets=(1, 10, 300)))
    stats = summarize(ours)
    assert stats["AP"] == reference.stats[0] == -1.0  # AP at the literal maxDets=100, absent here
    assert_stats_equal(stats, reference)  # AR100 is the recall at max_dets[2] = 300, as in pycocotools


def test_inputs_are_not_modified(small_data):
    before = copy.deepcopy(small_data)
    detections = {1: Detections(1, [[10, 10, 50, 50]], [0.9], [1])}
    boxes = detections[1].boxes.copy()
    evaluation = evaluate_images(load_ground_truth(small_data), detections)
    accumulate(evaluation)
    assert small_data == before
    np.testing.assert_array_equal(detections[1].boxes, boxes)


def test_invalid_inputs_are_named(small_data):
    gt = load_ground_truth(small_data)
    evaluation = evaluate_images(gt, [])
    metric = CocoCascadeMetric(evaluation, evaluation)
    with pytest.raises(TypeError, match="bool"):
        metric.routed(np.ones(4, dtype=int))
    with pytest.raises(ValueError, match="n_masks"):
        metric.routed_many(np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="saver"):
        metric.subset("teacher", np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="at most one model"):
        accumulate([evaluation, evaluation], np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="image_id"):
        evaluate_images(gt, {2: Detections(1, [[0, 0, 1, 1]], [0.5], [1])})
    duplicated = copy.deepcopy(small_data)
    duplicated["annotations"][1]["id"] = duplicated["annotations"][0]["id"]
    with pytest.raises(ValueError, match="unique"):
        load_ground_truth(duplicated)
    with pytest.raises(ValueError, match="same length"):
        CocoParams(area_labels=("all",))
