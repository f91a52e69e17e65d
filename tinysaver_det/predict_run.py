"""A deployment run: the cascade on any source, one json row per image or frame, resumable for folders.

Layout of the output folder (``tinysaver predict --out DIR``):

=====================  ===========================================================================
``predict.json``       what made the run: source, both models (sha256, settings), t, min_score,
                       confidence, conf, vid_stride, package version
``predictions.jsonl``  one row per image or frame, in source order: ``source``, ``frame`` (0 for
                       an image), ``status`` (``ok`` or ``unreadable``), ``exited``, ``confidence``,
                       ``stage``, ``detections`` (``[{xyxy, score, class_id, name}]``), ``gflops``
                       and ``ms`` (``{saver, base}``)
``summary.json``       images, unreadable images, exit ratio, GFLOPs/img, ms/img per model, img/s
``annotated/``         with ``save``: each image drawn by Ultralytics (``Results.save``) as
                       ``annotated/<name>``; each video as ONE drawn video ``annotated/<stem>.mp4``
                       (:class:`AnnotatedWriter`)
=====================  ===========================================================================

Rows are appended and fsynced after each batch; one process writes a folder at a time
(:class:`~tinysaver_det.lock.RunLock`). The folder follows the run-directory protocol of every
tool (:func:`~tinysaver_det.detection.run_directory.existing_run`): a folder holding a run is
refused without ``resume`` or ``overwrite`` (both together are refused), ``overwrite`` deletes the
run's files only (not ``annotated/``), and a resume with other settings than ``predict.json`` is
refused naming each difference (:func:`~tinysaver_det.detection.run_directory.differences`). A
folder, glob or ``.txt`` list run that was killed continues with ``resume``: finished images are
kept, an unfinished video is redone whole (its drawn video too), the rest is run. An image
Ultralytics cannot decode gets a row with ``status: unreadable`` (no image is left out).

Under a ``torchrun`` job of N processes (``context`` from :func:`~tinysaver_det.distributed.run_job`)
a source of files (a file, a folder, a glob, a ``.txt`` list) is sharded as ``eval`` shards a dataset
(:mod:`~tinysaver_det.detection.shards`): its files, images first as Ultralytics orders them, are cut
into units (a whole batch of images, or one whole video: a file is never split), and rank r runs the
contiguous units ``shard_bounds(units, 1, N)[r]`` as a one-process run of its own in
``shards/rank-<r>-of-<N>/`` (its ``predict.json``, ``predictions.jsonl``, ``summary.json``, and its
resume). Drawn images and videos go straight into the final ``annotated/`` (the ranks draw different
files). After a barrier rank 0 merges the shards' rows in source order (unreadable images last, as one
process writes them) into ``predictions.jsonl`` and writes ``summary.json``; its ``predict.json`` also
records ``world_size``, and a resume with another number of processes is refused. Rank 0 holds the
folder's lock for the whole job, each rank its shard's. The batches are those of one process as long
as every image decodes: an unreadable image is skipped by Ultralytics' loader, so the batches after it
in its shard start one image earlier than in one process (boxes can then differ in the last digits,
as a batch is letterboxed to one shape). A webcam index or stream URL has no end to cut: it is refused
under several processes (:func:`refuse_unshardable_source`).
"""

from __future__ import annotations

import contextlib
import json
import os
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from tinysaver_det.detection.run_directory import check_same_run, existing_run
from tinysaver_det.detection.shards import SHARDS, shard_bounds, shard_description, shard_dir, shard_run_files
from tinysaver_det.detection.types import detector_settings
from tinysaver_det.distributed import SINGLE_PROCESS, DistContext, refuse_several_processes
from tinysaver_det.errors import INPUT_ERRORS, TinySaverInputError
from tinysaver_det.io import JsonlWriter, atomic_write_json, atomic_write_text, read_jsonl, truncate_jsonl
from tinysaver_det.lock import RunLock

SETTINGS = "predict.json"
PREDICTIONS = "predictions.jsonl"
SUMMARY = "summary.json"
ANNOTATED = "annotated"
_REMAINING = ".remaining.txt"
#: The files of a run (what ``overwrite`` deletes).
RUN_FILES = (SETTINGS, PREDICTIONS, SUMMARY, _REMAINING)


def run_settings(cascade, source, conf: float, vid_stride: int) -> dict:
    """What decides a run's rows; a resume must have the same (the device and the models' paths
    aside: :data:`~tinysaver_det.detection.run_directory.NOT_COMPARED`)."""
    from tinysaver_det import __version__

    def model(detector) -> dict:
        settings = detector_settings(detector)
        settings.pop("device", None)
        return settings

    return {
        "source": str(source), "saver": model(cascade.saver), "base": model(cascade.base),
        "t": cascade.t, "min_score": cascade.min_score, "confidence": cascade.cascade.confidence_name,
        "class_map": cascade.class_map, "conf": conf, "vid_stride": vid_stride,
        "device": cascade.device, "package_version": __version__,
    }


def _files(source) -> tuple[list[str], list[bool]] | None:
    """The files of a folder/glob/list/single-file source in Ultralytics' order, with their video flags."""
    if not _files_known_up_front(source):
        return None
    from ultralytics.data.loaders import LoadImagesAndVideos

    text = str(source)
    try:
        loader = LoadImagesAndVideos(text)
    except FileNotFoundError as error:
        raise FileNotFoundError("--source: " + " ".join(str(error).split())) from None  # one line, as Ultralytics' spans three
    return list(loader.files), list(loader.video_flag)


def _kept_rows(path: Path, videos: set[str]) -> list[dict]:
    """The rows of a killed run to keep: complete lines, minus those of a video it had not finished."""
    rows = truncate_jsonl(path, lambda index, row: True)
    if not rows:
        return rows
    last = rows[-1]["source"]
    if last in videos:  # the video the run was in when it stopped: redo it whole
        cut = next(i for i, row in enumerate(rows) if row["source"] == last)
        rows = truncate_jsonl(path, lambda index, row: index < cut)
    return rows


def run_predictions(
    cascade,
    source,
    out: str | os.PathLike,
    *,
    conf: float = 0.25,
    batch: int = 1,
    vid_stride: int = 1,
    save: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    context: DistContext = SINGLE_PROCESS,
) -> dict:
    """Run ``cascade`` (a :class:`~tinysaver_det.api.TinySaver`) on ``source``; write the files above.

    Args:
        context: this rank's place in a ``torchrun`` job (:func:`~tinysaver_det.distributed.run_job`);
            with several ranks each runs its shard and rank 0 merges them (module doc).

    Returns:
        The summary (also written to ``summary.json``); under torchrun, rank 0's on every rank.

    Raises:
        TinySaverInputError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set (or
            both are), a resume whose settings (or number of processes) differ from ``predict.json``
            (each difference named), or a stream under a job of several ``torchrun`` processes.
    """
    refuse_unshardable_source(source)
    out = Path(out)
    options = _Options(conf, batch, vid_stride, save, progress)
    if context.sharded:
        return _run_sharded(cascade, source, out, options, resume, overwrite, context)
    with RunLock(out):  # one writer per output folder (a second predict, or a resume, is refused meanwhile)
        settings = run_settings(cascade, source, conf, vid_stride)
        listing = _files(source)
        recorded = _existing(out, resume, overwrite)
        _describe_or_check(out, recorded, settings, world_size=1)
        if recorded is not None and listing is None:
            raise TinySaverInputError(f"--resume: source {source!r} is a stream, not files; runs on it cannot resume")
        return _run_files(cascade, source, listing, out, out / ANNOTATED, options, resumed=recorded is not None)


def refuse_unshardable_source(source) -> None:
    """Refuse a source that is not a list of files (a webcam index, a stream URL, arrays) under a
    ``torchrun`` job of several processes: it has no end to cut into shards.

    Raises:
        EveryRankInputError: on every rank, printed by rank 0 only (one line).
    """
    if _files_known_up_front(source):
        return
    refuse_several_processes(
        "tinysaver predict", f"its source {str(source)[:80]!r} is not a list of files: a webcam index or a stream "
        "has no end to cut into shards")


@dataclass(frozen=True)
class _Options:
    """What every rank runs with, besides the source and the folder."""

    conf: float
    batch: int
    vid_stride: int
    save: bool
    progress: bool


def _files_known_up_front(source) -> bool:
    """Whether ``source`` names files (a file, folder, glob, list), not a stream, webcam or arrays."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    text = str(source)
    return not (text.isnumeric() or "://" in text or text.lower().endswith(".streams"))


def _existing(out: Path, resume: bool, overwrite: bool) -> dict | None:
    """:func:`existing_run` on a predict folder: its run files, and theirs in shard folders."""
    files = [out / name for name in RUN_FILES]
    return existing_run(out, out / SETTINGS, files, shard_run_files(out, RUN_FILES), resume=resume, overwrite=overwrite)


def _describe_or_check(out: Path, recorded: dict | None, described: dict, world_size: int) -> None:
    """A fresh run's ``predict.json`` in ``out``, or the check that a resumed run's ``recorded`` one is it."""
    if recorded is None:
        atomic_write_json(out / SETTINGS, described, indent=2)
    else:
        check_same_run(out, recorded, described, world_size)


def _shard_units(files: list[str], flags: list[bool], batch: int) -> list[list[int]]:
    """The indices of ``files`` cut into the units a shard is made of: a whole batch of images (the
    batches of one process when every image decodes), or one whole video (its frames are read in order,
    and a batch never spans two videos)."""
    images = [i for i, is_video in enumerate(flags) if not is_video]
    videos = [i for i, is_video in enumerate(flags) if is_video]
    return [images[i:i + batch] for i in range(0, len(images), batch)] + [[i] for i in videos]


def _run_sharded(cascade, source, out: Path, options: _Options, resume: bool, overwrite: bool,
                 context: DistContext) -> dict:
    """:func:`run_predictions` as one rank of ``context.world_size`` (module doc): input errors stop every
    rank together (:meth:`~tinysaver_det.distributed.DistContext.raise_if_any`)."""
    settings = run_settings(cascade, source, options.conf, options.vid_stride)
    shard = shard_dir(out, context.rank, context.world_size)
    with ExitStack() as locks:
        error = None
        if context.is_main:  # a wrong source or folder is reported once, by rank 0, before any shard opens
            try:
                locks.enter_context(RunLock(out))
                _files(source)
                described = {**settings, "world_size": context.world_size}
                _describe_or_check(out, _existing(out, resume, overwrite), described, context.world_size)
            except INPUT_ERRORS as raised:
                error = raised
        context.raise_if_any(error)
        try:
            files, flags = _files(source)
            units = _shard_units(files, flags, options.batch)
            first, stop = shard_bounds(len(units), 1, context.world_size)[context.rank]
            own = sorted(i for unit in units[first:stop] for i in unit)
            own_listing = ([files[i] for i in own], [flags[i] for i in own])
            locks.enter_context(RunLock(shard))
            recorded = existing_run(shard, shard / SETTINGS, [shard / name for name in RUN_FILES], resume=resume,
                                    overwrite=False)
            described = shard_description(settings, context.rank, context.world_size, (first, stop))
            _describe_or_check(shard, recorded, described, world_size=1)  # a shard is one process's run
        except INPUT_ERRORS as raised:
            error = raised
        context.raise_if_any(error)
        shown = replace(options, progress=options.progress and context.is_main)
        _run_files(cascade, None, own_listing, shard, out / ANNOTATED, shown, resumed=recorded is not None)
        context.barrier()
        summary = None
        if context.is_main:
            try:
                summary = _merge(out, files, flags, context.world_size)
            except INPUT_ERRORS as raised:
                error = raised
        context.raise_if_any(error)
    return context.broadcast(summary)


def _merge(out: Path, files: list[str], flags: list[bool], world_size: int) -> dict:
    """Rank 0: the shards' rows in source order, unreadable images last (as one process writes them),
    into ``predictions.jsonl``, and the summary of them into ``summary.json``."""
    position = {f: i for i, f in enumerate(files)}
    rows = [row for rank in range(world_size) for row in read_jsonl(shard_dir(out, rank, world_size) / PREDICTIONS)]
    rows.sort(key=lambda row: (row.get("status", "ok") != "ok", position.get(row["source"], len(files))))
    missing = {f for f, is_video in zip(files, flags) if not is_video} - {row["source"] for row in rows}
    if missing:
        raise TinySaverInputError(
            f"cannot merge {out / PREDICTIONS}: the shards under {out / SHARDS} lack the rows of {len(missing)} "
            f"image(s), e.g. {min(missing)} (a shard is incomplete or was changed); run again with --resume")
    atomic_write_text(out / PREDICTIONS, "".join(json.dumps(row) + "\n" for row in rows))
    summary = summarize_prediction_rows(rows)
    atomic_write_json(out / SUMMARY, summary, indent=2)
    return summary


def _run_files(cascade, source, listing, out: Path, annotated: Path, options: _Options, resumed: bool) -> dict:
    """Run the files of ``listing`` (all of ``source``'s; ``source`` None: these files only, a shard)
    not done yet in ``out``, whose ``predict.json`` is written; drawn results go to ``annotated``."""
    predictions = out / PREDICTIONS
    files, flags = listing if listing else (None, [])
    videos = {f for f, is_video in zip(files or [], flags) if is_video}
    rows = _kept_rows(predictions, videos) if resumed else []
    done = {row["source"] for row in rows}
    todo = source
    if files is not None and (done or source is None):
        remaining = [f for f in files if f not in done]
        atomic_write_text(out / _REMAINING, "".join(f"{f}\n" for f in remaining))
        todo = str(out / _REMAINING) if remaining else None
    total = None if files is None else sum(1 for f, v in zip(files, flags) if f not in done and not v)
    drawn = AnnotatedWriter(annotated, vid_stride=options.vid_stride) if options.save else None
    with JsonlWriter(predictions) as writer, drawn or contextlib.nullcontext():  # a video is closed on any exit
        if todo is not None:
            results = cascade.predict(todo, conf=options.conf, stream=True, batch=options.batch,
                                      vid_stride=options.vid_stride)
            _write(results, writer, drawn, options.batch, total, options.progress)
        seen = {row["source"] for row in read_jsonl(predictions)}
        writer.write_many({"source": f, "frame": 0, "status": "unreadable", "error": "Ultralytics could not decode it"}
                          for f, is_video in zip(files or [], flags) if f not in seen and not is_video)
    (out / _REMAINING).unlink(missing_ok=True)
    summary = summarize_prediction_rows(read_jsonl(predictions))
    atomic_write_json(out / SUMMARY, summary, indent=2)
    return summary


def _write(results: Iterable, writer: JsonlWriter, drawn: AnnotatedWriter | None, batch: int, total,
           progress: bool) -> None:
    from tinysaver_det.api import predictions_jsonl_row

    pending = []
    for result in tqdm(results, total=total, unit="img", disable=not progress, desc="tinysaver predict"):
        pending.append({**predictions_jsonl_row(result), "status": "ok"})
        if drawn is not None:
            drawn.write(result)
        if len(pending) >= batch:
            writer.write_many(pending)
            pending = []
    writer.write_many(pending)


#: Drawn-video containers, first choice first: mp4 (mp4v, in OpenCV's pip wheels), else avi (MJPG,
#: what Ultralytics writes on Linux) where this OpenCV build has no mp4 writer.
VIDEO_CODECS = ((".mp4", "mp4v"), (".avi", "MJPG"))
#: A drawn video's name while it is written; it gets its final name once its last frame is in.
PARTIAL = ".partial"


@dataclass
class _OpenVideo:
    source: str
    writer: object  # cv2.VideoWriter
    partial: Path
    final: Path


class AnnotatedWriter:
    """Drawn results on disk: an image as ``<folder>/<name>`` (Ultralytics' ``Results.save``), a video
    or stream as ONE drawn video ``<folder>/<stem>.mp4`` (``.avi`` where OpenCV lacks an mp4 writer:
    :data:`VIDEO_CODECS`), at the source's frame size and its fps divided by ``vid_stride`` (30 for a
    stream, as Ultralytics), so a drawn video lasts as long as its source.

    Results must come in source order (as :meth:`TinySaver.predict <tinysaver_det.api.TinySaver.predict>`
    yields them: a video's frames one after another). A video is written as
    ``<stem>.partial.mp4`` and renamed to ``<stem>.mp4`` when it is complete: the next source starts
    or the writer is closed after the results ran out. The final name therefore only ever holds a
    whole video. Leaving the ``with`` block by an exception (Ctrl-C included) releases the writer
    without the rename: ``<stem>.partial.mp4`` is a readable video of the frames drawn so far. A
    killed process (SIGKILL, power loss) cannot release it: its ``.partial`` file may be unreadable
    (an mp4 without its index). Writing the same video again (a resumed run redoes an unfinished
    video whole) starts a new ``.partial`` file and replaces the old video at the end.

    Example::

        with AnnotatedWriter("drawn") as drawn:
            for result in cascade.predict("clip.mp4", stream=True):
                drawn.write(result)
    """

    def __init__(self, folder: str | os.PathLike, vid_stride: int = 1) -> None:
        self.folder = Path(folder)
        self.vid_stride = max(int(vid_stride), 1)
        self._video: _OpenVideo | None = None

    def write(self, result) -> None:
        """Draw one :class:`~tinysaver_det.api.CascadeResult` (its ``frame`` tells a video frame from an image)."""
        if not result.frame:  # an image
            self._finish()
            target = self.folder / Path(result.path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            result.save(filename=str(target))
            return
        if self._video is None or self._video.source != result.path:
            self._finish()
            self._video = self._open(result)
        self._video.writer.write(result.plot())

    def _open(self, result) -> _OpenVideo:
        import cv2

        height, width = result.orig_img.shape[:2]
        fps = max(1.0, _source_fps(result.path) / self.vid_stride)
        stem = Path(result.path).stem
        self.folder.mkdir(parents=True, exist_ok=True)
        for suffix, fourcc in VIDEO_CODECS:
            partial = self.folder / f"{stem}{PARTIAL}{suffix}"
            writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
            if writer.isOpened():
                return _OpenVideo(str(result.path), writer, partial, self.folder / f"{stem}{suffix}")
            writer.release()
            partial.unlink(missing_ok=True)
        raise RuntimeError(f"OpenCV {cv2.__version__} can write none of {VIDEO_CODECS} to draw {result.path}")

    def _finish(self) -> None:
        """Close the video being written and give it its final name (it is complete)."""
        video, self._video = self._video, None
        if video is not None:
            video.writer.release()
            os.replace(video.partial, video.final)

    def close(self, complete: bool = True) -> None:
        """Release the video being written; ``complete``: it got all its frames, so it gets its final name."""
        if complete:
            self._finish()
        elif self._video is not None:
            self._video.writer.release()
            self._video = None

    def __enter__(self) -> "AnnotatedWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(complete=kind is None)


def _source_fps(path: str) -> float:
    """A video file's frame rate from its header (30 for a stream or a file that gives none, as Ultralytics)."""
    import cv2

    if not Path(path).is_file():
        return 30.0
    capture = cv2.VideoCapture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        return fps if fps > 0 else 30.0  # 0 or NaN: the header gives none
    finally:
        capture.release()


def summarize_prediction_rows(rows: list[dict]) -> dict:
    """Images, exit ratio, GFLOPs/img, ms/img per model and img/s (model time) over the rows that ran."""
    ran = [row for row in rows if row.get("status", "ok") == "ok"]
    n = len(ran)

    def mean(values) -> float | None:
        values = list(values)
        return sum(values) / len(values) if values else None

    ms_total = sum(row["ms"]["saver"] + row["ms"]["base"] for row in ran)
    return {
        "images": n,
        "unreadable": len(rows) - n,
        "exit_ratio": mean(row["exited"] for row in ran),
        "gflops_per_image": mean(row["gflops"]["saver"] + row["gflops"]["base"] for row in ran),
        "ms_per_image": {model: mean(row["ms"][model] for row in ran) for model in ("saver", "base")},
        "images_per_second": n / (ms_total / 1e3) if ms_total else None,
        "note": "ms and img/s count model time (pre-processing, forward pass, NMS), not decoding; "
                "base ms and GFLOPs are 0 on images that exited",
    }
