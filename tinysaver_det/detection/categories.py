"""Map a model's class names to a dataset's category ids, by name.

Models number their classes 0..C-1 (Ultralytics) or by their own label order (mmdet); datasets
use their own ids (COCO: 80 names on ids 1..90 with gaps). Matching by name is the one mapping
that is right for every pair, so it is the only one offered. Names are compared after
:func:`normalize_name` (case, ``_``/``-`` and repeated spaces ignored).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det.errors import TinySaverInputError


def normalize_name(name: str) -> str:
    """Lower-case, ``_`` and ``-`` read as spaces, spaces collapsed.

    >>> normalize_name("Traffic_Light ")
    'traffic light'
    """
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def category_lookup(
    class_names: Mapping[int, str] | Sequence[str],
    category_ids_by_name: Mapping[str, int],
    model: str = "model",
    among: str = "the dataset's categories",
) -> np.ndarray:
    """Array ``lookup`` with ``lookup[class_index]`` = the dataset category id of that class.

    Args:
        class_names: the model's names, as ``{index: name}`` (Ultralytics ``model.names``) or a
            sequence (mmdet ``dataset_meta['classes']``).
        category_ids_by_name: the dataset's ``{name: category id}``.
        model: how to name the model in an error message.
        among: what ``category_ids_by_name`` is, in that message.

    Raises:
        TinySaverInputError: listing every model class name the dataset lacks.

    >>> category_lookup({0: "person", 1: "toothbrush"}, {"person": 1, "toothbrush": 90}).tolist()
    [1, 90]
    """
    if not isinstance(class_names, Mapping):
        class_names = dict(enumerate(class_names))
    dataset = {normalize_name(name): int(cid) for name, cid in category_ids_by_name.items()}
    lookup = np.full(max(class_names, default=-1) + 1, -1, dtype=np.int64)
    unmatched = []
    for index, name in sorted(class_names.items()):
        category_id = dataset.get(normalize_name(name))
        if category_id is None:
            unmatched.append(name)
        else:
            lookup[index] = category_id
    if unmatched:
        raise TinySaverInputError(
            f"{model}: {len(unmatched)} class name(s) not among {among}: {unmatched}; "
            f"{among}: {sorted(category_ids_by_name)}"
        )
    return lookup
