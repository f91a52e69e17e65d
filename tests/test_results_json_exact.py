"""Results jsons are scored exactly as pycocotools' loadRes + COCOeval score them.

A results json's ``[x, y, w, h]`` must reach the evaluation as written: pycocotools takes the area
as ``w * h`` and the IoU from those numbers. Boxes at the 32² / 96² area limits with fractional
offsets are where a corner round trip (``(x + w) - x``) moves a box from one area range to another.
Custom ``maxDets`` follow pycocotools' summarize: AP at the literal 100, the rest by position.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinysaver_det.assets import COCO_ANNOTATIONS, asset_path
from tinysaver_det.detection.coco import (
    STAT_KEYS,
    CocoParams,
    accumulate,
    evaluate_images,
    load_ground_truth,
    summarize,
)
from tinysaver_det.detection.coco.results_json import ResultColumns, load_results_columns
from tinysaver_det.detection.synthetic import BASE_PROFILE, simulate_detections
from tinysaver_det.detection.cache import cache_from_results, evaluate_results_json
from tinysaver_det.detection.studies.thresholds import sweep_cascade

TOLERANCE = 1e-9


def pycocotools(data: dict, results: list[dict], max_dets=None) -> COCOeval:
    """loadRes + COCOeval on copies of the inputs, quietly; ``max_dets`` replaces params.maxDets."""
    ground_truth = COCO()
    ground_truth.dataset = copy.deepcopy(data)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(copy.deepcopy(results)), "bbox")
        evaluation.params.maxDets = list(max_dets or evaluation.params.maxDets)
        for step in (evaluation.evaluate, evaluation.accumulate, evaluation.summarize):
            step()
    return evaluation


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


TWO_BOX_GT = {
    "images": [{"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"}],
    "categories": [{"id": 1, "name": "thing"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [200, 200, 50, 50], "area": 2500,
                     "iscrowd": 0}],
}
TWO_BOX_RESULTS = [
    {"image_id": 1, "category_id": 1, "bbox": [0.01, 0, 32, 32], "score": 0.9},  # (0.01 + 32) - 0.01 != 32
    {"image_id": 1, "category_id": 1, "bbox": [200, 200, 50, 50], "score": 0.8},
]


def test_two_boxes_from_a_results_json_equal_pycocotools(tmp_path):
    reference = pycocotools(TWO_BOX_GT, TWO_BOX_RESULTS)
    assert reference.stats[4] == 0.5  # APm: the 32x32 false positive is medium
    stats = evaluate_results_json(write(tmp_path, "gt.json", TWO_BOX_GT), write(tmp_path, "r.json", TWO_BOX_RESULTS))
    np.testing.assert_array_equal(list(stats.values()), reference.stats)


def test_two_boxes_through_the_sweep_tool(tmp_path, load_script):
    ann, results = write(tmp_path, "gt.json", TWO_BOX_GT), write(tmp_path, "r.json", TWO_BOX_RESULTS)
    out = tmp_path / "sweep"
    tool = load_script("tools/sweep.py")
    assert tool.main(["--ann", ann, "--saver-json", results, "--base-json", results, "--saver-gflops", "1",
                      "--base-gflops", "2", "--thresholds", "0", "1", "--out", str(out)]) == 0
    with open(out / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["APm"]) for row in rows] == [0.5, 0.5]


def random_case(seed: int) -> tuple[dict, list[dict]]:
    """Gts and dts with sides near 32 and 96 (area limits) at fractional offsets, several categories."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 640, "height": 640, "file_name": f"{i}.jpg"} for i in range(1, 9)]
    sides = np.array([31.99, 32.0, 32.01, 95.99, 96.0, 96.01, 20.0, 120.0])
    annotations, results = [], []
    for image in images:
        for _ in range(rng.integers(2, 7)):
            w, h = rng.choice(sides, 2)
            x, y = rng.uniform(0, 400, 2).round(2)
            category = int(rng.integers(1, 4))
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category,
                                "bbox": [x, y, w, h], "area": float(w * h), "iscrowd": 0})
            for _ in range(rng.integers(0, 3)):  # shifted copies at the area limits, fractional offsets
                dx, dy = rng.uniform(-8, 8, 2).round(3)
                dw, dh = rng.choice(sides, 2)
                results.append({"image_id": image["id"], "category_id": category, "bbox": [x + dx, y + dy, dw, dh],
                                "score": round(float(rng.uniform()), 3)})
        for _ in range(rng.integers(1, 5)):  # false positives exactly at the limits, fractional corners
            side = float(rng.choice([32.0, 96.0]))
            corner = (rng.uniform(0, 500, 2) + rng.choice([0.01, 0.1, 0.3, 0.7], 2)).tolist()
            results.append({"image_id": image["id"], "category_id": int(rng.integers(1, 4)),
                            "bbox": [*corner, side, side], "score": round(float(rng.uniform()), 3)})
    data = {"images": images, "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)],
            "annotations": annotations}
    return data, results


@pytest.mark.parametrize("seed", range(12))
def test_random_results_at_the_area_limits_equal_pycocotools(tmp_path, seed):
    data, results = random_case(seed)
    reference = pycocotools(data, results)
    columns = load_results_columns(write(tmp_path, "r.json", results), [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3])
    ours = accumulate(evaluate_images(load_ground_truth(data), columns))
    np.testing.assert_array_equal(ours.precision, reference.eval["precision"])
    np.testing.assert_array_equal(ours.recall, reference.eval["recall"])
    np.testing.assert_allclose(list(summarize(ours).values()), reference.stats, rtol=0, atol=TOLERANCE)


def test_random_results_through_the_sweep_equal_pycocotools(tmp_path):
    """Both models from results jsons; t = 0 gives the saver's json alone, t = 1.01 the base's."""
    data, saver = random_case(100)
    _, base = random_case(101)
    base = [entry for entry in base if entry["image_id"] in {i["id"] for i in data["images"]}]
    cache = cache_from_results(write(tmp_path, "gt.json", data), write(tmp_path, "s.json", saver),
                               write(tmp_path, "b.json", base), 1.0, 2.0)
    rows = sweep_cascade(cache, [0.0, 1.01]).rows
    for row, results in zip(rows, (saver, base)):
        reference = pycocotools(data, results)
        np.testing.assert_allclose([row.metrics[k] for k in STAT_KEYS], reference.stats, rtol=0, atol=TOLERANCE)


def test_columns_keep_the_written_box_and_match_the_detections_path(tmp_path):
    columns = load_results_columns(write(tmp_path, "r.json", TWO_BOX_RESULTS), [1], [1])
    assert columns.boxes_xywh.tolist() == [[0.01, 0, 32, 32], [200, 200, 50, 50]]
    detections = columns.by_image([1, 2])
    assert detections[1].boxes[0].tolist() == [0.01, 0.0, 32.01, 32.0] and len(detections[2]) == 0
    assert ResultColumns.from_detections(list(detections.values())).boxes_xywh[1].tolist() == [200, 200, 50, 50]


# ---- custom maxDets: pycocotools' positions ---------------------------------------------------


@pytest.fixture(scope="module")
def coco_case():
    with open(asset_path(COCO_ANNOTATIONS), encoding="utf-8") as handle:
        data = json.load(handle)
    known = {c["id"] for c in data["categories"]}
    detections = simulate_detections(data, BASE_PROFILE, seed=2)
    results = [e for d in detections.values() for e in d.to_coco() if e["category_id"] in known]
    return data, results


@pytest.mark.slow
@pytest.mark.parametrize("max_dets", [(1, 10, 300), (1, 3, 5), (1, 10, 100, 300)])
def test_custom_max_dets_equal_pycocotools_positions(coco_case, tmp_path, max_dets):
    data, results = coco_case
    reference = pycocotools(data, results, max_dets)
    columns = load_results_columns(write(tmp_path, "r.json", results), [i["id"] for i in data["images"]],
                                   [c["id"] for c in data["categories"]])
    params = CocoParams(max_dets=max_dets)
    stats = summarize(accumulate(evaluate_images(load_ground_truth(data), columns, params)))
    np.testing.assert_allclose(list(stats.values()), reference.stats, rtol=0, atol=TOLERANCE)
    if max_dets == (1, 10, 300):
        assert stats["AP"] == -1.0 and stats["AP50"] > 0  # pycocotools: AP at the literal 100, AP50 at 300
    stats_via_json = evaluate_results_json(write(tmp_path, "gt.json", data), write(tmp_path, "r.json", results), params)
    assert stats_via_json == stats


def test_fewer_than_three_max_dets_are_refused():
    with pytest.raises(ValueError, match="at least 3 values"):
        CocoParams(max_dets=(1, 100))


@pytest.mark.parametrize("bad", [
    {"image_id": True, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "0.5"},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, float("nan"), 1], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5},
    {"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
    [1, 1, [0, 0, 1, 1], 0.5],
])
def test_the_column_checks_refuse_what_the_entry_checks_refuse_with_the_same_message(tmp_path, bad):
    from tinysaver_det.detection.coco.results_json import load_results_json
    from tinysaver_det.errors import TinySaverInputError

    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
    path = write(tmp_path, "r.json", [good, bad, good])
    messages = []
    for load in (load_results_json, load_results_columns):
        with pytest.raises(TinySaverInputError) as error:
            load(path, [1], [1])
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "[1]" in messages[0]
