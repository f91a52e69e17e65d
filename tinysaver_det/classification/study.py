"""The classification study of the paper: choose a saver on the training split, report it on the test split.

Used by ``tools/select_saver.py`` and ``examples/digits_tinysaver.py``; both only load or make the
records and call :func:`study_savers`, so the selection rule and the tables live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tinysaver_det.classification.metric import AccuracyMetric
from tinysaver_det.classification.records import ClassifierRecord
from tinysaver_det.core.selection import SaverCandidate, SelectionReport, select_saver
from tinysaver_det.core.summary import TABLE1_MAX_DROPS, Table1Row, table1_row
from tinysaver_det.core.cascade_model import StageRow, default_thresholds, sweep
from tinysaver_det.core.tables import selection_table, sweep_table, table1_table, to_markdown, write_csv


@dataclass(frozen=True)
class ModelRecords:
    """One classifier's records on both splits and its cost per sample.

    Attributes:
        name: how the tables name it.
        cost: cost of one forward pass of one sample (e.g. FLOPs, FLOPs = 2 * MACs).
        train: records on the split used to choose the saver.
        test: records on the split the tables report.
    """

    name: str
    cost: float
    train: ClassifierRecord
    test: ClassifierRecord


@dataclass(frozen=True)
class SaverStudy:
    """Selection on the training split and the sweeps and Table 1 of every candidate on the test split.

    Attributes:
        base: the base model's name.
        selection: Table 2, from the training split.
        sweeps: per saver name, its cascade with the base at every threshold of the test split.
        table1: per saver name, Table 1 columns read from its test sweep.
    """

    base: str
    selection: SelectionReport
    sweeps: dict[str, list[StageRow]]
    table1: dict[str, Table1Row]


def study_savers(
    base: ModelRecords,
    savers: Sequence[ModelRecords],
    thresholds=None,
    max_drops: Sequence[float] = TABLE1_MAX_DROPS,
) -> SaverStudy:
    """Choose the saver with the lowest ``dC_tr`` on the training split, then sweep every candidate on the test split.

    ``r_match`` is exact (every distinct training confidence is a cut point); the test sweeps use
    ``thresholds`` (:func:`~tinysaver_det.core.cascade_model.default_thresholds` when None).

    >>> import numpy as np
    >>> labels = np.array([0, 1, 0, 1])
    >>> split = lambda conf, pred: ClassifierRecord(conf, pred, labels)
    >>> base = ModelRecords("big", 10.0, split([0.9] * 4, labels), split([0.9] * 4, labels))
    >>> tiny = ModelRecords("tiny", 1.0, split([0.9, 0.8, 0.6, 0.3], [0, 1, 1, 1]),
    ...                     split([0.9, 0.8, 0.6, 0.3], [0, 1, 1, 1]))
    >>> study = study_savers(base, [tiny])
    >>> study.selection.chosen, study.selection.chosen_report.r_match, study.table1["tiny"].at_drop[-1].cost
    ('tiny', 0.5, 6.0)
    """
    candidates = [
        SaverCandidate(s.name, s.train.confidences, AccuracyMetric.from_records(s.train, base.train), s.cost)
        for s in savers
    ]
    selection = select_saver(candidates, base.cost)
    grid = default_thresholds() if thresholds is None else thresholds
    sweeps, table1 = {}, {}
    for saver in savers:
        metric = AccuracyMetric.from_records(saver.test, base.test)
        sweeps[saver.name] = sweep(saver.test.confidences, grid, metric, saver.cost, base.cost)
        table1[saver.name] = table1_row(sweeps[saver.name], metric.primary, base.test.accuracy, base.cost, max_drops)
    return SaverStudy(base.name, selection, sweeps, table1)


def study_markdown(study: SaverStudy, cost_label: str = "cost", note: str | None = None, digits: int = 4) -> str:
    """Table 2 (training split) and Table 1 (test split, costs relative to the base) as markdown, each followed by ``note``.

    The CSV files of :func:`write_study_csv` also hold the absolute costs and the thresholds.
    """
    return "\n".join(
        [
            f"## Saver selection for base {study.base!r} (training split, Table 2)",
            "",
            to_markdown(selection_table(study.selection, cost_label, note), digits),
            "",
            f"## Cascades with base {study.base!r} (test split, Table 1; drops in absolute points of top-1)",
            "",
            to_markdown(table1_table(study.table1, cost_label, note, detailed=False), digits),
        ]
    )


def write_study_csv(study: SaverStudy, out_dir, cost_label: str = "cost") -> list[Path]:
    """Write ``selection.csv``, ``table1.csv`` and one ``sweep_<saver>.csv`` per candidate into ``out_dir``."""
    out = Path(out_dir)
    paths = [
        write_csv(selection_table(study.selection, cost_label), out / "selection.csv"),
        write_csv(table1_table(study.table1, cost_label), out / "table1.csv"),
    ]
    paths += [write_csv(sweep_table(rows, cost_label), out / f"sweep_{name}.csv") for name, rows in study.sweeps.items()]
    return paths
