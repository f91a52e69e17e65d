"""Annotation-file checks that keep numbers from going silently wrong: repeated category names or ids,
and file names that name their file in another spelling (``./sub/x.jpg``, ``sub//x.jpg``)."""

import json

import cv2
import numpy as np
import pytest

from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.errors import TinySaverInputError


def write_dataset(tmp_path, file_names, categories=None, files=None):
    images = tmp_path / "images"
    for name in files if files is not None else ["sub/x.jpg", "y.jpg"]:
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / name), np.zeros((8, 8, 3), np.uint8))
    data = {
        "images": [{"id": i + 1, "file_name": name, "width": 8, "height": 8} for i, name in enumerate(file_names)],
        "categories": categories or [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}],
    }
    annotation_file = tmp_path / "instances.json"
    annotation_file.write_text(json.dumps(data))
    return annotation_file, images


@pytest.mark.parametrize("spelling", ["./sub/x.jpg", "sub//x.jpg", "sub/./x.jpg", "./sub//./x.jpg"])
def test_other_spellings_of_a_file_name_match_their_file(tmp_path, spelling):
    dataset = CocoDataset(*write_dataset(tmp_path, [spelling, "./y.jpg"]))
    assert all(dataset.path(info).is_file() for info in dataset.images)
    assert dataset.unannotated_files() == []


def test_a_file_the_annotation_file_does_not_list_is_still_reported(tmp_path):
    dataset = CocoDataset(*write_dataset(tmp_path, ["./sub/x.jpg"], files=["sub/x.jpg", "y.jpg", "sub/z.png"]))
    assert dataset.unannotated_files() == ["sub/z.png", "y.jpg"]


def test_a_repeated_category_name_is_an_error_naming_both_ids(tmp_path):
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}, {"id": 7, "name": "person"}]
    with pytest.raises(TinySaverInputError, match=r"categories\[2\] \(id 7\): name 'person' is also the name of category id 1"):
        CocoDataset(*write_dataset(tmp_path, ["sub/x.jpg"], categories))


def test_a_repeated_category_id_is_an_error(tmp_path):
    categories = [{"id": 1, "name": "person"}, {"id": 1, "name": "car"}]
    with pytest.raises(TinySaverInputError, match=r"categories\[1\]: id 1 appears twice"):
        CocoDataset(*write_dataset(tmp_path, ["sub/x.jpg"], categories))
