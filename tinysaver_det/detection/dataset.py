"""A COCO-format detection dataset: the image list and the category names, read from the annotation json."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path


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
        FileNotFoundError / ValueError: naming the file when it is missing or not a COCO file.
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
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            images = images[:limit]
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


def load_annotation_json(path: str | Path) -> dict:
    """Read a COCO annotation json, with errors that name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open() as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"annotation file {path} is not valid json: {error}") from None
    missing = [key for key in ("images", "categories") if not isinstance(data, dict) or key not in data]
    if missing:
        raise ValueError(f"annotation file {path} is not a COCO instances file: missing {missing}")
    return data
