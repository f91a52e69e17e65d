"""Classification plug-in: the same cascade for classifiers (numpy only).

A classifier's confidence is its top-1 softmax probability and the system metric is top-1
accuracy (:class:`AccuracyMetric`); the sweep, cost model and saver selection are the task-agnostic
ones of :mod:`tinysaver_det.core`.
"""

from tinysaver_det.classification.metric import AccuracyMetric
from tinysaver_det.classification.records import (
    ClassifierRecord,
    RecordFormatError,
    load_authors_record,
    load_record,
    load_scores,
    save_authors_record,
    scores_to_probabilities,
    softmax,
)
from tinysaver_det.classification.study import (
    ModelRecords,
    SaverStudy,
    study_markdown,
    study_savers,
    write_study_csv,
)

__all__ = [
    "AccuracyMetric",
    "ClassifierRecord",
    "ModelRecords",
    "RecordFormatError",
    "SaverStudy",
    "load_authors_record",
    "load_record",
    "load_scores",
    "save_authors_record",
    "scores_to_probabilities",
    "softmax",
    "study_markdown",
    "study_savers",
    "write_study_csv",
]
