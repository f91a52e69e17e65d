"""Cached predictions of K detectors on the same images, evaluated once, for offline cascade studies.

A :class:`Ladder` holds, for each model (cheapest first), its per-image detections, GFLOPs and model
seconds (read from ``*_predictions.jsonl`` files: :func:`tinysaver_det.detection.run.predict_dataset`
or a ``--full`` cascade run), and its exact per-image COCO matching
(:func:`~tinysaver_det.detection.coco_eval.evaluate_images`), computed once. Any routing of the
images to the models is then scored without re-matching:

* :meth:`Ladder.pair_metric`: a saver/base pair as a ``core.sweep.SystemMetric`` (sweeps, ``r_match``);
* :meth:`Ladder.selection_metric`: K models as a ``core.multistage.SelectionMetric``;
* :meth:`Ladder.per_image_ap`: each image's own COCO AP under one model (the oracle's and the
  learned router's per-image quality).

Costs come in two units (:data:`COST_UNITS`): ``"GFLOPs"`` (counted, FLOPs = 2 * MACs) and ``"ms"``
(measured model milliseconds per image on the machine and batch size of the prediction run).

:func:`split_image_ids` gives the fixed calibration / held-out split used by the tools.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tinysaver_det import assets
from tinysaver_det.core.router import Router, router_confidences
from tinysaver_det.detection.coco_eval import (
    CocoCascadeMetric,
    CocoGroundTruth,
    PerImageEval,
    evaluate_images,
    load_ground_truth,
    summarize_selections,
)
from tinysaver_det.detection.dataset import load_annotation_json, restrict_annotations
from tinysaver_det.detection.run import read_predictions
from tinysaver_det.detection.types import Detections

#: Cost units of a ladder: counted GFLOPs per image, measured model milliseconds per image.
COST_UNITS = {"gflops": "GFLOPs", "latency": "ms"}

#: Ways :func:`split_image_ids` can split a dataset into calibration and held-out halves.
SPLITS = ("parity", "permutation")


@dataclass(frozen=True)
class ModelRecords:
    """One model's cached answers on a list of images.

    Attributes:
        name: how tables name it.
        detections: one :class:`Detections` per image, in the ladder's image order.
        gflops: (N,) GFLOPs per image.
        seconds: (N,) model seconds per image (the batch's time divided by its size).
    """

    name: str
    detections: tuple[Detections, ...]
    gflops: np.ndarray
    seconds: np.ndarray


def read_model_records(name: str, path: str | os.PathLike, image_ids: Sequence[int]) -> ModelRecords:
    """A model's records for ``image_ids`` from a ``*_predictions.jsonl`` file (every id must be there)."""
    by_id = read_predictions(path)
    missing = [i for i in image_ids if i not in by_id]
    if missing:
        raise ValueError(f"{path}: no predictions of {name!r} for {len(missing)} images, e.g. ids {missing[:5]}")
    outputs = [by_id[i] for i in image_ids]
    return ModelRecords(
        name,
        tuple(o.detections for o in outputs),
        np.array([o.gflops for o in outputs], dtype=np.float64),
        np.array([o.seconds for o in outputs], dtype=np.float64),
    )


class CocoSelectionMetric:
    """COCO bbox metrics of K models for any per-image choice of model (a ``core.multistage.SelectionMetric``).

    Args:
        evaluations: each model's :class:`~tinysaver_det.detection.coco_eval.PerImageEval`, cascade order.
    """

    primary = "AP"

    def __init__(self, evaluations: Sequence[PerImageEval]) -> None:
        self._evaluations = tuple(evaluations)
        self.n_models = len(self._evaluations)
        self.n_samples = len(self._evaluations[0].ground_truth.image_ids)

    def selected_many(self, stages: np.ndarray) -> list[dict[str, float]]:
        """The 12 COCO stats for each row of an ``(S, N)`` array of model indices."""
        stages = np.asarray(stages)
        if stages.ndim != 2 or stages.shape[1] != self.n_samples:
            raise ValueError(f"stages must have shape (S, {self.n_samples}), got {stages.shape}")
        one_hot = np.stack([stages == k for k in range(self.n_models)], axis=1)
        return summarize_selections(self._evaluations, one_hot)


class Ladder:
    """K models' cached predictions on the same images (cheapest first) and their COCO evaluation.

    Args:
        ground_truth: the images and annotations (:func:`~tinysaver_det.detection.coco_eval.load_ground_truth`).
        models: each model's :class:`ModelRecords` over ``ground_truth.image_ids``, cheapest first.
    """

    def __init__(self, ground_truth: CocoGroundTruth, models: Sequence[ModelRecords]) -> None:
        if len(models) < 1:
            raise ValueError("a ladder needs at least one model")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        self.ground_truth = ground_truth
        self.image_ids = np.asarray(ground_truth.image_ids, dtype=np.int64)
        for model in models:
            ids = [d.image_id for d in model.detections]
            if ids != self.image_ids.tolist():
                raise ValueError(f"{model.name}: records must follow the ground truth's image order")
        self.models = tuple(models)
        self.evaluations = tuple(evaluate_images(ground_truth, m.detections) for m in models)
        self._per_image_ap: dict[int, np.ndarray] = {}

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
            raise KeyError(f"no model {model!r} in the ladder; it has {list(self.names)}") from None

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
        """The 12 COCO stats of one model alone on every image."""
        k = self.index(model)
        return summarize_selections(self.evaluations[k], np.ones((1, self.n_images), dtype=bool))[0]

    def per_image_ap(self, model: str | int) -> np.ndarray:
        """``(N,)`` COCO AP of one model on each image evaluated alone; -1 on an image without ground truth."""
        k = self.index(model)
        if k not in self._per_image_ap:
            stats = summarize_selections(self.evaluations[k], np.eye(self.n_images, dtype=bool))
            self._per_image_ap[k] = np.array([s["AP"] for s in stats], dtype=np.float64)
        return self._per_image_ap[k].copy()

    def pair_metric(self, saver: str | int, base: str | int) -> CocoCascadeMetric:
        """The saver/base cascade's metric (exit mask True -> the saver's detections)."""
        return CocoCascadeMetric(self.evaluations[self.index(saver)], self.evaluations[self.index(base)])

    def selection_metric(self, models: Sequence[str | int] | None = None) -> CocoSelectionMetric:
        """The metric of a cascade through ``models`` (default: all, in order)."""
        indices = range(len(self.models)) if models is None else [self.index(m) for m in models]
        return CocoSelectionMetric([self.evaluations[k] for k in indices])

    def confidences(self, model: str | int, router: Router) -> np.ndarray:
        """``(N,)`` the router's confidence on each image's detections of ``model``."""
        return router_confidences(router, self.detections(model))


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


def load_ladder(
    annotation_file: str | os.PathLike,
    predictions: Mapping[str, str | os.PathLike],
    image_ids: Sequence[int] | None = None,
) -> Ladder:
    """A :class:`Ladder` from a COCO annotation file and one predictions file per model (cheapest first).

    Args:
        annotation_file: COCO instances json.
        predictions: ``{name: path of a *_predictions.jsonl}``, in cascade order.
        image_ids: restrict to these images (a split); the evaluation is then that of a dataset made
            of them alone, as if the annotation file held only them.
    """
    data = load_annotation_json(annotation_file)
    if image_ids is not None:
        data = restrict_annotations(data, image_ids)
    ground_truth = load_ground_truth(data)
    ids = list(ground_truth.image_ids)
    return Ladder(ground_truth, [read_model_records(name, Path(path), ids) for name, path in predictions.items()])


#: Where ``tools/predict_coco.py`` writes the demo ladder's records by default (see its docstring).
DEMO_RECORDS = "runs/demo"


def parse_model_specs(specs: Sequence[str] | None, default_names: Sequence[str] = ("pico", "n", "s"),
                      default_dir: str | os.PathLike = DEMO_RECORDS) -> dict[str, Path]:
    """``["name=path.jsonl", ...]`` -> ``{name: path}`` in the given order; None -> the demo ladder's records.

    >>> parse_model_specs(["tiny=a.jsonl", "big=b.jsonl"])
    {'tiny': PosixPath('a.jsonl'), 'big': PosixPath('b.jsonl')}
    >>> list(parse_model_specs(None))
    ['pico', 'n', 's']
    """
    if not specs:
        return {name: Path(default_dir) / f"{name}_predictions.jsonl" for name in default_names}
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"a model is given as NAME=PREDICTIONS.jsonl, got {spec!r}")
        if name in models:
            raise ValueError(f"model {name!r} is given twice")
        models[name] = Path(path)
    return models


def load_splits(
    annotation_file: str | os.PathLike,
    predictions: Mapping[str, str | os.PathLike],
    scheme: str = "parity",
    seed: int = 0,
) -> tuple[Ladder, Ladder]:
    """The calibration and held-out :class:`Ladder` of a dataset (:func:`split_image_ids`)."""
    image_ids = [int(i["id"]) for i in load_annotation_json(annotation_file)["images"]]
    calibration, held_out = split_image_ids(image_ids, scheme, seed)
    return load_ladder(annotation_file, predictions, calibration), load_ladder(annotation_file, predictions, held_out)


def add_ladder_arguments(
    parser, cost_help: str = "cost: counted GFLOPs (default) or measured latency (ms per image)"
) -> None:
    """The dataset, models, split and cost options shared by the ladder tools (``tools/*.py``)."""
    parser.add_argument("--ann", help="COCO annotation json; default: demo val annotations")
    parser.add_argument("--model", action="append", metavar="NAME=PREDICTIONS.jsonl",
                        help=f"a model's cached predictions, cheapest first (repeat); default: {DEMO_RECORDS} "
                             "pico, n, s")
    parser.add_argument("--split", choices=SPLITS, default="parity",
                        help="calibration/held-out split: parity (odd ids calibrate; default) or a seeded permutation")
    parser.add_argument("--seed", type=int, default=0, help="seed of --split permutation")
    parser.add_argument("--cost", choices=sorted(COST_UNITS), default="gflops", help=cost_help)


def ladder_inputs(args) -> tuple[Path, dict[str, Path]]:
    """The annotation file and ``{name: predictions file}`` named by :func:`add_ladder_arguments`' options."""
    return Path(args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS)), parse_model_specs(args.model)
