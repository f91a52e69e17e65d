"""The one batched runner: a cascade (or one model, or K stages) over a COCO-format dataset.

Layout of a run directory (``--out``):

===========================  ===============================================================
``run.json``                 what produced the run: models and their sha256, every setting
``records.jsonl``            one row per image: ``file_name``, ``status``, ``error`` and the
                             :class:`ImageRecord` fields (null confidence/exited when unread)
``saver_predictions.jsonl``  the saver's detections per image (xyxy boxes) with gflops, seconds
``base_predictions.jsonl``   the base's detections for every image it ran on (all with --full)
``results.json``             the cascade's detections, standard COCO results format
``results_saver.json``       the saver's detections on every image, COCO results format
``results_base.json``        the base's, written when it ran on every image (--full)
``errors.json``              images that could not be read, and image files not annotated
``summary.json``             settings, metric rows, exit ratio, GFLOPs, FLOPs convention
``summary.md``               the same as a markdown table
===========================  ===============================================================

The json-lines files are appended and fsynced after each batch, records last, so a killed run can
be resumed (:mod:`tinysaver_det.detection.run_directory`). The final files are built from the files on
disk, in dataset order, and written atomically (:mod:`tinysaver_det.io`): a resumed run writes the
same ``records.jsonl`` and ``results*.json`` as an uninterrupted one. Timing fields (``seconds``,
img/s, wall-clock) differ between any two runs.

An image that cannot be read (missing, empty, truncated, not an image, or a size its annotation
does not give) is not fed to the models. It keeps a record with its ``status`` and ``error``, is
listed in ``errors.json``, and stays in the evaluation as an image with no detections
(:data:`~tinysaver_det.detection.summaries.UNREADABLE_POLICY`).

A :class:`~tinysaver_det.detection.cascade.MultiStageCascade` run (:func:`evaluate_multistage`) writes
``run.json``, ``records.jsonl`` (per image: the answering stage, the confidences, GFLOPs and seconds
spent), ``detections.jsonl`` (the answers), ``results.json`` and ``summary.json``, and resumes alike.

One model alone can also be cached in the same per-image format with :func:`predict_dataset`
(``predict-coco``): a ``<name>_predictions.jsonl`` file, read back by
:func:`~tinysaver_det.detection.cache.read_predictions` like the saver/base files of a cascade run,
described in ``<name>_predictions.run.json`` and resumed alike.

The summaries (what a run measured) are in :mod:`tinysaver_det.detection.summaries`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from time import perf_counter

import numpy as np
from tqdm import tqdm

from tinysaver_det.core.cost import FLOPS_CONVENTION
from tinysaver_det.detection.cache import prediction_row
from tinysaver_det.detection.cascade import Cascade, CascadeOutput, ModelOutput, MultiStageCascade, model_outputs
from tinysaver_det.detection.dataset import CocoDataset, ImageInfo
from tinysaver_det.detection.images import UnreadableImageError, load_image
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.run_directory import (
    BASE_PREDICTIONS,
    DETECTIONS,
    ERRORS,
    RECORDS,
    SAVER_PREDICTIONS,
    cascade_streams,
    describe_multistage,
    describe_predictions,
    describe_run,
    describe_subset,
    open_predictions_file,
    open_run,
    open_sharded_run,
    multistage_streams,
)
from tinysaver_det.detection.shards import merge_jsonl, shard_bounds, shard_description, shard_dir
from tinysaver_det.detection.summaries import UNREADABLE_POLICY, EvalRow, MultiStageSummary, RunSummary
from tinysaver_det.detection.types import Detections, Detector
from tinysaver_det.distributed import SINGLE_PROCESS, DistContext
from tinysaver_det.errors import INPUT_ERRORS, TinySaverInputError
from tinysaver_det.io import JsonlWriter, atomic_write_json, atomic_write_text, read_jsonl
from tinysaver_det.lock import RunLock


def _record(info: ImageInfo, output: CascadeOutput) -> dict:
    return {"file_name": info.file_name, "status": "ok", "error": None, **dataclasses.asdict(output.record)}


def _failed_record(info: ImageInfo, status: str, error: Exception) -> dict:
    """The record of an image no model ran on: it answers nothing and costs nothing."""
    return {
        "file_name": info.file_name,
        "status": status,
        "error": str(error),
        "image_id": info.image_id,
        "confidence": None,
        "exited": None,
        "n_boxes": 0,
        "saver_gflops": 0.0,
        "base_gflops": 0.0,
        "seconds": 0.0,
        "router_gflops": 0.0,
    }


def _decode(dataset: CocoDataset, info: ImageInfo) -> np.ndarray | dict:
    """The image's pixels, or, when it cannot be read, its failed record (never an exception:
    one bad file must not stop a run of hours)."""
    try:
        return load_image(dataset.path(info), (info.width, info.height))
    except FileNotFoundError as error:
        return _failed_record(info, "missing", error)
    except UnreadableImageError as error:
        return _failed_record(info, error.status, error)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise TinySaverInputError(f"batch size must be >= 1, got {batch_size}")


def _decoded_batches(dataset: CocoDataset, batch_size: int, desc: str, progress: bool, start: int = 0):
    """The one image loop of every driver: the dataset's images from ``start`` on, in batches, each
    decoded (:func:`_decode`: pixels, or the failed record of an image that cannot be read), with a
    progress bar advanced after each batch.

    Yields:
        ``(infos, decoded, readable)``: the batch's images, their pixels or failed records, and the
        positions of the readable ones.

    The batch size is checked by the public entry points (:func:`evaluate_cascade`,
    :func:`predict_dataset`, :func:`evaluate_multistage`) before anything is opened, not here: a check
    in this generator would only run at its first batch, after the run directory was written.
    """
    with tqdm(total=len(dataset), initial=start, desc=desc, unit="img", disable=not progress) as bar:
        for begin in range(start, len(dataset), batch_size):
            infos = dataset.images[begin : begin + batch_size]
            decoded = [_decode(dataset, info) for info in infos]
            yield infos, decoded, [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
            bar.update(len(infos))


def evaluate_cascade(
    cascade: Cascade,
    dataset: CocoDataset,
    out_dir: str | Path,
    batch_size: int = 32,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
    context: DistContext = SINGLE_PROCESS,
) -> RunSummary:
    """Run ``cascade`` on every image of ``dataset``, write the run directory, return the summary.

    With ``cascade.run_base_on_all`` the summary also has saver-alone and base-alone rows from
    the same run, and the run directory holds everything a threshold sweep needs.

    Args:
        resume: continue the run in ``out_dir`` where it stopped (or start one when there is none);
            refused, naming each difference, when that run was made with other settings.
        overwrite: replace the run in ``out_dir``. Without either flag, a ``out_dir`` that holds a
            run is refused rather than mixed with.
        context: this process's place in a ``torchrun`` job (:func:`tinysaver_det.distributed.process_group`);
            with several processes each rank runs its shard of the images and rank 0 merges them
            (:mod:`~tinysaver_det.detection.shards`). Every rank returns the same summary.

    Raises:
        TinySaverInputError: a wrong batch size or run directory, or no image could be read.
        RunLockedError: another process is writing ``out_dir`` (:class:`~tinysaver_det.lock.RunLock`,
            held from the repair of a resumed run to the last final file).
    """
    _check_batch_size(batch_size)
    out_dir = Path(out_dir)
    if context.sharded:  # each rank locks its shard folder, rank 0 also out_dir
        return _evaluate_sharded(cascade, dataset, out_dir, batch_size, progress, resume, overwrite, context)
    with RunLock(out_dir):  # one writer: a second run, or a --resume, on out_dir is refused while this one writes
        return _evaluate_cascade(cascade, dataset, out_dir, batch_size, progress, resume, overwrite)


def _evaluate_cascade(
    cascade: Cascade, dataset: CocoDataset, out_dir: Path, batch_size: int, progress: bool, resume: bool, overwrite: bool
) -> RunSummary:
    """:func:`evaluate_cascade` in one process."""
    start = perf_counter()
    done = open_run(out_dir, describe_run(cascade, dataset, batch_size), dataset, resume=resume, overwrite=overwrite)
    _run_images(cascade, dataset, out_dir, batch_size, progress, done)
    return _finish(cascade, dataset, batch_size, perf_counter() - start, out_dir)


def _run_images(
    cascade: Cascade, dataset: CocoDataset, out_dir: Path, batch_size: int, progress: bool, done: int, desc: str = "cascade"
) -> None:
    """Run the images of ``dataset`` from index ``done`` on, appending each batch to the json-lines files."""
    with JsonlWriter(out_dir / RECORDS) as records, JsonlWriter(out_dir / SAVER_PREDICTIONS) as saver_file, JsonlWriter(
        out_dir / BASE_PREDICTIONS
    ) as base_file:
        for infos, rows, readable in _decoded_batches(dataset, batch_size, desc, progress, start=done):
            ran = cascade([rows[i] for i in readable], [infos[i].image_id for i in readable]) if readable else []
            for i, out in zip(readable, ran):
                rows[i] = _record(infos[i], out)
            saver_file.write_many(prediction_row(out.saver) for out in ran)
            base_file.write_many(prediction_row(out.base) for out in ran if out.base is not None)
            records.write_many(rows)  # last: a record commits its image (see run_directory)


def _finish(cascade: Cascade, dataset: CocoDataset, batch_size: int, wall_seconds: float, out_dir: Path) -> RunSummary:
    """The final outputs and the summary files, from the json-lines files in ``out_dir``."""
    summary = _summarize(cascade, dataset, batch_size, wall_seconds, out_dir)
    atomic_write_json(out_dir / "summary.json", dataclasses.asdict(summary), indent=2)
    atomic_write_text(out_dir / "summary.md", summary.to_markdown())
    return summary


def _evaluate_sharded(
    cascade: Cascade,
    dataset: CocoDataset,
    out_dir: Path,
    batch_size: int,
    progress: bool,
    resume: bool,
    overwrite: bool,
    context: DistContext,
) -> RunSummary:
    """:func:`evaluate_cascade` as one rank of ``context.world_size``: run this rank's shard in its own
    run directory, then, after a barrier, rank 0 merges the shards in dataset order and builds the
    outputs as one process does. Input errors stop every rank together (:meth:`DistContext.raise_if_any`).

    Locks: each rank holds its shard folder, rank 0 also ``out_dir`` (for the whole run, the merge included).
    """
    start = perf_counter()
    description = describe_run(cascade, dataset, batch_size)  # rank 0's run.json; every rank's shard is derived from it
    bounds = shard_bounds(len(dataset), batch_size, context.world_size)
    first, stop = bounds[context.rank]
    shard = dataset.subset(dataset.image_ids[first:stop])
    shard_out = shard_dir(out_dir, context.rank, context.world_size)
    with ExitStack() as locks:
        error = None
        if context.is_main:
            try:
                locks.enter_context(RunLock(out_dir))
                open_sharded_run(out_dir, description, context.world_size, resume=resume, overwrite=overwrite)
            except INPUT_ERRORS as raised:
                error = raised
        context.raise_if_any(error)
        try:
            locks.enter_context(RunLock(shard_out))
            own = shard_description(describe_subset(description, shard), context.rank, context.world_size, (first, stop))
            done = open_run(shard_out, own, shard, resume=resume)
        except INPUT_ERRORS as raised:
            error = raised
        context.raise_if_any(error)
        desc = f"cascade rank {context.rank}/{context.world_size}"
        _run_images(cascade, shard, shard_out, batch_size, progress and context.is_main, done, desc=desc)
        context.barrier()
        summary = None
        if context.is_main:
            try:
                _merge_shards(out_dir, dataset, context.world_size, bounds, cascade.run_base_on_all)
                summary = _finish(cascade, dataset, batch_size, perf_counter() - start, out_dir)
            except INPUT_ERRORS as raised:
                error = raised
        context.raise_if_any(error)
    return context.broadcast(summary)


def _merge_shards(out_dir: Path, dataset: CocoDataset, world_size: int, bounds, full: bool) -> None:
    """Concatenate the shards' json-lines files into ``out_dir`` in rank order (dataset order), checking
    that the records are one per image in dataset order and the predictions those the records imply."""
    shards = [shard_dir(out_dir, rank, world_size) for rank in range(world_size)]
    records = merge_jsonl([path / RECORDS for path in shards], out_dir / RECORDS, dataset.image_ids)
    # the streams the records imply are the ones a resume repairs to (run_directory.cascade_streams): one rule
    for name, image_ids in cascade_streams(records, full).items():
        merge_jsonl([path / name for path in shards], out_dir / name, image_ids)


def _records_in_order(out_dir: Path, dataset: CocoDataset) -> list[dict]:
    """``records.jsonl`` of a finished run, refused unless it holds one record per image in dataset order."""
    records = read_jsonl(out_dir / RECORDS)
    if [r["image_id"] for r in records] != dataset.image_ids:
        raise TinySaverInputError(
            f"{out_dir / RECORDS} does not hold one record per image in dataset order: "
            "the run directory was changed while the run was going on"
        )
    return records


def _summarize(cascade: Cascade, dataset: CocoDataset, batch_size: int, wall_seconds: float, out_dir: Path) -> RunSummary:
    """Build the final outputs from the files on disk, in dataset order, and write them atomically."""
    records = _records_in_order(out_dir, dataset)
    ran = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] != "ok"]
    unannotated = dataset.unannotated_files()
    atomic_write_json(
        out_dir / ERRORS,
        {
            "policy": UNREADABLE_POLICY,
            "skipped": [{key: r[key] for key in ("image_id", "file_name", "status", "error")} for r in failed],
            "not_in_annotations": unannotated,
        },
        indent=2,
    )
    if not ran:
        raise TinySaverInputError(f"none of the {len(records)} images could be read: see {out_dir / ERRORS}")
    ground_truth = load_coco(dataset.annotation_file)
    saver, base = ({p["image_id"]: p for p in read_jsonl(out_dir / name)} for name in (SAVER_PREDICTIONS, BASE_PREDICTIONS))

    def row(name: str, answers: list[dict], gflops, seconds, exit_ratio=None) -> EvalRow:
        results = [entry for answer in answers for entry in Detections.from_dict(answer).to_coco()]
        atomic_write_json(out_dir / f"results{'' if name == 'cascade' else '_' + name}.json", results)
        metrics = coco_bbox_metrics(ground_truth, results, dataset.image_ids)
        return EvalRow(name, metrics, float(np.mean(gflops)), exit_ratio, len(ran) / max(float(np.sum(seconds)), 1e-12))

    def model_row(name: str, predictions: dict) -> EvalRow:
        answers = [predictions[r["image_id"]] for r in ran]
        return row(name, answers, [a["gflops"] for a in answers], [a["seconds"] for a in answers])

    rows = [
        row(
            "cascade",
            [saver[r["image_id"]] if r["exited"] else base[r["image_id"]] for r in ran],
            [r["saver_gflops"] + r["base_gflops"] + r.get("router_gflops", 0.0) for r in ran],
            [r["seconds"] for r in ran],
            exit_ratio=float(np.mean([r["exited"] for r in ran])),
        ),
        model_row("saver", saver),
    ]
    if cascade.run_base_on_all:
        rows.append(model_row("base", base))
    return RunSummary(
        saver=cascade.saver.name,
        base=cascade.base.name,
        threshold=cascade.policy.threshold,
        min_score=cascade.min_score,
        confidence=cascade.confidence_name,
        n_images=len(records),
        batch_size=batch_size,
        rows=rows,
        wall_seconds=wall_seconds,
        flops_convention=FLOPS_CONVENTION,
        uncounted_ops={
            "saver": list(getattr(cascade.saver, "uncounted_ops", ())),
            "base": list(getattr(cascade.base, "uncounted_ops", ())),
        },
        skipped_images=dict(sorted(Counter(r["status"] for r in failed).items())),
        unannotated_files=len(unannotated),
    )


def predict_dataset(
    detector: Detector,
    dataset: CocoDataset,
    path: str | Path,
    batch_size: int = 32,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Run one model on every image of ``dataset`` and cache its per-image predictions at ``path``.

    The rows are those of a cascade run's ``saver_predictions.jsonl`` (detections, per-image GFLOPs
    and seconds, the seconds being the batch's model time divided by its size), so
    :func:`~tinysaver_det.detection.cache.read_predictions` reads either. An image that cannot be
    read gets a row with no detection, no cost, and its ``status`` and ``error`` (the run's
    :data:`~tinysaver_det.detection.summaries.UNREADABLE_POLICY`), so the cache still covers every
    image. Rows are appended and fsynced per batch; what produced them is written first, beside
    ``path`` (:func:`~tinysaver_det.detection.run_directory.predictions_run_json`), so that a killed
    run resumes as an ``eval`` run does (:func:`~tinysaver_det.detection.run_directory.open_predictions_file`).

    Args:
        resume: continue the run at ``path`` (whole batches; images recorded unreadable that can be
            read now are retried); refused, naming each difference, when made with other settings.
        overwrite: replace the file. Without either flag, an existing ``path`` is refused.

    Raises:
        TinySaverInputError: a wrong batch size, or ``path`` holding a run that may not be mixed with.
        RunLockedError: another process is writing ``path``.
    """
    _check_batch_size(batch_size)
    path = Path(path)
    with RunLock.for_file(path):  # first: a second writer is refused before anything is read
        description = describe_predictions(detector, dataset, batch_size)
        done = open_predictions_file(path, description, dataset, resume=resume, overwrite=overwrite)
        with JsonlWriter(path) as writer:
            for infos, decoded, readable in _decoded_batches(dataset, batch_size, detector.name, progress, start=done):
                rows: list[dict] = [
                    {**prediction_row(ModelOutput(Detections.empty(info.image_id), 0.0, 0.0)),
                     "status": failed["status"], "error": failed["error"]}
                    if isinstance(failed := decoded[i], dict) else {}
                    for i, info in enumerate(infos)
                ]
                if readable:
                    prediction = detector.predict([decoded[i] for i in readable], [infos[i].image_id for i in readable])
                    for i, output in zip(readable, model_outputs(prediction)):
                        rows[i] = prediction_row(output)
                writer.write_many(rows)
    return path


def evaluate_multistage(
    cascade: MultiStageCascade,
    dataset: CocoDataset,
    out_dir: str | Path,
    batch_size: int = 32,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> MultiStageSummary:
    """Run a K-stage cascade on every image of ``dataset``; write run.json, records.jsonl,
    detections.jsonl (the answering stage's detections), results.json and summary.json.

    An image that cannot be read keeps a record with its ``status`` and ``error`` and no stage, and
    stays in the evaluation as an image with no detections (as in :func:`evaluate_cascade`); the
    stage ratios, GFLOPs and ms per image count the images the models ran on. The run directory
    resumes as :func:`evaluate_cascade`'s does (detections first, records last, per batch; see
    :mod:`~tinysaver_det.detection.run_directory`), with the same ``resume`` and ``overwrite``.

    Raises:
        TinySaverInputError: a wrong batch size or run directory, or no image could be read.
        RunLockedError: another process is writing ``out_dir``.
    """
    _check_batch_size(batch_size)
    out_dir = Path(out_dir)
    with RunLock(out_dir):
        return _evaluate_multistage(cascade, dataset, out_dir, batch_size, progress, resume, overwrite)


def _evaluate_multistage(
    cascade: MultiStageCascade, dataset: CocoDataset, out_dir: Path, batch_size: int, progress: bool, resume: bool,
    overwrite: bool
) -> MultiStageSummary:
    start = perf_counter()
    description = describe_multistage(cascade, dataset, batch_size)
    done = open_run(out_dir, description, dataset, resume=resume, overwrite=overwrite, predicted=multistage_streams)
    with JsonlWriter(out_dir / RECORDS) as records, JsonlWriter(out_dir / DETECTIONS) as detections:
        for infos, decoded, readable in _decoded_batches(dataset, batch_size, "cascade", progress, start=done):
            ran = cascade.run([decoded[i] for i in readable], [infos[i].image_id for i in readable]) if readable else []
            rows = [
                {"image_id": info.image_id, "file_name": info.file_name, "status": failed["status"],
                 "error": failed["error"], "stage": None, "confidences": [], "n_boxes": 0, "gflops": 0.0, "seconds": 0.0}
                if isinstance(failed := decoded[i], dict) else None
                for i, info in enumerate(infos)
            ]
            for i, out in zip(readable, ran):
                rows[i] = {"image_id": infos[i].image_id, "file_name": infos[i].file_name, "status": "ok", "error": None,
                           "stage": out.stage, "confidences": list(out.confidences), "n_boxes": len(out.detections),
                           "gflops": out.gflops, "seconds": out.seconds}
            detections.write_many(out.detections.to_dict() for out in ran)
            records.write_many(rows)  # last: a record commits its image (see run_directory)
    return _summarize_multistage(cascade, dataset, batch_size, perf_counter() - start, out_dir)


def _summarize_multistage(
    cascade: MultiStageCascade, dataset: CocoDataset, batch_size: int, wall_seconds: float, out_dir: Path
) -> MultiStageSummary:
    """results.json and summary.json from the files on disk, in dataset order (a resumed run's are an
    uninterrupted one's)."""
    records = _records_in_order(out_dir, dataset)
    ran = [r for r in records if r["status"] == "ok"]
    if not ran:
        raise TinySaverInputError(f"none of the {len(dataset)} images could be read: see {out_dir / RECORDS}")
    answers = {row["image_id"]: row for row in read_jsonl(out_dir / DETECTIONS)}
    results = [entry for r in ran for entry in Detections.from_dict(answers[r["image_id"]]).to_coco()]
    atomic_write_json(out_dir / "results.json", results)
    stages = np.array([r["stage"] for r in ran])
    summary = MultiStageSummary(
        models=[model.name for model in cascade.stages],
        thresholds=list(cascade.thresholds),
        confidences=[router.name for router in cascade.routers],
        n_images=len(dataset),
        batch_size=batch_size,
        metrics=coco_bbox_metrics(load_coco(dataset.annotation_file), results, dataset.image_ids),
        gflops_per_image=float(np.mean([r["gflops"] for r in ran])),
        ms_per_image=float(np.mean([r["seconds"] for r in ran]) * 1e3),
        stage_ratios=[float(np.mean(stages == k)) for k in range(len(cascade.stages))],
        wall_seconds=wall_seconds,
        flops_convention=FLOPS_CONVENTION,
        skipped_images=len(dataset) - len(ran),
    )
    atomic_write_json(out_dir / "summary.json", dataclasses.asdict(summary), indent=2)
    return summary
