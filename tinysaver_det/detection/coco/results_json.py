"""Read a COCO results json (detections) and check every entry against the ground truth it is scored on.

pycocotools' ``loadRes`` silently drops a detection whose category is unknown, and it turns a NaN
box or a score above 1 into a wrong AP without a word. Files written by another tool (or edited
by hand) are therefore checked here first, each problem named with the file, the entry's index
and the value.

A results json of a COCO-sized run holds about a million entries, so the checks run on columns
(numpy over all entries at once, :func:`load_results_columns`), read by the compiled reader of
:mod:`~tinysaver_det.detection.coco.results_scan` where it can; only a file that fails them is
read with ``json.loads`` and walked entry by entry, to name the entries at fault. The columns keep each ``bbox`` as the
``[x, y, w, h]`` it was written: pycocotools' ``loadRes`` computes IoUs and areas (``w * h``) from
exactly those numbers, and a round trip through corners (``x2 - x1``) can move ``w`` by one float
step, enough to move a box across the 32² or 96² area limit.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tinysaver_det.detection.coco.results_scan import scan_results_file
from tinysaver_det.detection.dataset import bbox_problem, is_finite_number, is_int
from tinysaver_det.detection.types import Detections
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_json

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


@dataclass(frozen=True, eq=False)
class ResultColumns:
    """A COCO results list as columns, in list order (the order ``loadRes`` numbers its dt ids by).

    Attributes:
        image_ids: [N] int64 ``image_id`` of each entry.
        category_ids: [N] int64 ``category_id``.
        boxes_xywh: [N×4] float64 ``bbox`` exactly as written, ``[x, y, w, h]``.
        scores: [N] float64 ``score``.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes_xywh: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        columns = {
            "image_ids": np.asarray(self.image_ids, dtype=np.int64).reshape(-1),
            "category_ids": np.asarray(self.category_ids, dtype=np.int64).reshape(-1),
            "boxes_xywh": np.asarray(self.boxes_xywh, dtype=np.float64).reshape(-1, 4),
            "scores": np.asarray(self.scores, dtype=np.float64).reshape(-1),
        }
        if len({len(column) for column in columns.values()}) != 1:
            raise ValueError(f"ResultColumns: columns of different lengths {[len(c) for c in columns.values()]}")
        for name, column in columns.items():
            object.__setattr__(self, name, column)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_detections(cls, detections: Sequence) -> "ResultColumns":
        """The results list ``Detections.to_coco`` writes for each item, concatenated: ``w = x2 - x1``.

        >>> ResultColumns.from_detections([Detections(7, [[1, 2, 4, 6]], [0.5], [3])]).boxes_xywh.tolist()
        [[1.0, 2.0, 3.0, 4.0]]
        """
        boxes = np.concatenate([np.zeros((0, 4)), *(d.boxes for d in detections)])
        x1, y1, x2, y2 = boxes.T
        return cls(
            image_ids=np.repeat(np.array([d.image_id for d in detections], dtype=np.int64), [len(d) for d in detections]),
            category_ids=np.concatenate([np.zeros(0, dtype=np.int64), *(d.category_ids for d in detections)]),
            boxes_xywh=np.column_stack([x1, y1, x2 - x1, y2 - y1]),
            scores=np.concatenate([np.zeros(0), *(d.scores for d in detections)]),
        )

    def by_image(self, image_ids: Sequence[int]) -> dict[int, Detections]:
        """One :class:`~tinysaver_det.detection.types.Detections` per image id (xyxy, list order kept);
        images without entries get an empty one. Every entry's image must be among ``image_ids``."""
        order = np.argsort(self.image_ids, kind="stable")
        ids = self.image_ids[order]
        boxes = self.boxes_xywh[order]
        corners = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
        starts = np.searchsorted(ids, np.asarray(image_ids, dtype=np.int64), side="left")
        stops = np.searchsorted(ids, np.asarray(image_ids, dtype=np.int64), side="right")
        return {
            int(image_id): Detections(image_id, corners[a:b], self.scores[order[a:b]], self.category_ids[order[a:b]])
            for image_id, a, b in zip(image_ids, starts, stops)
        }


def _fast_columns(entries: list) -> ResultColumns | None:
    """The columns of well-formed entries, or None when any entry needs a closer look.

    Well-formed: objects with the four keys, integer ids, numeric scores and 4-number boxes (json
    gives exact types, so ``type`` tells ``True`` from ``1``).
    """
    try:
        image_ids = [entry["image_id"] for entry in entries]
        category_ids = [entry["category_id"] for entry in entries]
        boxes = [entry["bbox"] for entry in entries]
        scores = [entry["score"] for entry in entries]
    except (TypeError, KeyError):
        return None
    numbers = {int, float}
    if not (set(map(type, image_ids)) <= {int} and set(map(type, category_ids)) <= {int}):
        return None
    if not (set(map(type, scores)) <= numbers and set(map(type, boxes)) <= {list} and set(map(len, boxes)) <= {4}):
        return None
    flat = list(itertools.chain.from_iterable(boxes))
    if not set(map(type, flat)) <= numbers:
        return None
    try:
        return ResultColumns(
            np.array(image_ids, dtype=np.int64),
            np.array(category_ids, dtype=np.int64),
            np.array(flat, dtype=np.float64).reshape(-1, 4),
            np.array(scores, dtype=np.float64),
        )
    except OverflowError:  # an integer beyond int64 or float range: named by the entry checks
        return None


def _columns_valid(columns: ResultColumns, image_ids: np.ndarray, category_ids: np.ndarray) -> bool:
    """The checks of :func:`_entry_problem`, on all entries at once."""
    boxes, scores = columns.boxes_xywh, columns.scores
    return bool(
        np.isin(columns.image_ids, image_ids).all()
        and np.isin(columns.category_ids, category_ids).all()
        and np.isfinite(boxes).all()
        and (boxes[:, 2:] >= 0).all()
        and np.isfinite(scores).all()
        and ((scores >= 0) & (scores <= 1)).all()
    )


def _read_list(path: str | Path) -> tuple[Path, list]:
    path = Path(path)
    entries = read_json(path, "results file")
    if not isinstance(entries, list):
        raise TinySaverInputError(f"results file {path} must hold a json list of detections, got {type(entries).__name__}")
    return path, entries


def _raise_problems(path: Path, entries: list, image_ids: set, category_ids: set) -> None:
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


def load_results_columns(path: str | Path, image_ids: Iterable[int], category_ids: Iterable[int]) -> ResultColumns:
    """:func:`load_results_json` as :class:`ResultColumns`: the same checks and errors, numpy over all entries.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> with open(path, "w") as f:
    ...     json.dump([{"image_id": 1, "category_id": 3, "bbox": [0.01, 0, 32, 32], "score": 0.9}], f)
    >>> load_results_columns(path, [1], [3]).boxes_xywh.tolist()
    [[0.01, 0.0, 32.0, 32.0]]
    """
    image_ids = np.unique(np.fromiter(image_ids, dtype=np.int64))
    category_ids = np.unique(np.fromiter(category_ids, dtype=np.int64))
    scanned = scan_results_file(path)
    if scanned is not None:
        columns = ResultColumns(*scanned)
        if _columns_valid(columns, image_ids, category_ids):
            return columns
    path, entries = _read_list(path)
    columns = _fast_columns(entries)
    if columns is not None and _columns_valid(columns, image_ids, category_ids):
        return columns
    _raise_problems(path, entries, set(image_ids.tolist()), set(category_ids.tolist()))
    # Only reachable if the column checks are stricter than the entry checks; keep them in step.
    raise AssertionError(f"results file {path}: the column checks refused entries the entry checks accept")


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
    path, entries = _read_list(path)
    _raise_problems(path, entries, set(image_ids), set(category_ids))
    return entries
