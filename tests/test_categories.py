import json

import pytest
import yaml
from ultralytics.data.converter import coco80_to_coco91_class
from ultralytics.utils import ROOT

from tinysaver_det.adapters.ultralytics import UltralyticsDetector
from tinysaver_det.detection.categories import category_lookup


@pytest.fixture(scope="module")
def coco_categories(coco_annotations):
    with open(coco_annotations) as handle:
        return {c["name"]: c["id"] for c in json.load(handle)["categories"]}


@pytest.fixture(scope="module")
def ultralytics_coco_names():
    with open(ROOT / "cfg" / "datasets" / "coco.yaml") as handle:
        return yaml.safe_load(handle)["names"]


@pytest.mark.slow
def test_adapter_maps_all_80_coco_names_to_official_ids(coco_categories, ultralytics_coco_names):
    detector = UltralyticsDetector("yolov8n.yaml", coco_categories, class_names=ultralytics_coco_names)
    lookup = detector.category_ids.tolist()
    assert len(lookup) == 80
    assert lookup[0] == 1  # person
    assert ultralytics_coco_names[79] == "toothbrush" and lookup[79] == 90
    # Independent reference: Ultralytics' own 80 -> 91 table.
    assert lookup == coco80_to_coco91_class()
    assert sorted(lookup) == sorted(coco_categories.values())


def test_unmatched_names_are_listed(coco_categories):
    with pytest.raises(ValueError, match=r"2 class name\(s\) not among .*\['circle', 'star'\]"):
        category_lookup({0: "person", 1: "circle", 2: "star"}, coco_categories, model="shapes")


def test_names_match_ignoring_case_and_separators():
    assert category_lookup(["Dining_Table", "hair-drier"], {"dining table": 67, "hair drier": 89}).tolist() == [67, 89]
