"""Where the ranks of a sharded run write, which images each one runs, and how rank 0 merges them.

A run of N processes (``torchrun --nproc_per_node N``) cuts the dataset into N **contiguous**
shards made of **whole batches**: with B images per batch, batch k holds images ``k*B .. k*B+B-1``
exactly as in a one-process run, and rank r takes the batches ``r*K//N .. (r+1)*K//N - 1`` of the
K batches. Whole batches keep the outputs identical to one process: Ultralytics letterboxes a batch
to a shape that depends on all of its images, and the base runs on a batch's deferred images
together, so a different cut of the batches could change the boxes. Contiguous shards make the
merge a concatenation in rank order, which is dataset order.

Each rank writes its shard as a run directory of its own, ``RUN/shards/rank-<r>-of-<N>/``, with the
``run.json`` and json-lines files of a one-process run (and its resume: a killed rank continues where
its shard stopped). After a barrier, rank 0 concatenates the shards' json-lines files into ``RUN/``,
where the final outputs are built as in one process; ``RUN/run.json`` records the world size.

A sharded run resumes only with the same number of processes: another N cuts other shards, and
their files could not be reused as they are (refused, naming both numbers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_text, read_jsonl

SHARDS = "shards"
_SHARD_NAME = re.compile(r"rank-(\d+)-of-(\d+)")


def shard_bounds(n_images: int, batch_size: int, world_size: int) -> list[tuple[int, int]]:
    """``[first, stop)`` image indices of each rank's shard: contiguous, whole batches, balanced by batch.

    A rank gets an empty shard when there are fewer batches than ranks.

    >>> shard_bounds(20, 3, 2)  # 7 batches: 3 to rank 0, 4 (the last one short) to rank 1
    [(0, 9), (9, 20)]
    >>> shard_bounds(4, 4, 3)
    [(0, 0), (0, 0), (0, 4)]
    """
    if batch_size < 1 or world_size < 1 or n_images < 0:
        raise ValueError(f"need batch_size >= 1, world_size >= 1, n_images >= 0; got {batch_size}, {world_size}, {n_images}")
    n_batches = -(-n_images // batch_size)
    cuts = [min(rank * n_batches // world_size * batch_size, n_images) for rank in range(world_size + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def shard_dir(out_dir: str | Path, rank: int, world_size: int) -> Path:
    """``RUN/shards/rank-<r>-of-<N>``: the run directory of rank ``rank``'s shard."""
    return Path(out_dir) / SHARDS / f"rank-{rank}-of-{world_size}"


def shard_dirs(out_dir: str | Path) -> list[tuple[int, int, Path]]:
    """``(rank, world_size, path)`` of every shard folder under ``RUN/shards`` (any world size)."""
    root = Path(out_dir) / SHARDS
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        match = _SHARD_NAME.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match[1]), int(match[2]), path))
    return found


def shard_description(description: dict, rank: int, world_size: int, bounds: tuple[int, int]) -> dict:
    """A shard's ``run.json``: its images' description plus which shard of which run it is."""
    return {**description, "shard": {"rank": rank, "world_size": world_size, "first": bounds[0], "stop": bounds[1]}}


def recorded_world_size(recorded: dict) -> int:
    """The number of processes that made a run, from its ``run.json`` (runs of one process do not say)."""
    return int(recorded.get("world_size", 1))


def world_size_mismatch(out_dir: Path, recorded: dict, world_size: int) -> str | None:
    """The refusal to resume a run made by another number of processes, or None when they agree."""
    was = recorded_world_size(recorded)
    if was == world_size:
        return None
    how = f"torchrun --nproc_per_node {was} ..." if was > 1 else "one process (without torchrun)"
    return (
        f"cannot resume {out_dir}: it was run by {was} process(es) and this job has {world_size}; its shards cut "
        f"the images for {was}, so resume it with {how}, or pass --overwrite to start over"
    )


def merge_jsonl(sources: Sequence[Path], target: Path, expected_ids: Sequence[int] | None = None) -> list[dict]:
    """Concatenate json-lines files into ``target`` (atomically) and return the rows.

    Args:
        expected_ids: when given, the ``image_id`` of the rows must be these, in this order (a
            shard that is not complete, or was changed, is refused rather than merged).
    """
    rows = [row for source in sources if source.is_file() for row in read_jsonl(source)]
    if expected_ids is not None and [row.get("image_id") for row in rows] != list(expected_ids):
        raise TinySaverInputError(
            f"cannot merge {target.name}: the shards under {target.parent / SHARDS} do not hold one row per "
            "image in dataset order (a shard is incomplete or was changed); run again with --resume"
        )
    atomic_write_text(target, "".join(json.dumps(row) + "\n" for row in rows))
    return rows


def shard_run_files(out_dir: Path, names: Iterable[str]) -> list[Path]:
    """The run files (``names``) present in any shard folder of ``out_dir``."""
    return [path / name for _, _, path in shard_dirs(out_dir) for name in names if (path / name).exists()]
