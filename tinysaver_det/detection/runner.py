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

A :class:`~tinysaver_det.detection.cascade.MultiStageCascade` of any K (:func:`evaluate_multistage`)
writes ``run.json``, ``records.jsonl`` (per image: the answering stage, the confidences, GFLOPs and
seconds spent), ``detections.jsonl`` (the answers), ``results.json``, ``errors.json``,
``summary.json`` and ``summary.md``; the table above is the two-model view of the same run
(:func:`evaluate_cascade`, a :class:`~tinysaver_det.detection.cascade.Cascade`), with the
saver/base names. One model alone is cached in the same per-image format with
:func:`predict_dataset` (``predict-coco``): a ``<name>_predictions.jsonl`` file, read back by
:func:`~tinysaver_det.detection.cache.read_predictions` like the saver/base files of a cascade run,
described in ``<name>_predictions.run.json``.

All three are one driver (:func:`_execute`) over a kind of run (:class:`_RunKind`: what it writes per
image and builds at the end): the same decoding and skipping of unreadable images, the same
:class:`~tinysaver_det.lock.RunLock`, resume and overwrite
(:mod:`~tinysaver_det.detection.run_directory`), and the same sharding under ``torchrun``: each rank
runs its whole batches in a shard of its own and rank 0 merges them in dataset order
(:mod:`~tinysaver_det.detection.shards`, ``docs/distributed.md``).

The summaries (what a run measured) are in :mod:`tinysaver_det.detection.summaries`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from time import perf_counter
from typing import Any, NamedTuple, Sequence

import numpy as np
from tqdm import tqdm

from tinysaver_det.core.cost import FLOPS_CONVENTION
from tinysaver_det.detection.cache import prediction_row
from tinysaver_det.detection.cascade import Cascade, ModelOutput, MultiStageCascade, StageOutput, model_outputs
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.dataset import CocoDataset, ImageInfo
from tinysaver_det.detection.images import UnreadableImageError, load_image
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
    multistage_streams,
    open_predictions_file,
    open_run,
    open_sharded_predictions,
    open_sharded_run,
    predictions_shard,
)
from tinysaver_det.detection.shards import merge_jsonl, shard_bounds, shard_description, shard_dir
from tinysaver_det.detection.summaries import UNREADABLE_POLICY, EvalRow, MultiStageSummary, RunSummary
from tinysaver_det.detection.types import Detections, Detector, detector_uncounted_ops
from tinysaver_det.distributed import SINGLE_PROCESS, DistContext
from tinysaver_det.errors import INPUT_ERRORS, TinySaverInputError
from tinysaver_det.io import JsonlWriter, atomic_write_json, atomic_write_text, read_jsonl
from tinysaver_det.lock import RunLock


class UnreadImage(NamedTuple):
    """An image no model ran on: why (``missing``, ``unreadable``, ``size_mismatch``) and the error."""

    status: str
    error: str


def _decode(dataset: CocoDataset, info: ImageInfo) -> np.ndarray | UnreadImage:
    """The image's pixels, or, when it cannot be read, why (never an exception: one bad file must not
    stop a run of hours)."""
    try:
        return load_image(dataset.path(info), (info.width, info.height))
    except FileNotFoundError as error:
        return UnreadImage("missing", str(error))
    except UnreadableImageError as error:
        return UnreadImage(error.status, str(error))


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise TinySaverInputError(f"batch size must be >= 1, got {batch_size}")


class _RunKind(ABC):
    """What one kind of run writes and builds; :func:`_execute` does the rest (lock, resume, batches,
    sharding). A run is written at a ``target`` (a run directory, or one predictions file)."""

    #: The progress bar's label.
    label = "cascade"

    @abstractmethod
    def describe(self, dataset: CocoDataset, batch_size: int) -> dict:
        """The run's description (``run.json``), compared on resume."""

    @abstractmethod
    def files(self, target: Path) -> list[Path]:
        """The json-lines files a batch appends to, in writing order: the commit log last."""

    @abstractmethod
    def run(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> list:
        """The models' outputs on one batch of readable images."""

    @abstractmethod
    def image_rows(self, info: ImageInfo, output) -> list[list[dict]]:
        """An image's rows, one list per file of :meth:`files`."""

    @abstractmethod
    def unread_rows(self, info: ImageInfo, unread: UnreadImage) -> list[list[dict]]:
        """An unreadable image's rows, likewise."""

    @abstractmethod
    def lock(self, target: Path) -> RunLock:
        """The lock of ``target`` (one writer at a time)."""

    @abstractmethod
    def open(self, target: Path, description: dict, dataset: CocoDataset, resume: bool, overwrite: bool) -> int:
        """Make ``target`` ready (refusals, overwrite, repair); how many images are done."""

    @abstractmethod
    def open_sharded(self, target: Path, description: dict, world_size: int, resume: bool, overwrite: bool) -> None:
        """Rank 0's checks and description of a run of ``world_size`` processes."""

    @abstractmethod
    def shard(self, target: Path, rank: int, world_size: int) -> Path:
        """Where rank ``rank`` writes its shard: a target of the same kind."""

    @abstractmethod
    def merge(self, target: Path, dataset: CocoDataset, world_size: int) -> None:
        """Concatenate the shards into ``target`` in dataset order (rank 0, after every shard is done)."""

    @abstractmethod
    def finish(self, target: Path, dataset: CocoDataset, batch_size: int, wall_seconds: float) -> Any:
        """The final outputs, from the files on disk; what the entry point returns."""


class _CascadeRunKind(_RunKind):
    """A cascade's run directory: ``records.jsonl`` commits each image, prediction streams beside it,
    ``errors.json``, results and the summary at the end. The K-stage form and its two-model view
    differ only in their rows and summary."""

    def __init__(self, cascade: MultiStageCascade) -> None:
        self.cascade = cascade

    #: The prediction files a batch appends to before ``records.jsonl``.
    stream_names: tuple[str, ...]

    @abstractmethod
    def streams(self, records: list[dict]) -> dict[str, list[int]]:
        """The prediction files the committed ``records`` imply, ``{name: image ids in order}``."""

    @abstractmethod
    def summarize(self, out_dir: Path, dataset: CocoDataset, ran: list[dict], **common) -> Any:
        """The summary over the records of the images ``ran`` (``common``: the
        :class:`~tinysaver_det.detection.summaries.DatasetRunSummary` fields); writes the results files."""

    def files(self, target: Path) -> list[Path]:
        return [target / name for name in (*self.stream_names, RECORDS)]

    def run(self, images, image_ids) -> list[StageOutput]:
        return self.cascade.run(images, image_ids)

    def lock(self, target: Path) -> RunLock:
        return RunLock(target)

    def open(self, target, description, dataset, resume, overwrite) -> int:
        return open_run(target, description, dataset, resume=resume, overwrite=overwrite, predicted=self.streams)

    def open_sharded(self, target, description, world_size, resume, overwrite) -> None:
        open_sharded_run(target, description, world_size, resume=resume, overwrite=overwrite)

    def shard(self, target: Path, rank: int, world_size: int) -> Path:
        return shard_dir(target, rank, world_size)

    def merge(self, target: Path, dataset: CocoDataset, world_size: int) -> None:
        """The records must be one per image in dataset order, and the predictions those the records
        imply (the same rule as a resume's repair: :meth:`streams`)."""
        shards = [shard_dir(target, rank, world_size) for rank in range(world_size)]
        records = merge_jsonl([path / RECORDS for path in shards], target / RECORDS, dataset.image_ids)
        for name, image_ids in self.streams(records).items():
            merge_jsonl([path / name for path in shards], target / name, image_ids)

    def finish(self, target: Path, dataset: CocoDataset, batch_size: int, wall_seconds: float):
        """``errors.json``, the results and ``summary.json``/``summary.md``, from the files on disk, in
        dataset order (a resumed or sharded run's are an uninterrupted one's)."""
        records = _records_in_order(target, dataset)
        ran = [r for r in records if r["status"] == "ok"]
        failed = [r for r in records if r["status"] != "ok"]
        unannotated = dataset.unannotated_files()
        atomic_write_json(
            target / ERRORS,
            {
                "policy": UNREADABLE_POLICY,
                "skipped": [{key: r[key] for key in ("image_id", "file_name", "status", "error")} for r in failed],
                "not_in_annotations": unannotated,
            },
            indent=2,
        )
        if not ran:
            raise TinySaverInputError(f"none of the {len(records)} images could be read: see {target / ERRORS}")
        summary = self.summarize(
            target, dataset, ran, n_images=len(records), batch_size=batch_size, wall_seconds=wall_seconds,
            flops_convention=FLOPS_CONVENTION, skipped_images=dict(sorted(Counter(r["status"] for r in failed).items())),
            unannotated_files=len(unannotated),
        )
        atomic_write_json(target / "summary.json", dataclasses.asdict(summary), indent=2)
        atomic_write_text(target / "summary.md", summary.to_markdown())
        return summary


def _write_results(out_dir: Path, name: str, answers: list[dict], ground_truth, dataset: CocoDataset) -> dict:
    """Write ``answers`` (detection rows) as the COCO results file ``name``; their COCO metrics over
    every image of ``dataset`` (an image with no answer counts as one with no detection)."""
    results = [entry for answer in answers for entry in Detections.from_dict(answer).to_coco()]
    atomic_write_json(out_dir / name, results)
    return coco_bbox_metrics(ground_truth, results, dataset.image_ids)


class _StagesRunKind(_CascadeRunKind):
    """A K-stage run: per image the answering stage and its detections (``detections.jsonl``)."""

    stream_names = (DETECTIONS,)

    def describe(self, dataset, batch_size) -> dict:
        return describe_multistage(self.cascade, dataset, batch_size)

    def streams(self, records):
        return multistage_streams(records)

    def image_rows(self, info: ImageInfo, output: StageOutput) -> list[list[dict]]:
        record = {"image_id": info.image_id, "file_name": info.file_name, "status": "ok", "error": None,
                  "stage": output.stage, "confidences": list(output.confidences), "n_boxes": len(output.detections),
                  "gflops": output.gflops, "seconds": output.seconds}
        return [[output.detections.to_dict()], [record]]

    def unread_rows(self, info: ImageInfo, unread: UnreadImage) -> list[list[dict]]:
        return [[], [{"image_id": info.image_id, "file_name": info.file_name, "status": unread.status,
                      "error": unread.error, "stage": None, "confidences": [], "n_boxes": 0, "gflops": 0.0,
                      "seconds": 0.0}]]

    def summarize(self, out_dir, dataset, ran, **common) -> MultiStageSummary:
        answers = {row["image_id"]: row for row in read_jsonl(out_dir / DETECTIONS)}
        metrics = _write_results(out_dir, "results.json", [answers[r["image_id"]] for r in ran],
                                 load_coco(dataset.annotation_file), dataset)
        stages = np.array([r["stage"] for r in ran])
        cascade = self.cascade
        return MultiStageSummary(
            models=[model.name for model in cascade.stages],
            thresholds=list(cascade.thresholds),
            confidences=[router.name for router in cascade.routers],
            metrics=metrics,
            gflops_per_image=float(np.mean([r["gflops"] for r in ran])),
            ms_per_image=float(np.mean([r["seconds"] for r in ran]) * 1e3),
            stage_ratios=[float(np.mean(stages == k)) for k in range(len(cascade.stages))],
            **common,
        )


class _TwoModelRunKind(_CascadeRunKind):
    """The two-model view of a run (a :class:`Cascade`): records with the saver/base fields, each
    model's predictions in its own file, and saver-alone (and with ``--full`` base-alone) rows."""

    stream_names = (SAVER_PREDICTIONS, BASE_PREDICTIONS)
    cascade: Cascade

    def describe(self, dataset, batch_size) -> dict:
        return describe_run(self.cascade, dataset, batch_size)

    def streams(self, records):
        return cascade_streams(records, self.cascade.run_base_on_all)

    def image_rows(self, info: ImageInfo, output) -> list[list[dict]]:
        record = {"file_name": info.file_name, "status": "ok", "error": None, **dataclasses.asdict(output.record)}
        base = [] if output.base is None else [prediction_row(output.base)]
        return [[prediction_row(output.saver)], base, [record]]

    def unread_rows(self, info: ImageInfo, unread: UnreadImage) -> list[list[dict]]:
        """The record of an image no model ran on: it answers nothing and costs nothing."""
        record = {"file_name": info.file_name, "status": unread.status, "error": unread.error, "image_id": info.image_id,
                  "confidence": None, "exited": None, "n_boxes": 0, "saver_gflops": 0.0, "base_gflops": 0.0,
                  "seconds": 0.0, "router_gflops": 0.0}
        return [[], [], [record]]

    def summarize(self, out_dir, dataset, ran, **common) -> RunSummary:
        ground_truth = load_coco(dataset.annotation_file)
        saver, base = ({p["image_id"]: p for p in read_jsonl(out_dir / name)} for name in self.stream_names)

        def row(name: str, answers: list[dict], gflops, seconds, exit_ratio=None) -> EvalRow:
            file_name = f"results{'' if name == 'cascade' else '_' + name}.json"
            metrics = _write_results(out_dir, file_name, answers, ground_truth, dataset)
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
        cascade = self.cascade
        if cascade.run_base_on_all:
            rows.append(model_row("base", base))
        return RunSummary(
            saver=cascade.saver.name,
            base=cascade.base.name,
            threshold=cascade.policy.threshold,
            min_score=cascade.min_score,
            confidence=cascade.confidence_name,
            rows=rows,
            uncounted_ops={
                "saver": list(detector_uncounted_ops(cascade.saver)),
                "base": list(detector_uncounted_ops(cascade.base)),
            },
            **common,
        )


class _PredictionsRunKind(_RunKind):
    """One model's predictions file (``predict-coco``): one row per image, unreadable images included
    (no detection, no cost, their ``status`` and ``error``); the file is its own commit log."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    @property
    def label(self) -> str:
        return self.detector.name

    def describe(self, dataset, batch_size) -> dict:
        return describe_predictions(self.detector, dataset, batch_size)

    def files(self, target: Path) -> list[Path]:
        return [target]

    def run(self, images, image_ids) -> list[ModelOutput]:
        return model_outputs(self.detector.predict(images, image_ids))

    def image_rows(self, info, output: ModelOutput) -> list[list[dict]]:
        return [[prediction_row(output)]]

    def unread_rows(self, info, unread: UnreadImage) -> list[list[dict]]:
        empty = prediction_row(ModelOutput(Detections.empty(info.image_id), 0.0, 0.0))
        return [[{**empty, "status": unread.status, "error": unread.error}]]

    def lock(self, target: Path) -> RunLock:
        return RunLock.for_file(target)

    def open(self, target, description, dataset, resume, overwrite) -> int:
        return open_predictions_file(target, description, dataset, resume=resume, overwrite=overwrite)

    def open_sharded(self, target, description, world_size, resume, overwrite) -> None:
        open_sharded_predictions(target, description, world_size, resume=resume, overwrite=overwrite)

    def shard(self, target: Path, rank: int, world_size: int) -> Path:
        return predictions_shard(target, rank, world_size)

    def merge(self, target: Path, dataset: CocoDataset, world_size: int) -> None:
        shards = [predictions_shard(target, rank, world_size) for rank in range(world_size)]
        merge_jsonl(shards, target, dataset.image_ids)

    def finish(self, target: Path, dataset: CocoDataset, batch_size: int, wall_seconds: float) -> Path:
        return target


def _execute(
    kind: _RunKind,
    dataset: CocoDataset,
    target: str | Path,
    batch_size: int = 32,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
    context: DistContext = SINGLE_PROCESS,
):
    """The one run driver: ``kind`` over every image of ``dataset``, written at ``target``.

    In one process: lock ``target`` (first: a second writer is refused before anything is read),
    open it (refuse, overwrite or repair a resumed run), run the images from the first one not done,
    and finish. With several processes: :func:`_execute_sharded`. The arguments are those of
    :func:`evaluate_cascade`.
    """
    _check_batch_size(batch_size)
    target = Path(target)
    if context.sharded:
        return _execute_sharded(kind, dataset, target, batch_size, progress, resume, overwrite, context)
    start = perf_counter()
    with kind.lock(target):  # one writer: a second run, or a --resume, on target is refused while this one writes
        done = kind.open(target, kind.describe(dataset, batch_size), dataset, resume, overwrite)
        _run_images(kind, dataset, target, batch_size, progress, done, kind.label)
        return kind.finish(target, dataset, batch_size, perf_counter() - start)


def _execute_sharded(
    kind: _RunKind,
    dataset: CocoDataset,
    target: Path,
    batch_size: int,
    progress: bool,
    resume: bool,
    overwrite: bool,
    context: DistContext,
):
    """:func:`_execute` as one rank of ``context.world_size``: run this rank's shard at its own target
    (:meth:`_RunKind.shard`), then, after a barrier, rank 0 merges the shards in dataset order and
    finishes as one process does. Input errors stop every rank together (:meth:`DistContext.raise_if_any`);
    every rank returns rank 0's result.

    Locks: each rank holds its shard, rank 0 also ``target`` (for the whole run, the merge included).
    """
    start = perf_counter()
    description = kind.describe(dataset, batch_size)  # rank 0's; every rank's shard is derived from it
    bounds = shard_bounds(len(dataset), batch_size, context.world_size)
    first, stop = bounds[context.rank]
    shard = dataset.subset(dataset.image_ids[first:stop])
    shard_target = kind.shard(target, context.rank, context.world_size)
    with ExitStack() as locks:
        error = None
        if context.is_main:
            try:
                locks.enter_context(kind.lock(target))
                kind.open_sharded(target, description, context.world_size, resume, overwrite)
            except INPUT_ERRORS as raised:
                error = raised
        context.raise_if_any(error)
        try:
            locks.enter_context(kind.lock(shard_target))
            own = shard_description(describe_subset(description, shard), context.rank, context.world_size, (first, stop))
            done = kind.open(shard_target, own, shard, resume, False)
        except INPUT_ERRORS as raised:
            error = raised
        context.raise_if_any(error)
        desc = f"{kind.label} rank {context.rank}/{context.world_size}"
        _run_images(kind, shard, shard_target, batch_size, progress and context.is_main, done, desc)
        context.barrier()
        result = None
        if context.is_main:
            try:
                kind.merge(target, dataset, context.world_size)
                result = kind.finish(target, dataset, batch_size, perf_counter() - start)
            except INPUT_ERRORS as raised:
                error = raised
        context.raise_if_any(error)
    return context.broadcast(result)


def _run_images(
    kind: _RunKind, dataset: CocoDataset, target: Path, batch_size: int, progress: bool, done: int, desc: str
) -> None:
    """The one image loop: the images of ``dataset`` from index ``done`` on, in batches, each decoded
    (an unreadable image is never fed to a model: it gets its :meth:`_RunKind.unread_rows`), the readable
    ones run as one batch, and the batch's rows appended to each file, the commit log last (see
    :mod:`~tinysaver_det.detection.run_directory`)."""
    paths = kind.files(target)
    with ExitStack() as files, tqdm(total=len(dataset), initial=done, desc=desc, unit="img", disable=not progress) as bar:
        writers = [files.enter_context(JsonlWriter(path)) for path in paths]
        for begin in range(done, len(dataset), batch_size):
            infos = dataset.images[begin : begin + batch_size]
            decoded = [_decode(dataset, info) for info in infos]
            readable = [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
            outputs = kind.run([decoded[i] for i in readable], [infos[i].image_id for i in readable]) if readable else []
            ran = dict(zip(readable, outputs))
            rows: list[list[dict]] = [[] for _ in paths]
            for i, info in enumerate(infos):
                image_rows = kind.image_rows(info, ran[i]) if i in ran else kind.unread_rows(info, decoded[i])
                for file_rows, new in zip(rows, image_rows):
                    file_rows.extend(new)
            for writer, file_rows in zip(writers, rows):
                writer.write_many(file_rows)  # in file order: the commit log last
            bar.update(len(infos))


def _records_in_order(out_dir: Path, dataset: CocoDataset) -> list[dict]:
    """``records.jsonl`` of a finished run, refused unless it holds one record per image in dataset order."""
    records = read_jsonl(out_dir / RECORDS)
    if [r["image_id"] for r in records] != dataset.image_ids:
        raise TinySaverInputError(
            f"{out_dir / RECORDS} does not hold one record per image in dataset order: "
            "the run directory was changed while the run was going on"
        )
    return records


def evaluate_cascade(cascade: Cascade, dataset: CocoDataset, out_dir: str | Path, batch_size: int = 32,
                     progress: bool = True, **options) -> RunSummary:
    """Run a two-model ``cascade`` on every image of ``dataset``, write the run directory (the
    saver/base files of the module doc), return the summary.

    With ``cascade.run_base_on_all`` the summary also has saver-alone and base-alone rows from
    the same run, and the run directory holds everything a threshold sweep needs.

    Args:
        batch_size: images per batch (a run resumes, and is sharded, in whole batches).
        progress: show a progress bar (rank 0's only, under torchrun).
        resume: (keyword) continue the run in ``out_dir`` where it stopped (or start one when there
            is none); refused, naming each difference, when that run was made with other settings.
        overwrite: (keyword) replace the run in ``out_dir``. Without either flag, a ``out_dir`` that
            holds a run is refused rather than mixed with; with both, refused too.
        context: (keyword) this process's place in a ``torchrun`` job
            (:func:`tinysaver_det.distributed.process_group`); with several processes each rank runs
            its shard of the images and rank 0 merges them (:mod:`~tinysaver_det.detection.shards`).
            Every rank returns the same summary.

    Raises:
        TinySaverInputError: a wrong batch size or run directory, or no image could be read.
        RunLockedError: another process is writing ``out_dir`` (:class:`~tinysaver_det.lock.RunLock`,
            held from the repair of a resumed run to the last final file).
    """
    return _execute(_TwoModelRunKind(cascade), dataset, out_dir, batch_size, progress, **options)


def evaluate_multistage(cascade: MultiStageCascade, dataset: CocoDataset, out_dir: str | Path, batch_size: int = 32,
                        progress: bool = True, **options) -> MultiStageSummary:
    """Run a K-stage cascade on every image of ``dataset``; write run.json, records.jsonl,
    detections.jsonl (the answering stage's detections), results.json, errors.json, summary.json
    and summary.md.

    The stage ratios, GFLOPs and ms per image count the images the models ran on. Arguments
    (``resume``, ``overwrite``, ``context``), locking, resume and sharding as :func:`evaluate_cascade`'s:
    the same driver.

    Raises:
        TinySaverInputError: a wrong batch size or run directory, or no image could be read.
        RunLockedError: another process is writing ``out_dir``.
    """
    return _execute(_StagesRunKind(cascade), dataset, out_dir, batch_size, progress, **options)


def predict_dataset(detector: Detector, dataset: CocoDataset, path: str | Path, batch_size: int = 32,
                    progress: bool = True, **options) -> Path:
    """Run one model on every image of ``dataset`` and cache its per-image predictions at ``path``.

    The rows are those of a cascade run's ``saver_predictions.jsonl`` (detections, per-image GFLOPs
    and seconds, the seconds being the batch's model time divided by its size), so
    :func:`~tinysaver_det.detection.cache.read_predictions` reads either. An image that cannot be
    read gets a row with no detection, no cost, and its ``status`` and ``error`` (the run's
    :data:`~tinysaver_det.detection.summaries.UNREADABLE_POLICY`), so the cache still covers every
    image. Rows are appended and fsynced per batch; what produced them is written first, beside
    ``path`` (:func:`~tinysaver_det.detection.run_directory.predictions_run_json`), so that a killed
    run resumes as an ``eval`` run does (:func:`~tinysaver_det.detection.run_directory.open_predictions_file`).

    Arguments (``resume``, ``overwrite``, ``context``) as :func:`evaluate_cascade`'s: a resume redoes
    whole batches and retries images recorded unreadable that can be read now; under torchrun each
    rank writes its shard under ``<folder>/shards/``
    (:func:`~tinysaver_det.detection.run_directory.predictions_shard`) and rank 0 merges them.

    Raises:
        TinySaverInputError: a wrong batch size, or ``path`` holding a run that may not be mixed with.
        RunLockedError: another process is writing ``path``.
    """
    return _execute(_PredictionsRunKind(detector), dataset, path, batch_size, progress, **options)
