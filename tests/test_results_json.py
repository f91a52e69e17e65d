"""``load_results_json``: a results file is checked entry by entry against the ground truth's ids."""

import json

import pytest

from tinysaver_det.detection.coco.results_json import load_results_json
from tinysaver_det.errors import TinySaverInputError

IMAGES, CATEGORIES = [1, 2], [3, 5]
GOOD = {"image_id": 1, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.75}


def write(tmp_path, content) -> str:
    path = tmp_path / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_valid_entries_and_an_empty_list_load(tmp_path):
    entries = [GOOD, {**GOOD, "image_id": 2, "category_id": 5, "bbox": [0, 0, 0, 0], "score": 0}]
    assert load_results_json(write(tmp_path, entries), IMAGES, CATEGORIES) == entries
    assert load_results_json(write(tmp_path, []), IMAGES, CATEGORIES) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"image_id": 7}, "unknown image_id 7"),
        ({"category_id": 4}, "unknown category_id 4"),
        ({"bbox": [0, 0, float("nan"), 5]}, "bbox [0, 0, nan, 5] is not a list of 4 finite numbers"),
        ({"bbox": [0, float("inf"), 5, 5]}, "bbox [0, inf, 5, 5] is not a list of 4 finite numbers"),
        ({"bbox": [0, 0, -3, 5]}, "bbox [0, 0, -3, 5] is negative width or height"),
        ({"bbox": [0, 0, 5]}, "bbox [0, 0, 5] is not a list of 4 finite numbers"),
        ({"score": 1.2}, "score 1.2 is not a number in [0, 1]"),
        ({"score": -0.1}, "score -0.1 is not a number in [0, 1]"),
        ({"score": float("nan")}, "score nan is not a number in [0, 1]"),
        ({"score": "0.5"}, "score '0.5' is not a number in [0, 1]"),
    ],
)
def test_a_bad_entry_is_named_with_the_file_its_index_and_value(tmp_path, change, expected):
    path = write(tmp_path, [GOOD, GOOD, {**GOOD, **change}])  # json writes NaN/Infinity, json reads them back
    with pytest.raises(TinySaverInputError) as error:
        load_results_json(path, IMAGES, CATEGORIES)
    assert str(error.value) == f"results file {path}: 1 invalid entry: [2] {expected}"


def test_many_bad_entries_are_counted_and_the_first_ones_shown(tmp_path):
    path = write(tmp_path, [{**GOOD, "image_id": 100 + i} for i in range(8)] + [{"image_id": 1}])
    with pytest.raises(TinySaverInputError, match=r"9 invalid entries: \[0\] unknown image_id 100; .*\[4\] "
                                                  r"unknown image_id 104; and 4 more"):
        load_results_json(path, IMAGES, CATEGORIES)


@pytest.mark.parametrize(
    "content, expected",
    [("[{", "is not valid json"), ('{"image_id": 1}', "must hold a json list of detections, got dict")],
)
def test_a_file_that_is_not_a_results_list_is_named(tmp_path, content, expected):
    path = write(tmp_path, content)
    with pytest.raises(TinySaverInputError, match=expected) as error:
        load_results_json(path, IMAGES, CATEGORIES)
    assert path in str(error.value)


def test_a_missing_results_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="results file not found: .*nope.json"):
        load_results_json(tmp_path / "nope.json", IMAGES, CATEGORIES)
