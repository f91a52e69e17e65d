"""What a tool must check before it reads or combines run directories and results files.

Numbers from inputs that do not belong together are silently wrong: two runs over different image
sets in one table, a sweep over the 68 images a killed run finished, a results json that covers 100
of 500 images scored as if it covered them all. This module reads what a run directory says about
its inputs (``run.json`` and ``records.jsonl``) and refuses, naming the input, what does not fit:

* :func:`read_run_inputs` and :meth:`RunInputs.check_finished`: a run that did not finish is refused
  unless the caller allows partial runs, and then :meth:`RunInputs.partial_note` says so;
* :func:`check_same_inputs`: runs combined in one table share the annotation file (sha256) and the
  image set;
* :meth:`RunInputs.check_annotation_file`: an annotation file given beside a run is the run's own;
* :func:`coverage_note`: "detections for 100 of 500 images" for a results file that covers fewer
  images than the annotation file;
* :func:`prediction_provenance` and :func:`check_prediction_annotations`: a ``*_predictions.jsonl``
  file's recorded inputs (weights sha256, annotation file), and an annotation file given beside it that
  is not the one it was predicted on;
* :func:`check_same_nms_mode`: predictions or runs made with different YOLO NMS modes
  (:mod:`~tinysaver_det.detection.nms_mode`) are not combined.

No framework (torch, cv2, Ultralytics, mmdet): the offline tools import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tinysaver_det.detection.run_directory import (
    BASE_PREDICTIONS,
    RECORDS,
    RUN_JSON,
    SAVER_PREDICTIONS,
    predictions_run_json,
)
from tinysaver_det.detection.nms_mode import recorded_nms_mode
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_json, read_jsonl, sha256_file


@dataclass(frozen=True)
class RunInputs:
    """A run directory's inputs as its files record them.

    Attributes:
        run_dir: the directory.
        annotation_file: the annotation file the run was made with (as recorded).
        annotation_sha256: its sha256 when the run was made.
        limit: the run's ``--limit`` (None: every image).
        n_images: how many images the run was to evaluate.
        image_ids: the images it finished (its records), in order.
    """

    run_dir: Path
    annotation_file: Path
    annotation_sha256: str
    limit: int | None
    n_images: int
    image_ids: tuple[int, ...]

    @property
    def finished(self) -> bool:
        return len(self.image_ids) == self.n_images

    def partial_note(self) -> str | None:
        """``"partial run: 68 of 300 images"`` for an unfinished run, None for a finished one."""
        return None if self.finished else f"partial run {self.run_dir}: {len(self.image_ids)} of {self.n_images} images"

    def check_finished(self, allow_partial: bool = False) -> None:
        """Refuse an unfinished run unless ``allow_partial`` (then tables must carry :meth:`partial_note`).

        Raises:
            TinySaverInputError: naming the run, how far it got and the two ways out.
        """
        if not self.finished and not allow_partial:
            raise TinySaverInputError(
                f"run {self.run_dir} did not finish: {len(self.image_ids)} of {self.n_images} images are done; "
                "finish it with the same command plus --resume, or pass --allow-partial to use those images alone"
            )

    def check_annotation_file(self, annotation_file: str | Path | None) -> None:
        """Refuse an annotation file other than the one the run was made with (compared by sha256)."""
        if annotation_file is None:
            return
        if not Path(annotation_file).is_file():
            raise FileNotFoundError(f"annotation file not found: {annotation_file}")
        if sha256_file(annotation_file) != self.annotation_sha256:
            raise TinySaverInputError(
                f"annotation file {annotation_file} is not the one run {self.run_dir} was made with "
                f"({self.annotation_file}, other content); leave --ann out to use the run's own"
            )


def read_run_inputs(run_dir: str | Path) -> RunInputs:
    """What ``run_dir``'s ``run.json`` and ``records.jsonl`` say about its inputs.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory (no ``run.json``).
        TinySaverInputError: ``run.json`` is not valid json or lacks a field (another tool's folder).
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_JSON
    if not path.is_file():  # checked here, not by read_json: this message says what the folder is not
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no {RUN_JSON}")
    recorded = read_json(path, "run description")
    try:
        annotation_file, sha256 = Path(recorded["annotation_file"]), str(recorded["annotation_sha256"])
        limit, n_images = recorded.get("limit"), int(recorded["n_images"])
    except (ValueError, KeyError, TypeError) as error:
        raise TinySaverInputError(f"{path} is not a run.json of this package ({error!r})") from None
    records = read_jsonl(run_dir / RECORDS) if (run_dir / RECORDS).is_file() else []
    return RunInputs(run_dir, annotation_file, sha256, limit, n_images, tuple(int(r["image_id"]) for r in records))


def check_same_inputs(runs: Sequence[RunInputs]) -> None:
    """Runs combined in one table or comparison share the annotation file's content and the image set.

    Raises:
        TinySaverInputError: naming the first run that differs from the first one, and how.
    """
    first = runs[0]
    for run in runs[1:]:
        if run.annotation_sha256 != first.annotation_sha256:
            raise TinySaverInputError(
                f"runs {first.run_dir} and {run.run_dir} were made with different annotation files "
                f"({first.annotation_file} and {run.annotation_file}, other content): their numbers do not compare"
            )
        if run.image_ids != first.image_ids:
            raise TinySaverInputError(
                f"runs {first.run_dir} and {run.run_dir} cover different images ({len(first.image_ids)} and "
                f"{len(run.image_ids)} images, --limit {first.limit} and {run.limit}): their numbers do not compare"
            )


def coverage_note(name: str, covered: int, total: int) -> str | None:
    """``"<name>: detections for 100 of 500 images"`` when a results file leaves images without any
    detection, else None. Those images count as answered with nothing (AP is over every image).

    >>> coverage_note("saver json", 100, 500)
    'saver json: detections for 100 of 500 images'
    >>> coverage_note("saver json", 500, 500) is None
    True
    """
    return None if covered >= total else f"{name}: detections for {covered} of {total} images"


#: The role of a cascade run's predictions files in its ``run.json`` (the entry that describes the model).
_ROLES = {SAVER_PREDICTIONS: "saver", BASE_PREDICTIONS: "base"}


def _provenance_source(path: Path) -> tuple[Path, str | None] | None:
    """Where what produced the predictions file ``path`` is recorded, the one lookup of
    :func:`prediction_provenance` and :func:`provenance_file`: ``(its own .run.json, None)``
    (:func:`~tinysaver_det.detection.run_directory.predictions_run_json`), else, for a cascade run's
    saver or base predictions, ``(the run's run.json, the role)``; None when neither file exists."""
    own = predictions_run_json(path)
    if own.is_file():
        return own, None
    run_json = path.parent / RUN_JSON
    if path.name in _ROLES and run_json.is_file():
        return run_json, _ROLES[path.name]
    return None


def _read_json_object(path: Path) -> dict:
    """A provenance file's content, read by :func:`tinysaver_det.io.read_json` (its messages for a
    missing or invalid file), refused unless it is a json object."""
    data = read_json(path, "provenance file")
    if not isinstance(data, dict):
        raise TinySaverInputError(f"{path} is not a json object of this package")
    return data


def prediction_provenance(path: str | Path) -> dict | None:
    """What produced a ``*_predictions.jsonl`` file, or None when nothing records it (an older file).

    ``predict-coco`` writes it beside the file as ``<stem>.run.json`` (``model`` with the weights'
    ``sha256``, ``annotation_file``, ``annotation_sha256``, ``limit``, ...). The saver's and the base's
    predictions of a cascade run directory are described by the run's ``run.json``: its ``saver`` or
    ``base`` entry is returned as ``model``, beside the run's annotation fields.

    Raises:
        TinySaverInputError: the metadata file is not valid json, or not a json object.
    """
    source = _provenance_source(Path(path))
    if source is None:
        return None
    file, role = source
    recorded = _read_json_object(file)
    if role is None:
        return recorded
    model = recorded.get(role)
    return {**recorded, "model": model if isinstance(model, dict) else None}


def provenance_file(path: str | Path) -> Path:
    """The file :func:`prediction_provenance` read for ``path`` (for messages; the run directory's
    ``run.json`` when neither file exists, where a cascade run would record it)."""
    path = Path(path)
    source = _provenance_source(path)
    return source[0] if source else path.parent / RUN_JSON


def recorded_weights_sha256(path: str | Path) -> str | None:
    """The weights sha256 a predictions file's provenance records (None: not recorded)."""
    provenance = prediction_provenance(path) or {}
    model = provenance.get("model")
    sha256 = model.get("sha256") if isinstance(model, dict) else None
    return str(sha256) if sha256 else None


def check_prediction_annotations(annotation_file: str | Path, predictions: Mapping[str, str | Path]) -> None:
    """Refuse predictions files whose provenance records another annotation file (by content) than ``annotation_file``.

    Files without provenance, or whose provenance records no ``annotation_sha256``, are not checked.

    Raises:
        TinySaverInputError: naming the predictions file, the annotation file it was made on, and ``annotation_file``.
    """
    actual = None
    for path in predictions.values():
        provenance = prediction_provenance(path) or {}
        recorded = provenance.get("annotation_sha256")
        if not recorded:
            continue
        if actual is None:
            if not Path(annotation_file).is_file():
                raise FileNotFoundError(f"annotation file not found: {annotation_file}")
            actual = sha256_file(annotation_file)
        if recorded != actual:
            raise TinySaverInputError(
                f"predictions {path} were made on annotation file {provenance.get('annotation_file')} "
                f"(as {provenance_file(path)} records), not on {annotation_file} (other content): "
                "pass the annotation file they were made on, or predict again on this one"
            )


def predictions_nms_mode(path: str | Path) -> str | None:
    """The NMS mode a predictions file's provenance records for its model (None: no YOLO NMS, or nothing
    recorded; see :func:`~tinysaver_det.detection.nms_mode.recorded_nms_mode`)."""
    return recorded_nms_mode((prediction_provenance(path) or {}).get("model"))


def run_nms_modes(run_dir: str | Path) -> dict[str, str | None]:
    """``{"<run_dir> saver": mode, "<run_dir> base": mode}`` as a cascade run's ``run.json`` records them."""
    recorded = _read_json_object(Path(run_dir) / RUN_JSON)
    return {f"{run_dir} {role}": recorded_nms_mode(recorded.get(role)) for role in ("saver", "base")}


def check_same_nms_mode(modes: Mapping[str, str | None]) -> None:
    """Inputs combined in one sweep, table or cache were made with the same NMS mode.

    The validator's multi-label NMS and the predictor's single-label one give other AP and other image
    confidences, so numbers from the two do not compare. Inputs whose mode is None (mmdet, unrecorded)
    are not checked.

    Args:
        modes: ``{input named for the message: its NMS mode}``.

    Raises:
        TinySaverInputError: naming two inputs made with different modes and the way out.
    """
    known = [(name, mode) for name, mode in modes.items() if mode is not None]
    for name, mode in known[1:]:
        if mode != known[0][1]:
            raise TinySaverInputError(
                f"{known[0][0]} was predicted with the {known[0][1]} NMS and {name} with the {mode} NMS: their "
                "numbers do not compare; predict both with the same --nms"
            )
