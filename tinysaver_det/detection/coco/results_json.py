"""Read a COCO results json (detections) and check every entry against the ground truth it is scored on.

pycocotools' ``loadRes`` silently drops a detection whose category is unknown, and it turns a NaN
box or a score above 1 into a wrong AP without a word. Files written by another tool (or edited
by hand) are therefore checked here first, each problem named with the file, the entry's index
and the value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from tinysaver_det.detection.dataset import bbox_problem, is_finite_number, is_int
from tinysaver_det.detection.types import Detections
from tinysaver_det.errors import TinySaverInputError

_SHOWN_PROBLEMS = 5


def _entry_problem(entry, image_ids: set, category_ids: set) -> str | None:
    """What is wrong with one results entry, or None."""
    if not isinstance(entry, dict):
        return f"is not an object: {entry!r}"
    missing = [key for key in ("image_id", "category_id", "bbox", "score") if key not in entry]
    if missing:
        return f"lacks {missing}"
    if not is_int(entry["image_id"]) or entry["image_id"] not in image_ids:
        return f"unknown image_id {entry['image_id']!r}"
    if not is_int(entry["category_id"]) or entry["category_id"] not in category_ids:
        return f"unknown category_id {entry['category_id']!r}"
    problem = bbox_problem(entry["bbox"])
    if problem:
        return f"bbox {entry['bbox']!r} is {problem}"
    score = entry["score"]
    if not is_finite_number(score) or not 0 <= score <= 1:
        return f"score {score!r} is not a number in [0, 1]"
    return None


def load_results_json(path: str | Path, image_ids: Iterable[int], category_ids: Iterable[int]) -> list[dict]:
    """Read a COCO results json and check each entry against the ground truth's ids.

    Args:
        path: a json list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.
        image_ids, category_ids: the ground truth's ids (pycocotools: ``gt.getImgIds()``,
            ``gt.getCatIds()``).

    Returns:
        The entries, as read (an empty list is valid: no detections).

    Raises:
        FileNotFoundError: the file does not exist.
        TinySaverInputError: the file is not a json list, or entries have an unknown image or category
            id, a box that is not 4 finite numbers with ``w, h >= 0``, or a score outside [0, 1]; the
            message names the file and the first entries at fault (index and value) and counts them all.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> with open(path, "w") as f:
    ...     json.dump([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 1.5}], f)
    >>> load_results_json(path, [1], [3])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tinysaver_det.errors.TinySaverInputError: results file .../r.json: 1 invalid entry: [0] score 1.5 is not a number in [0, 1]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TinySaverInputError(f"results file {path} is not valid json: {error}") from None
    if not isinstance(entries, list):
        raise TinySaverInputError(f"results file {path} must hold a json list of detections, got {type(entries).__name__}")
    image_ids, category_ids = set(image_ids), set(category_ids)
    problems = [
        f"[{index}] {problem}"
        for index, entry in enumerate(entries)
        if (problem := _entry_problem(entry, image_ids, category_ids))
    ]
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = f"; and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        plural = "entry" if len(problems) == 1 else "entries"
        raise TinySaverInputError(f"results file {path}: {len(problems)} invalid {plural}: {shown}{more}")
    return entries


def detections_from_results(results: list[dict], image_ids: Sequence[int]) -> dict[int, Detections]:
    """COCO results entries (xywh boxes) grouped into one xyxy :class:`Detections` per image of ``image_ids``."""
    by_image: dict[int, list[dict]] = {i: [] for i in image_ids}
    for entry in results:
        by_image[entry["image_id"]].append(entry)
    return {
        image_id: Detections(
            image_id,
            [[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in entries)],
            [e["score"] for e in entries],
            [e["category_id"] for e in entries],
        )
        for image_id, entries in by_image.items()
    }
