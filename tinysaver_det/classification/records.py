"""Per-sample records of a classifier (top-1 prediction, its max-softmax confidence, the label), and files.

The confidence of a classifier is its top-1 softmax probability (the paper's rule for
classification). Two file formats are read:

* **the authors' records**, as TinySaver's ``exit_estimation.py`` writes and reads them
  (``OutputRecorder.save``): an npz with ``confs`` (E, N, k) float32, ``preds`` (E, N, k) int16,
  the top-k of the softmax per head (``E = 1`` for a standalone model), and ``label`` (N, 1) int16.
  The top-1 prediction is ``preds[0, :, 0]`` and its confidence ``confs[0, :, 0]``; ``confs`` of
  shape (N,) or (1, N) is accepted too. Multi-head records are read at head 0, as their script does.
* **plain scores**: an npz with a (N, C) ``probs``/``probabilities``/``logits``/``scores`` array
  and ``labels``/``label``/``targets``, or a CSV with a ``label`` column and one column per class.
  Logits are turned into probabilities by a softmax; ``kind="auto"`` decides per file (see
  :func:`scores_to_probabilities`).

Numpy and the standard library only.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysaver_det.errors import TinySaverInputError

AUTHORS_ARRAYS = ("confs", "preds", "label")
_SCORE_KEYS = ("probs", "probabilities", "logits", "scores")
_LABEL_KEYS = ("labels", "label", "targets")
_KINDS = ("auto", "probs", "logits")
_INT16_MAX = np.iinfo(np.int16).max


class RecordFormatError(TinySaverInputError):
    """A record file is missing an array or holds one of the wrong shape; the message names both."""


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, computed stably (the row maximum is subtracted first).

    >>> softmax([[0.0, 0.0], [0.0, np.log(3.0)]]).round(3).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    """
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def scores_to_probabilities(scores, kind: str = "auto") -> np.ndarray:
    """(N, C) class probabilities from probabilities or logits.

    ``kind="auto"`` takes the scores as probabilities when every value is in [0, 1] and every row sums
    to 1 within 1e-3 (room for values rounded in a CSV), and as logits otherwise; pass ``kind``
    explicitly when logits could look like probabilities.

    >>> scores_to_probabilities([[0.2, 0.8]]).tolist()
    [[0.2, 0.8]]
    >>> scores_to_probabilities([[0.0, np.log(3.0)]]).round(3).tolist()
    [[0.25, 0.75]]
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"scores must have shape (N, C) with C >= 2 classes, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN or infinite values")
    if kind == "auto":
        looks_like_probs = values.min() >= 0 and values.max() <= 1 and np.allclose(values.sum(axis=1), 1, atol=1e-3)
        kind = "probs" if looks_like_probs else "logits"
    return values if kind == "probs" else softmax(values)


@dataclass(frozen=True)
class ClassifierRecord:
    """What a cascade needs from one classifier on N samples, aligned by sample.

    Attributes:
        confidences: (N,) float64, the top-1 softmax probability.
        predictions: (N,) int64, the top-1 class.
        labels: (N,) int64, the true class.
    """

    confidences: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        conf = np.asarray(self.confidences, dtype=np.float64).reshape(-1)
        preds = np.asarray(self.predictions, dtype=np.int64).reshape(-1)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not len(conf) == len(preds) == len(labels):
            raise ValueError(
                f"{len(conf)} confidences, {len(preds)} predictions and {len(labels)} labels must have the same length"
            )
        object.__setattr__(self, "confidences", conf)
        object.__setattr__(self, "predictions", preds)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> np.ndarray:
        """(N,) bool, top-1 correctness."""
        return self.predictions == self.labels

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy, a fraction."""
        return float(self.correct.mean())

    @classmethod
    def from_probabilities(cls, probabilities, labels) -> "ClassifierRecord":
        """Top-1 class and its probability (max softmax) per row; ties go to the lower class index.

        >>> record = ClassifierRecord.from_probabilities([[0.1, 0.9], [0.7, 0.3]], [1, 1])
        >>> record.confidences.tolist(), record.correct.tolist()
        ([0.9, 0.7], [True, False])
        """
        probs = np.asarray(probabilities, dtype=np.float64)
        return cls(probs.max(axis=1), probs.argmax(axis=1), labels)


def _fail(path, message: str):
    raise RecordFormatError(f"{path}: {message}")


def _open_npz(path):
    """``np.load(path)`` of a record: a file numpy cannot read as an npz (empty, cut short, another format)
    is a :class:`RecordFormatError` naming it, not numpy's ``EOFError`` or ``BadZipFile``."""
    try:
        data = np.load(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        _fail(path, f"not a readable .npz file ({error})")
    if not isinstance(data, np.lib.npyio.NpzFile):
        _fail(path, "holds one array, not the named arrays of an .npz record")
    return data


def _authors_confidences(confs: np.ndarray, n: int, path) -> np.ndarray:
    if confs.ndim == 1:
        top1 = confs
    elif confs.ndim == 2:
        top1 = confs[0]
    elif confs.ndim == 3:
        top1 = confs[0, :, 0]
    else:
        top1 = None
    if top1 is None or top1.shape != (n,):
        _fail(path, f"array 'confs' has shape {confs.shape}; expected (E, {n}, k), (1, {n}) or ({n},) to match 'preds'")
    return top1


def load_authors_record(path) -> ClassifierRecord:
    """Read an npz in the authors' format (``confs``, ``preds``, ``label``; see the module docstring).

    The optional pickled ``meta_info`` array is never loaded, so the file is read without
    ``allow_pickle``.
    """
    with _open_npz(path) as data:
        missing = [name for name in AUTHORS_ARRAYS if name not in data.files]
        if missing:
            _fail(path, f"missing array(s) {missing} of the authors' record format (has {sorted(data.files)})")
        confs, preds, label = (np.asarray(data[name]) for name in AUTHORS_ARRAYS)
    if preds.ndim != 3:
        _fail(path, f"array 'preds' has shape {preds.shape}; expected (E, N, k) with the top-1 at preds[0, :, 0]")
    top1 = preds[0, :, 0]
    label = label.reshape(-1)
    if label.shape != top1.shape:
        _fail(path, f"array 'label' has {label.size} values but 'preds' has {top1.size} samples")
    return ClassifierRecord(_authors_confidences(confs, len(top1), path), top1, label)


def save_authors_record(path, probabilities, labels, topk: int = 1) -> Path:
    """Write probabilities and labels in the authors' format, readable by their ``exit_estimation.py``.

    ``confs``/``preds`` get shape (1, N, topk) (one head, classes by falling probability) as float32
    and int16, ``label`` shape (N, 1) int16, exactly as their ``OutputRecorder.save`` writes them.

    Returns:
        The path written (numpy adds ``.npz`` when missing).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probabilities must have shape (N, C) with N = {len(labels)} labels, got {probs.shape}")
    if not 1 <= topk <= probs.shape[1]:
        raise ValueError(f"topk must be in 1..{probs.shape[1]} (the number of classes), got {topk!r}")
    if probs.shape[1] - 1 > _INT16_MAX or (labels.size and labels.max() > _INT16_MAX):
        raise ValueError(f"the authors' format stores classes as int16; class ids above {_INT16_MAX} do not fit")
    order = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        label=labels.astype(np.int16).reshape(-1, 1),
        confs=np.take_along_axis(probs, order, axis=1).astype(np.float32)[None],
        preds=order.astype(np.int16)[None],
    )
    return path


def _pick(path, files, wanted: str | None, candidates: tuple[str, ...], what: str) -> str:
    if wanted is not None:
        if wanted not in files:
            _fail(path, f"no array {wanted!r} for the {what} (has {sorted(files)})")
        return wanted
    for name in candidates:
        if name in files:
            return name
    _fail(path, f"no {what} array: expected one of {list(candidates)} (has {sorted(files)})")


def _read_csv(path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or label_column not in header:
            _fail(path, f"no {label_column!r} column in the CSV header {header}")
        rows = [row for row in reader if row]
    where = header.index(label_column)
    try:
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    except ValueError as error:
        _fail(path, f"every cell must be a number and every row have {len(header)} cells ({error})")
    return np.delete(table, where, axis=1), table[:, where]


def load_scores(
    path, kind: str = "auto", scores_key: str | None = None, labels_key: str | None = None, label_column: str = "label"
) -> ClassifierRecord:
    """Read per-class probabilities or logits with labels from an npz or a CSV (see the module docstring).

    Args:
        path: ``.npz`` or ``.csv``.
        kind: ``"probs"``, ``"logits"`` or ``"auto"`` (see :func:`scores_to_probabilities`).
        scores_key: npz array of (N, C) scores; default the first of probs, probabilities, logits, scores.
        labels_key: npz array of (N,) labels; default the first of labels, label, targets.
        label_column: CSV column holding the label; every other column is a class score, in order.
    """
    path = Path(path)
    if path.suffix == ".csv":
        scores, labels = _read_csv(path, label_column)
        if labels.size and not np.array_equal(labels, np.round(labels)):
            _fail(path, f"column {label_column!r} must hold integer class ids")
    elif path.suffix == ".npz":
        with _open_npz(path) as data:
            scores = np.asarray(data[_pick(path, data.files, scores_key, _SCORE_KEYS, "scores")])
            labels = np.asarray(data[_pick(path, data.files, labels_key, _LABEL_KEYS, "labels")]).reshape(-1)
    else:
        _fail(path, "unknown record type: expected a .npz or .csv file")
    if scores.ndim != 2 or len(scores) != len(labels):
        _fail(path, f"scores have shape {scores.shape} but there are {len(labels)} labels; expected (N, C)")
    try:
        probs = scores_to_probabilities(scores, kind)
    except ValueError as error:
        _fail(path, str(error))
    return ClassifierRecord.from_probabilities(probs, labels)


def load_record(path, kind: str = "auto") -> ClassifierRecord:
    """Read a record in either format: the authors' npz when it has ``confs``, ``preds`` and ``label``,
    plain scores otherwise (``kind`` applies to plain scores only).
    """
    path = Path(path)
    if path.suffix == ".npz":
        with _open_npz(path) as data:
            authors = all(name in data.files for name in AUTHORS_ARRAYS)
        if authors:
            return load_authors_record(path)
    return load_scores(path, kind=kind)
