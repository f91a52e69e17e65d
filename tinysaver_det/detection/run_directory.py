"""A run directory's bookkeeping: what produced it (``run.json``) and how a killed run resumes.

Commit protocol: each batch appends its rows to ``saver_predictions.jsonl`` and
``base_predictions.jsonl`` first and to ``records.jsonl`` last, each write flushed and fsynced
(:class:`~tinysaver_det.io.JsonlWriter`). ``records.jsonl`` is the commit log: an image is done when
its record line is complete, and then its predictions are on disk already. A kill can leave a
half-written line, a batch with only part of its records, or prediction rows without a record
(killed between the two writes); :func:`open_run` repairs all three on resume, cutting the records
back to the last whole batch and the prediction files to the rows of those images. Whole batches
matter for identical outputs: Ultralytics letterboxes a batch to a shape that depends on all of its
images, and the base runs on a batch's deferred images together, so the remaining images must be
batched exactly as an uninterrupted run batches them.

``run.json`` records everything that determines the outputs (:func:`describe_run`), and a resume
with any of it changed is refused, naming each difference. :data:`NOT_COMPARED` lists what is
recorded for information only, with :data:`NOT_COMPARED_MODEL_KEYS` of every model: paths (a run
may be resumed after its files moved, the hashes still pin their content) and the device.

The same machinery resumes ``predict-coco``'s one predictions file (:func:`open_predictions_file`,
its description beside it in ``<name>.run.json``) and a ``multistage-run`` directory, and
:func:`existing_run` with :func:`check_same_run` (the refusals, the overwrite, :func:`differences`)
are also those of ``predict``'s output folder (:mod:`tinysaver_det.predict_run`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tinysaver_det.detection.cascade import Cascade, MultiStageCascade
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.shards import shard_dir, shard_run_files, world_size_mismatch
from tinysaver_det.detection.types import detector_settings
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_json, remove_stale_temporaries, sha256_file, truncate_jsonl
from tinysaver_det.lock import RunLock
from tinysaver_det.version import __version__

RUN_JSON = "run.json"
RECORDS = "records.jsonl"
SAVER_PREDICTIONS = "saver_predictions.jsonl"
BASE_PREDICTIONS = "base_predictions.jsonl"
#: A ``multistage-run`` directory's answers: the answering stage's detections of every image read.
DETECTIONS = "detections.jsonl"
ERRORS = "errors.json"
FINAL_OUTPUTS = ("results.json", "results_saver.json", "results_base.json", "summary.json", "summary.md", ERRORS)
RUN_FILES = (RUN_JSON, RECORDS, SAVER_PREDICTIONS, BASE_PREDICTIONS, DETECTIONS, *FINAL_OUTPUTS)
RUN_FORMAT = 1
#: Record statuses a resume retries when the image can be read now (a size mismatch is the file's own).
RETRIED_STATUSES = ("missing", "unreadable")
#: The one refusal of ``--resume`` with ``--overwrite``, whichever tool and library call gets both.
RESUME_AND_OVERWRITE = "resume and overwrite exclude each other: choose one"

NOT_COMPARED = frozenset({"annotation_file", "image_dir", "device"})
#: A model's settings recorded for information only (``saver.name``, ``model.weights``, ``stages.1.device``).
NOT_COMPARED_MODEL_KEYS = frozenset({"name", "weights", "device"})


def describe_run(cascade: Cascade, dataset: CocoDataset, batch_size: int) -> dict:
    """The content of ``run.json``: what produced a run directory.

    A detector describes itself through an optional ``settings`` dict (the Ultralytics adapter gives
    its weights' sha256 and predict settings); one without it is described by its ``name`` only.
    """
    return {
        "format": RUN_FORMAT,
        "package_version": __version__,
        "saver": detector_settings(cascade.saver),
        "base": detector_settings(cascade.base),
        "threshold": cascade.policy.threshold,
        "min_score": cascade.min_score,
        "confidence": cascade.confidence_name,
        "full": cascade.run_base_on_all,
        "batch_size": batch_size,
        **describe_dataset(dataset),
    }


def describe_multistage(cascade: MultiStageCascade, dataset: CocoDataset, batch_size: int) -> dict:
    """The content of a ``multistage-run`` directory's ``run.json``: every stage and exit rule."""
    return {
        "format": RUN_FORMAT,
        "package_version": __version__,
        "stages": [detector_settings(model) for model in cascade.stages],
        "thresholds": list(cascade.thresholds),
        "confidences": [router.name for router in cascade.routers],
        "min_scores": [policy.min_score for policy in cascade.policies],
        "run_all": cascade.run_all,
        "batch_size": batch_size,
        **describe_dataset(dataset),
    }


def multistage_streams(records: list[dict]) -> dict[str, list[int]]:
    """The image ids a ``multistage-run``'s committed ``records`` put in its detections file."""
    return {DETECTIONS: [r["image_id"] for r in records if r["status"] == "ok"]}


def describe_dataset(dataset: CocoDataset) -> dict:
    """The dataset part of every run description (``run.json``, a predictions file's ``.run.json``):
    its files (paths for information, the annotations' sha256 compared) and the ordered image ids."""
    return {
        "annotation_file": str(dataset.annotation_file.resolve()),
        "annotation_sha256": sha256_file(dataset.annotation_file),
        "image_dir": str(dataset.image_dir.resolve()),
        **_describe_images(dataset),
    }


def _describe_images(dataset: CocoDataset) -> dict:
    """The part of :func:`describe_dataset` that differs between a dataset and its subsets: its images."""
    return {
        "limit": dataset.limit,
        "n_images": len(dataset),
        "image_ids_sha256": hashlib.sha256(json.dumps(dataset.image_ids).encode()).hexdigest(),
    }


def describe_subset(description: dict, subset: CocoDataset) -> dict:
    """``description`` (of a run over a dataset) for ``subset`` of that dataset (:meth:`CocoDataset.subset`,
    which keeps its files and ``limit``), as :func:`describe_run` of ``subset`` would give it, keys in
    the same order: a sharded run's rank describes its shard without hashing the annotation file again.
    """
    return {**description, **_describe_images(subset)}


def describe_predictions(detector, dataset: CocoDataset, batch_size: int) -> dict:
    """The content of a predictions file's ``.run.json`` (:func:`predictions_run_json`): one model's run."""
    settings = detector_settings(detector)
    return {
        "format": RUN_FORMAT,
        "package_version": __version__,
        "model": settings,
        "features": bool(settings.get("features")),
        "batch_size": batch_size,
        **describe_dataset(dataset),
    }


def predictions_run_json(path: Path) -> Path:
    """Where a predictions file ``P`` (``pico_predictions.jsonl``) keeps its description: ``pico_predictions.run.json``."""
    return Path(path).with_suffix(".run.json")


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            flat.update(_flatten({str(i): item for i, item in enumerate(value)}, f"{prefix}{key}."))
        elif isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(recorded: dict, current: dict) -> list[str]:
    """``"key: <recorded> in the run, <current> now"`` for every compared setting that differs.

    >>> differences({"threshold": 0.25, "image_dir": "/a"}, {"threshold": 0.3, "image_dir": "/b"})
    ['threshold: 0.25 in the run, 0.3 now']
    """
    old, new = _flatten(recorded), _flatten(current)
    return [
        f"{key}: {old.get(key, '(absent)')} in the run, {new.get(key, '(absent)')} now"
        for key in sorted(old.keys() | new.keys())
        if _compared(key) and old.get(key) != new.get(key)
    ]


def _compared(key: str) -> bool:
    """Whether a flattened setting decides the outputs (see :data:`NOT_COMPARED`)."""
    return key not in NOT_COMPARED and not ("." in key and key.rsplit(".", 1)[1] in NOT_COMPARED_MODEL_KEYS)


def open_run(
    out_dir: Path,
    description: dict,
    dataset: CocoDataset,
    *,
    resume: bool = False,
    overwrite: bool = False,
    predicted: Callable[[list[dict]], dict[str, list[int]]] | None = None,
) -> int:
    """Make ``out_dir`` ready for a run and return how many images (a prefix of the dataset) are done.

    Args:
        out_dir: the run directory.
        description: from :func:`describe_run`.
        dataset: the images of the run, in order.
        resume: continue the run in ``out_dir`` (a fresh run when it holds none, so a job can always
            pass it); refused when its ``run.json`` differs from ``description``, or when it was made
            by several processes (:mod:`~tinysaver_det.detection.shards`).
        overwrite: delete the run files in ``out_dir`` (only those, see :data:`RUN_FILES`, also in
            its shard folders) first.
        predicted: the prediction files the committed records imply, ``{file name: image ids in
            order}`` (default: a cascade's saver and base files, see :func:`cascade_streams`).

    Everything here (the clean-up, the repair of a resumed run) runs under ``out_dir``'s
    :class:`~tinysaver_det.lock.RunLock`: never while another process writes there. The caller
    holds the lock for the whole run (:func:`~tinysaver_det.detection.runner.evaluate_cascade`).

    Raises:
        TinySaverInputError: ``out_dir`` holds a run and neither flag is given, the run has other
            settings, or it is not a folder.
        RunLockedError: another process is writing ``out_dir``.
    """
    with RunLock(out_dir):
        recorded = _existing_run_directory(out_dir, resume=resume, overwrite=overwrite)
        if recorded is None:
            atomic_write_json(out_dir / RUN_JSON, description, indent=2)
            return 0
        check_same_run(out_dir, recorded, description, world_size=1)
        if predicted is None:
            full = description["full"]
            predicted = lambda records: cascade_streams(records, full)  # noqa: E731
        return _repair(out_dir, dataset, description["batch_size"], predicted)


def cascade_streams(records: list[dict], full: bool) -> dict[str, list[int]]:
    """The image ids a cascade run's committed ``records`` put in its saver and base files."""
    ran = [r for r in records if r["status"] == "ok"]
    return {
        SAVER_PREDICTIONS: [r["image_id"] for r in ran],
        BASE_PREDICTIONS: [r["image_id"] for r in ran if full or not r["exited"]],
    }


def open_predictions_file(
    path: Path, description: dict, dataset: CocoDataset, *, resume: bool = False, overwrite: bool = False
) -> int:
    """:func:`open_run` for ``predict-coco``'s one predictions file ``path`` (one row per image, in
    dataset order, unreadable images included), described in :func:`predictions_run_json`.

    Returns how many images are done after the repair (whole batches, retrying images readable now).
    Refusals as :func:`open_run`'s; runs under :meth:`RunLock.for_file`, which the caller also holds.
    """
    path = Path(path)
    with RunLock.for_file(path):
        recorded = _existing_predictions(path, resume=resume, overwrite=overwrite)
        if recorded is None:
            atomic_write_json(predictions_run_json(path), description, indent=2)
            return 0
        check_same_run(path, recorded, description, world_size=1)
        return len(_committed(path, dataset, description["batch_size"]))


def predictions_shard(path: Path, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` of a sharded ``predict-coco`` writes its shard of the predictions file ``path``:
    ``<folder>/shards/rank-<r>-of-<N>/<name>`` (its ``.run.json`` beside it)."""
    path = Path(path)
    return shard_dir(path.parent, rank, world_size) / path.name


def open_sharded_run(
    out_dir: Path, description: dict, world_size: int, *, resume: bool = False, overwrite: bool = False
) -> None:
    """Rank 0's part of opening a run of ``world_size`` processes: the checks and refusals of
    :func:`open_run` on ``out_dir`` and all its shards, and ``run.json`` with the world size.

    Each rank then opens its own shard folder with :func:`open_run` (and resumes it there).

    Raises:
        TinySaverInputError: as :func:`open_run`, and a resume with another number of processes.
    """
    with RunLock(out_dir):
        recorded = _existing_run_directory(out_dir, resume=resume, overwrite=overwrite)
        _open_sharded(out_dir, out_dir / RUN_JSON, recorded, description, world_size)


def open_sharded_predictions(
    path: Path, description: dict, world_size: int, *, resume: bool = False, overwrite: bool = False
) -> None:
    """:func:`open_sharded_run` for ``predict-coco``'s predictions file ``path``; each rank then opens
    its shard (:func:`predictions_shard`) with :func:`open_predictions_file`."""
    path = Path(path)
    with RunLock.for_file(path):
        recorded = _existing_predictions(path, resume=resume, overwrite=overwrite)
        _open_sharded(path, predictions_run_json(path), recorded, description, world_size)


def _open_sharded(where: Path, run_json: Path, recorded: dict | None, description: dict, world_size: int) -> None:
    """Write the description of a run of ``world_size`` processes, or check it against the recorded one."""
    description = {**description, "world_size": world_size}
    if recorded is None:
        atomic_write_json(run_json, description, indent=2)
    else:
        check_same_run(where, recorded, description, world_size)


def _existing_predictions(path: Path, *, resume: bool, overwrite: bool) -> dict | None:
    """:func:`existing_run` for a predictions file: it and its ``.run.json``, here and in shard folders."""
    run_json = predictions_run_json(path)
    in_shards = shard_run_files(path.parent, (path.name, run_json.name))
    return existing_run(path, run_json, [run_json, path], in_shards, resume=resume, overwrite=overwrite)


def _existing_run_directory(out_dir: Path, *, resume: bool, overwrite: bool) -> dict | None:
    """The ``run.json`` of the run to resume in ``out_dir``, or None when a fresh run starts there
    (after deleting the old run's files with ``overwrite``); refuses to mix with a run otherwise.
    The caller holds ``out_dir``'s :class:`~tinysaver_det.lock.RunLock`."""
    files = [out_dir / name for name in RUN_FILES]
    return existing_run(out_dir, out_dir / RUN_JSON, files, shard_run_files(out_dir, RUN_FILES), resume=resume, overwrite=overwrite)


def existing_run(
    where: Path, run_json: Path, files: Sequence[Path], in_shards: Sequence[Path] = (), *, resume: bool, overwrite: bool
) -> dict | None:
    """The recorded description of the run to resume at ``where``, or None when a fresh run starts there:
    the one resume/overwrite protocol of every tool that writes a run (``eval``, ``multistage-run``,
    ``predict-coco``, ``predict``).

    Args:
        where: the run (a folder, or a file), as refusals name it.
        run_json: the file that describes the run (one of ``files``).
        files: the run's files; ``overwrite`` deletes them (and only them) first.
        in_shards: the run's files in shard folders of ``where`` (deleted alike).
        resume: continue the run (its description returned); without a run, a fresh run starts.
        overwrite: start over. Without either flag, a run present is refused.

    Raises:
        TinySaverInputError: both flags (:data:`RESUME_AND_OVERWRITE`), a run present without
            either, or a ``run_json`` missing or not json on resume.
    """
    if resume and overwrite:
        raise TinySaverInputError(RESUME_AND_OVERWRITE)
    in_shards = list(in_shards)
    for path in files:
        remove_stale_temporaries(path)
    present = [path for path in files if path.exists()]
    if (present or in_shards) and overwrite:
        for path in present + in_shards:
            path.unlink()
        return None
    if (present or in_shards) and not resume:
        names = [path.name for path in present]
        names += sorted({str(path.parent.relative_to(run_json.parent)) + "/" for path in in_shards})
        raise TinySaverInputError(
            f"{where} already holds a run ({', '.join(names)}): "
            "pass --resume to continue it, --overwrite to replace it, or choose another --out"
        )
    present += in_shards
    if not present:
        return None
    try:
        return json.loads(run_json.read_text())
    except FileNotFoundError:
        raise TinySaverInputError(
            f"cannot resume {where}: it has no {run_json.name} (made by an older version?); pass --overwrite to start over"
        ) from None
    except json.JSONDecodeError as error:
        raise TinySaverInputError(f"cannot resume {where}: {run_json.name} is not valid json ({error})") from None


def check_same_run(out_dir: Path, recorded: dict, description: dict, world_size: int) -> None:
    """Refuse to resume a run made by another number of processes or with other settings."""
    mismatch = world_size_mismatch(out_dir, recorded, world_size)
    if mismatch:
        raise TinySaverInputError(mismatch)
    changed = differences(recorded, description)
    if changed:
        raise TinySaverInputError(
            f"cannot resume {out_dir}: its run was made with other settings ({'; '.join(changed)}); "
            "pass --overwrite to start over, or choose another --out"
        )


def _first_readable_again(records: list[dict], dataset: CocoDataset) -> int | None:
    """Index of the first record of an image that was missing or unreadable and can be read now."""
    from tinysaver_det.detection.images import UnreadableImageError, load_image  # cv2: the run's, not the sweeps'

    infos = {info.image_id: info for info in dataset.images}
    for index, record in enumerate(records):
        if record.get("status") in RETRIED_STATUSES:
            info = infos[record["image_id"]]
            try:
                load_image(dataset.path(info), (info.width, info.height))
            except (FileNotFoundError, UnreadableImageError):
                continue
            return index
    return None


def _committed(path: Path, dataset: CocoDataset, batch_size: int) -> list[dict]:
    """Cut the commit log ``path`` (one row per image in dataset order) back to the last whole batch,
    or further back, to the batch of the first image recorded as missing or unreadable that can be
    read now: a resume retries it (with its whole batch, so that batches stay those of one run).
    Returns the rows kept."""
    ids = dataset.image_ids
    records = truncate_jsonl(path, lambda i, row: i < len(ids) and row.get("image_id") == ids[i])
    done = len(records)
    if done < len(ids) and done % batch_size:
        done -= done % batch_size
    retry = _first_readable_again(records[:done], dataset)
    if retry is not None:
        done = retry - retry % batch_size
    if done < len(records):
        records = truncate_jsonl(path, lambda i, row: i < done)
    return records


def _repair(
    out_dir: Path, dataset: CocoDataset, batch_size: int, predicted: Callable[[list[dict]], dict[str, list[int]]]
) -> int:
    """Cut the records back (:func:`_committed`) and the prediction files to the rows of the images
    the kept records commit (see the module doc)."""
    records = _committed(out_dir / RECORDS, dataset, batch_size)
    for name, wanted in predicted(records).items():
        rows = truncate_jsonl(out_dir / name, lambda i, row: i < len(wanted) and row.get("image_id") == wanted[i])
        if len(rows) < len(wanted):
            raise TinySaverInputError(
                f"cannot resume {out_dir}: {name} lacks image {wanted[len(rows)]}, which {RECORDS} marks done "
                "(the files were changed by something else than this tool); pass --overwrite to start over"
            )
    return len(records)
