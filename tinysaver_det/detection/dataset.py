"""A COCO-format detection dataset: the image list and the category names, read from the annotation json.

The annotation file is checked when it is read (every field the evaluation uses, with the entry's
index in the error), so that a malformed file fails at once, naming what is wrong, instead of deep
inside pycocotools after the models have run.
"""

from __future__ import annotations

import copy
import math
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_json

# File suffixes counted as images when the folder is compared with the annotation file.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageInfo:
    """One image of the annotation file."""

    image_id: int
    file_name: str
    width: int
    height: int


class CocoDataset:
    """Images and categories of a COCO annotation file, with image files under ``image_dir``.

    Args:
        annotation_file: COCO instances json (``images``, ``categories``, ``annotations``).
        image_dir: folder holding the images named by ``file_name``.
        limit: keep only the first ``limit`` images (by image id), for quick runs.

    Raises:
        FileNotFoundError: the annotation file or the image folder is missing.
        TinySaverInputError: the annotation file is not a valid COCO instances file (the message
            names the entry), or not one of its images is in ``image_dir`` (a wrong folder).
    """

    def __init__(self, annotation_file: str | Path, image_dir: str | Path, limit: int | None = None) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        data = load_annotation_json(self.annotation_file)
        self.category_ids_by_name = {c["name"]: int(c["id"]) for c in data["categories"]}
        images = sorted(
            (ImageInfo(int(i["id"]), i["file_name"], int(i["width"]), int(i["height"])) for i in data["images"]),
            key=lambda info: info.image_id,
        )
        self._annotated_files = {normalized_file_name(info.file_name) for info in images}
        if limit is not None:
            if limit < 1:
                raise TinySaverInputError(f"limit must be >= 1, got {limit}")
            images = images[:limit]
        if images and not any(self.path(info).is_file() for info in images):
            raise TinySaverInputError(
                f"none of the {len(images)} images of {self.annotation_file} is in {self.image_dir} "
                f"(looked for {self.path(images[0])}): is it the right image folder?"
            )
        self.limit = limit
        self.images: list[ImageInfo] = images

    def __len__(self) -> int:
        return len(self.images)

    def path(self, info: ImageInfo) -> Path:
        """Path of an image file."""
        return self.image_dir / info.file_name

    def subset(self, image_ids) -> "CocoDataset":
        """The same dataset restricted to ``image_ids`` (kept in image-id order); unknown ids are an error."""
        keep = {int(i) for i in image_ids}
        unknown = keep - set(self.image_ids)
        if unknown:
            raise ValueError(f"{len(unknown)} image ids are not in {self.annotation_file}, e.g. {sorted(unknown)[:5]}")
        subset = copy.copy(self)
        subset.images = [info for info in self.images if info.image_id in keep]
        return subset

    @property
    def image_ids(self) -> list[int]:
        return [info.image_id for info in self.images]

    def unannotated_files(self) -> list[str]:
        """Image files under ``image_dir`` (paths relative to it, sorted) that the annotation file
        does not list: they have no ground truth, so they cannot be evaluated."""
        found = (
            Path(folder, name).relative_to(self.image_dir).as_posix()
            for folder, _, names in os.walk(self.image_dir)
            for name in names
            if name.lower().endswith(IMAGE_SUFFIXES)
        )
        return sorted(name for name in found if name not in self._annotated_files)


def normalized_file_name(file_name: str) -> str:
    """A ``file_name`` as the path it names relative to the image folder, so that ``./sub/x.jpg`` and
    ``sub//x.jpg`` match the file ``sub/x.jpg`` found there.

    >>> normalized_file_name("./sub//x.jpg")
    'sub/x.jpg'
    """
    return posixpath.normpath(file_name)


def load_annotation_json(path: str | Path) -> dict:
    """Read a COCO annotation json and check the fields the evaluation uses.

    Raises:
        FileNotFoundError: the file does not exist.
        TinySaverInputError: naming the file and the first wrong entry (e.g. ``images[3]``).
    """
    path = Path(path)
    data = read_json(path, "annotation file")
    missing = [key for key in ("images", "categories", "annotations") if not isinstance(data, dict) or key not in data]
    if missing:
        raise TinySaverInputError(f"annotation file {path} is not a COCO instances file: missing {missing}")
    problem = _coco_problem(data)
    if problem:
        raise TinySaverInputError(f"annotation file {path}: {problem}")
    return data


def restrict_annotations(data: dict, image_ids) -> dict:
    """A COCO annotation dict holding only ``image_ids`` (their images and annotations; categories kept).

    Raises:
        ValueError: naming some of the ids the annotation file does not have.

    >>> data = {"images": [{"id": 1}, {"id": 2}], "categories": [], "annotations": [{"id": 5, "image_id": 2}]}
    >>> restrict_annotations(data, [2])["annotations"]
    [{'id': 5, 'image_id': 2}]
    """
    keep = {int(i) for i in image_ids}
    missing = keep - {int(image["id"]) for image in data["images"]}
    if missing:
        raise ValueError(f"{len(missing)} image ids are not in the annotation file, e.g. {sorted(missing)[:5]}")
    return {
        **data,
        "images": [image for image in data["images"] if int(image["id"]) in keep],
        "annotations": [ann for ann in data.get("annotations", []) if int(ann["image_id"]) in keep],
    }


def is_int(value) -> bool:
    """A json integer (``True`` is not one).

    >>> is_int(3), is_int(3.0), is_int(True)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """A json number that is neither NaN nor infinite.

    >>> is_finite_number(0.5), is_finite_number(float("nan")), is_finite_number("1")
    (True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def bbox_problem(box) -> str | None:
    """Why ``box`` is not a COCO ``[x, y, w, h]`` of finite numbers with ``w, h >= 0``; None when it is.

    >>> bbox_problem([0, 0, -1, 2])
    'negative width or height'
    """
    if not isinstance(box, list) or len(box) != 4 or not all(map(is_finite_number, box)):
        return "not a list of 4 finite numbers"
    if box[2] < 0 or box[3] < 0:
        return "negative width or height"
    return None


def _coco_problem(data: dict) -> str | None:
    """The first thing wrong in a COCO instances dict (as a message), or None.

    Ids must be unique within a section: pycocotools indexes by id, so a repeated annotation id would
    silently drop a box from the ground truth. Category names must be unique too: models' classes are
    mapped to category ids by name, and a repeated name would silently keep one of its ids.
    """
    ids = {}
    for section in ("images", "categories", "annotations"):
        if not isinstance(data[section], list):
            return f"'{section}' must be a list, got {type(data[section]).__name__}"
        ids[section] = set()
        for index, entry in enumerate(data[section]):
            if not isinstance(entry, dict) or not is_int(entry.get("id")):
                return f"{section}[{index}] is not an object with an integer 'id'"
            if entry["id"] in ids[section]:
                return f"{section}[{index}]: id {entry['id']} appears twice"
            ids[section].add(entry["id"])
    for index, image in enumerate(data["images"]):
        where = f"images[{index}] (id {image['id']})"
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            return f"{where} has no 'file_name'"
        for key in ("width", "height"):
            if not is_int(image.get(key)) or image[key] < 1:
                return f"{where}: '{key}' must be a positive integer, got {image.get(key)!r}"
    id_of_name = {}
    for index, category in enumerate(data["categories"]):
        if not isinstance(category.get("name"), str):
            return f"categories[{index}] (id {category['id']}) has no string 'name'"
        if category["name"] in id_of_name:  # models are mapped by name: one name, one id
            return (
                f"categories[{index}] (id {category['id']}): name {category['name']!r} is also the name of "
                f"category id {id_of_name[category['name']]}; category names must be unique"
            )
        id_of_name[category["name"]] = category["id"]
    for index, annotation in enumerate(data["annotations"]):
        where = f"annotations[{index}] (id {annotation['id']})"
        for key, section in (("image_id", "images"), ("category_id", "categories")):
            if not is_int(annotation.get(key)) or annotation[key] not in ids[section]:
                return f"{where}: {key} {annotation.get(key)!r} is not among the {section}"
        problem = bbox_problem(annotation.get("bbox"))
        if problem:
            return f"{where}: bbox {annotation.get('bbox')!r} is {problem}"
        if not is_finite_number(annotation.get("area")):
            return f"{where}: 'area' must be a finite number, got {annotation.get('area')!r}"
    return None
