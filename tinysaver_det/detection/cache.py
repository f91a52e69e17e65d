"""The one prediction cache: K models' per-image answers on the same images, matched to the ground truth once.

Every offline tool reads it: threshold sweeps and benchmark tables (a saver/base pair), router
comparisons, depth studies and the operating-point picker (K models). A :class:`PredictionCache`
holds, for each model (cheapest first), a :class:`CachedModel` (per-image detections, GFLOPs and
model seconds) and its exact per-image COCO matching
(:func:`~tinysaver_det.detection.coco.evaluate_images`), computed once. Any routing of the images to
the models is then scored without re-matching:

* :meth:`PredictionCache.pair_metric`: a saver/base pair (sweeps, ``r_match``);
* :meth:`PredictionCache.selection_metric`: K models; both are the ``core.cascade_model.SelectionMetric``;
* :meth:`PredictionCache.per_image_ap`: each image's own COCO AP under one model (the oracle's and the
  learned router's per-image quality).

It is built from

* ``*_predictions.jsonl`` files (:func:`load_cache`, :func:`load_splits`): ``predict-coco``
  (:func:`tinysaver_det.detection.runner.predict_dataset`) or the saver/base files of a cascade run;
* a ``--full`` cascade run directory (:func:`cache_from_run`), its unreadable images kept as images
  with no detection that cost nothing;
* two standard COCO results jsons with one GFLOPs figure per model (:func:`cache_from_results`;
  no time was measured, so ``seconds`` is NaN).

File format of ``*_predictions.jsonl``: one json object per image, the fields of
:meth:`~tinysaver_det.detection.types.Detections.to_dict` (``image_id``, xyxy ``boxes``, ``scores``,
``category_ids``) plus ``gflops`` and ``seconds`` (:func:`prediction_row`, :func:`read_predictions`).

Costs come in two units (:data:`COST_UNITS`): ``"GFLOPs"`` (counted, FLOPs = 2 * MACs) and ``"ms"``
(measured model milliseconds per image on the machine and batch size of the prediction run).

:func:`split_image_ids` gives the fixed calibration / held-out split used by the tools.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det.core.score_routers import Router, router_confidences
from tinysaver_det.detection.cascade import ModelOutput
from tinysaver_det.detection.coco import (
    CocoCascadeMetric,
    CocoGroundTruth,
    CocoParams,
    accumulate,
    evaluate_images,
    load_ground_truth,
    summarize,
    summarize_selections,
)
from tinysaver_det.detection.coco.results_json import ResultColumns, load_results_columns
from tinysaver_det.detection.dataset import load_annotation_json, restrict_annotations
from tinysaver_det.detection.run_directory import BASE_PREDICTIONS, RECORDS, SAVER_PREDICTIONS
from tinysaver_det.detection.run_inputs import (
    check_prediction_annotations,
    check_same_nms_mode,
    coverage_note,
    predictions_nms_mode,
    read_run_inputs,
    recorded_weights_sha256,
    run_nms_modes,
)
from tinysaver_det.detection.types import Detections
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_jsonl

#: Cost units of a cache: counted GFLOPs per image, measured model milliseconds per image.
COST_UNITS = {"gflops": "GFLOPs", "latency": "ms"}

#: Ways :func:`split_image_ids` can split a dataset into calibration and held-out halves.
SPLITS = ("parity", "permutation")


@dataclass(frozen=True)
class CachedModel:
    """One model's cached answers on a list of images.

    Attributes:
        name: how tables name it.
        detections: one :class:`Detections` per image, in the cache's image order.
        gflops: (N,) GFLOPs per image.
        seconds: (N,) model seconds per image (the batch's time divided by its size).
        results: the results list as read from a COCO results json, when the model came from one:
            it is what gets evaluated, boxes as written (``[x, y, w, h]``, as pycocotools' ``loadRes``),
            while ``detections`` (xyxy) serve the routers. A :class:`PredictionCache` evaluates it
            and keeps its models without it.
        sha256: the model's weights sha256 as the predictions' provenance records it (None: not recorded);
            routers trained on its answers record it.
    """

    name: str
    detections: tuple[Detections, ...]
    gflops: np.ndarray
    seconds: np.ndarray
    results: ResultColumns | None = None
    sha256: str | None = None


def prediction_row(output: ModelOutput) -> dict:
    """One line of a ``*_predictions.jsonl`` file: one model's detections on one image, its GFLOPs and seconds."""
    return {**output.detections.to_dict(), "gflops": output.gflops, "seconds": output.seconds}


def read_predictions(path: str | Path) -> dict[int, ModelOutput]:
    """Per-image predictions of one model from a ``*_predictions.jsonl`` file, by image id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    outputs = {}
    with path.open() as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                output = ModelOutput(Detections.from_dict(row), float(row["gflops"]), float(row["seconds"]))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
                raise TinySaverInputError(
                    f"{path}: line {number} is not a prediction row (image_id, boxes, scores, category_ids, gflops, "
                    f"seconds) of predict-coco: {error!r}"
                ) from None
            outputs[output.detections.image_id] = output
    return outputs


def load_predictions(out_dir: str | Path, model: str) -> dict[int, ModelOutput]:
    """A run directory's cached predictions of ``model`` (``"saver"`` or ``"base"``) by image id."""
    if model not in ("saver", "base"):
        raise ValueError(f"model must be 'saver' or 'base', got {model!r}")
    path = Path(out_dir) / (SAVER_PREDICTIONS if model == "saver" else BASE_PREDICTIONS)
    if not path.is_file():
        raise FileNotFoundError(f"no {model} predictions in {out_dir}: {path.name} is missing")
    return read_predictions(path)


def read_cached_model(name: str, path: str | os.PathLike, image_ids: Sequence[int]) -> CachedModel:
    """A model's records for ``image_ids`` from a ``*_predictions.jsonl`` file (every id must be there)."""
    by_id = read_predictions(path)
    missing = [i for i in image_ids if i not in by_id]
    if missing:
        raise TinySaverInputError(
            f"{path}: predictions of {name!r} cover {len(image_ids) - len(missing)} of the {len(image_ids)} images "
            f"asked for (none for ids {[int(i) for i in missing[:5]]}{'...' if len(missing) > 5 else ''}): made with --limit or on "
            "another dataset? Predict every image of the annotation file"
        )
    outputs = [by_id[i] for i in image_ids]
    return CachedModel(
        name,
        tuple(o.detections for o in outputs),
        np.array([o.gflops for o in outputs], dtype=np.float64),
        np.array([o.seconds for o in outputs], dtype=np.float64),
        sha256=recorded_weights_sha256(path),
    )


class PredictionCache:
    """K models' cached predictions on the same images (cheapest first) and their COCO evaluation.

    Args:
        ground_truth: the images and annotations (:func:`~tinysaver_det.detection.coco.load_ground_truth`).
        models: each model's :class:`CachedModel` over ``ground_truth.image_ids``, cheapest first.
        notes: what every table made from this cache must say about its inputs ("partial run ...",
            "saver json: detections for 100 of 500 images").
    """

    def __init__(self, ground_truth: CocoGroundTruth, models: Sequence[CachedModel], notes: Sequence[str] = ()) -> None:
        if len(models) < 1:
            raise ValueError("a prediction cache needs at least one model")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        self.ground_truth = ground_truth
        self.image_ids = np.asarray(ground_truth.image_ids, dtype=np.int64)
        for model in models:
            ids = [d.image_id for d in model.detections]
            if ids != self.image_ids.tolist():
                raise ValueError(f"{model.name}: records must follow the ground truth's image order")
        self.notes = tuple(notes)
        self.evaluations = tuple(
            evaluate_images(ground_truth, m.results if m.results is not None else m.detections) for m in models
        )
        # A results list is read for the evaluation alone; not keeping it leaves one copy of the boxes.
        self.models = tuple(replace(m, results=None) if m.results is not None else m for m in models)
        self._per_image_ap: dict[int, np.ndarray] = {}
        self._model_metrics: dict[int, dict[str, float]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    def index(self, model: str | int) -> int:
        """Position of a model given by name or index."""
        if isinstance(model, (int, np.integer)):
            if not 0 <= model < len(self.models):
                raise IndexError(f"model index {model} out of range for {len(self.models)} models")
            return int(model)
        try:
            return self.names.index(model)
        except ValueError:
            raise KeyError(f"no model {model!r} in the cache; it has {list(self.names)}") from None

    def detections(self, model: str | int) -> tuple[Detections, ...]:
        return self.models[self.index(model)].detections

    def cost(self, model: str | int, unit: str) -> np.ndarray:
        """``(N,)`` cost per image of one model in ``"GFLOPs"`` or ``"ms"``."""
        record = self.models[self.index(model)]
        if unit == "GFLOPs":
            return record.gflops
        if unit == "ms":
            return record.seconds * 1e3
        raise ValueError(f"unknown cost unit {unit!r}; choose one of {sorted(COST_UNITS.values())}")

    def model_metrics(self, model: str | int) -> dict[str, float]:
        """The 12 COCO stats of one model alone on every image.

        Memoised per model, like :meth:`per_image_ap`: the studies ask for the same model's stats
        several times (each reference, each split's summary), and each call re-accumulates the
        whole split. A copy is returned, so a caller that edits its dict cannot change the cache.
        """
        k = self.index(model)
        if k not in self._model_metrics:
            self._model_metrics[k] = summarize_selections(self.evaluations[k], np.ones((1, self.n_images), dtype=bool))[0]
        return dict(self._model_metrics[k])

    def per_image_ap(self, model: str | int) -> np.ndarray:
        """``(N,)`` COCO AP of one model on each image evaluated alone; -1 on an image without ground truth."""
        k = self.index(model)
        if k not in self._per_image_ap:
            stats = summarize_selections(self.evaluations[k], np.eye(self.n_images, dtype=bool))
            self._per_image_ap[k] = np.array([s["AP"] for s in stats], dtype=np.float64)
        return self._per_image_ap[k].copy()

    def pair_metric(self, saver: str | int, base: str | int, workers: int = 1) -> CocoCascadeMetric:
        """The saver/base cascade's metric (exit mask True -> the saver's detections)."""
        return CocoCascadeMetric(self.evaluations[self.index(saver)], self.evaluations[self.index(base)], workers=workers)

    def selection_metric(self, models: Sequence[str | int] | None = None) -> CocoCascadeMetric:
        """The metric of a cascade through ``models`` (default: all, in order)."""
        indices = range(len(self.models)) if models is None else [self.index(m) for m in models]
        return CocoCascadeMetric(*(self.evaluations[k] for k in indices))

    def confidences(self, model: str | int, router: Router) -> np.ndarray:
        """``(N,)`` the router's confidence on each image's detections of ``model``."""
        return router_confidences(router, self.detections(model))


def cache_from_run(
    run_dir: str | Path, annotation_file: str | Path | None = None, allow_partial: bool = False
) -> PredictionCache:
    """The saver's and the base's cache (models ``"saver"``, ``"base"``) from a ``--full`` run directory.

    The image set is every image the run recorded: the run's own annotation file and ``--limit``.
    A run that did not finish is refused unless ``allow_partial``; its cache then carries the note
    ``"partial run ...: 68 of 300 images"`` (:mod:`~tinysaver_det.detection.run_inputs`).

    Images the run could not read stay in, as images with no detection that cost nothing (the
    run's own policy, ``summaries.UNREADABLE_POLICY``).

    Args:
        run_dir: written by ``tools/eval_coco.py --full``.
        annotation_file: default: the one named in the run's ``run.json``; another one must have the
            same content (sha256) as the run's.
        allow_partial: accept a run that did not finish (its finished images alone).

    Raises:
        TinySaverInputError: the base did not run on every readable image (a run made without ``--full``),
            the run did not finish, ``annotation_file`` is not the run's, or its saver and base ran
            different NMS modes.
    """
    run_dir = Path(run_dir)
    inputs = read_run_inputs(run_dir)
    inputs.check_finished(allow_partial)
    inputs.check_annotation_file(annotation_file)
    check_same_nms_mode(run_nms_modes(run_dir))  # a library-built cascade may mix them
    if annotation_file is None:
        annotation_file = inputs.annotation_file
    records = read_jsonl(run_dir / RECORDS)
    saver = load_predictions(run_dir, "saver")
    base = load_predictions(run_dir, "base")
    missing = sorted(r["image_id"] for r in records if r["status"] == "ok" and r["image_id"] not in base)
    if missing:
        raise TinySaverInputError(
            f"{run_dir}: the base has no predictions for {len(missing)} image(s) (e.g. {missing[:5]}); "
            "sweeps need a run made with --full"
        )
    image_ids = sorted(r["image_id"] for r in records)

    def model(name: str, outputs: dict[int, ModelOutput]) -> CachedModel:
        return CachedModel(
            name,
            tuple(outputs[i].detections if i in outputs else Detections.empty(i) for i in image_ids),
            np.array([outputs[i].gflops if i in outputs else 0.0 for i in image_ids], dtype=np.float64),
            np.array([outputs[i].seconds if i in outputs else 0.0 for i in image_ids], dtype=np.float64),
            sha256=recorded_weights_sha256(run_dir / (SAVER_PREDICTIONS if name == "saver" else BASE_PREDICTIONS)),
        )

    ground_truth = load_ground_truth(restrict_annotations(load_annotation_json(annotation_file), image_ids))
    if list(ground_truth.image_ids) != image_ids:
        raise TinySaverInputError(f"{run_dir}: the run's images and the annotation file's images differ")
    notes = [inputs.partial_note()] if not inputs.finished else []
    return PredictionCache(ground_truth, [model("saver", saver), model("base", base)], notes)


def cache_from_results(
    annotation_file: str | Path,
    saver_json: str | Path,
    base_json: str | Path,
    saver_gflops: float,
    base_gflops: float,
) -> PredictionCache:
    """The cache of two COCO results jsons (models ``"saver"``, ``"base"``) over every image of the
    annotation file, with one GFLOPs figure each (no time was measured: ``seconds`` is NaN).

    A json that leaves images without any detection is taken as answering nothing there (AP is over
    every image of the annotation file), and the cache's notes say so: "saver json S.json: detections
    for 100 of 500 images".

    Raises:
        TinySaverInputError: a results entry with an unknown image or category id, a bad box or a
            score outside [0, 1] (:func:`~tinysaver_det.detection.coco.results_json.load_results_columns`).
    """
    annotations = load_annotation_json(annotation_file)
    image_ids = sorted(image["id"] for image in annotations["images"])
    category_ids = [category["id"] for category in annotations["categories"]]
    saver_results, base_results = (load_results_columns(path, image_ids, category_ids) for path in (saver_json, base_json))
    n = len(image_ids)

    def model(name: str, results: ResultColumns, gflops: float) -> CachedModel:
        by_image = results.by_image(image_ids)
        return CachedModel(
            name, tuple(by_image[i] for i in image_ids), np.full(n, float(gflops)), np.full(n, np.nan), results
        )

    notes = [
        coverage_note(f"{name} json {path}", len(np.unique(results.image_ids)), n)
        for name, path, results in (("saver", saver_json, saver_results), ("base", base_json, base_results))
    ]
    return PredictionCache(
        load_ground_truth(annotations),
        [model("saver", saver_results, saver_gflops), model("base", base_results, base_gflops)],
        [note for note in notes if note],
    )


def evaluate_results_json(
    annotation_file: str | Path, results_json: str | Path, params: CocoParams | None = None
) -> dict[str, float]:
    """The 12 COCO bbox stats of one results json, equal to pycocotools' ``loadRes`` + ``COCOeval``.

    Raises:
        TinySaverInputError: a bad annotation file or results entry (``load_results_columns``).
    """
    annotations = load_annotation_json(annotation_file)
    category_ids = [category["id"] for category in annotations["categories"]]
    results = load_results_columns(results_json, [image["id"] for image in annotations["images"]], category_ids)
    return summarize(accumulate(evaluate_images(load_ground_truth(annotations), results, params)))


def split_image_ids(image_ids: Sequence[int], scheme: str = "parity", seed: int = 0) -> tuple[list[int], list[int]]:
    """A fixed calibration / held-out split of the images.

    * ``"parity"`` (default): odd image ids calibrate, even ids are held out.
    * ``"permutation"``: a seeded random half (the first ``ceil(N/2)`` of a permutation calibrate).

    >>> split_image_ids([1, 2, 3, 4, 5])
    ([1, 3, 5], [2, 4])
    """
    ids = sorted(int(i) for i in image_ids)
    if scheme == "parity":
        return [i for i in ids if i % 2], [i for i in ids if not i % 2]
    if scheme == "permutation":
        order = np.random.default_rng(seed).permutation(len(ids))
        half = (len(ids) + 1) // 2
        return sorted(ids[i] for i in order[:half]), sorted(ids[i] for i in order[half:])
    raise ValueError(f"unknown split {scheme!r}; choose one of {SPLITS}")


def load_cache(
    annotation_file: str | os.PathLike,
    predictions: Mapping[str, str | os.PathLike],
    image_ids: Sequence[int] | None = None,
) -> PredictionCache:
    """A :class:`PredictionCache` from a COCO annotation file and one predictions file per model (cheapest first).

    Args:
        annotation_file: COCO instances json.
        predictions: ``{name: path of a *_predictions.jsonl}``, in cascade order.
        image_ids: restrict to these images (a split); the evaluation is then that of a dataset made
            of them alone, as if the annotation file held only them.

    Raises:
        TinySaverInputError: a predictions file whose provenance records another annotation file
            (:func:`~tinysaver_det.detection.run_inputs.check_prediction_annotations`), or predictions
            made with different NMS modes (:func:`~tinysaver_det.detection.run_inputs.check_same_nms_mode`).
    """
    check_prediction_annotations(annotation_file, predictions)
    check_same_nms_mode({str(path): predictions_nms_mode(path) for path in predictions.values()})
    data = load_annotation_json(annotation_file)
    if image_ids is not None:
        data = restrict_annotations(data, image_ids)
    ground_truth = load_ground_truth(data)
    ids = list(ground_truth.image_ids)
    return PredictionCache(ground_truth, [read_cached_model(name, Path(path), ids) for name, path in predictions.items()])


def load_splits(
    annotation_file: str | os.PathLike,
    predictions: Mapping[str, str | os.PathLike],
    scheme: str = "parity",
    seed: int = 0,
) -> tuple[PredictionCache, PredictionCache]:
    """The calibration and held-out :class:`PredictionCache` of a dataset (:func:`split_image_ids`)."""
    image_ids = [int(i["id"]) for i in load_annotation_json(annotation_file)["images"]]
    calibration, held_out = split_image_ids(image_ids, scheme, seed)
    return load_cache(annotation_file, predictions, calibration), load_cache(annotation_file, predictions, held_out)
