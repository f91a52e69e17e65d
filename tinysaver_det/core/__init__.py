"""Task-agnostic cascade maths: numpy and the standard library only.

Nothing under ``tinysaver_det.core`` may import torch, Ultralytics or mmdet: classification and
detection plug into these functions with plain arrays, so the offline simulation (sweeps) and the
online cascade share one rule.
"""

from tinysaver_det.core.cost import expected_cost
from tinysaver_det.core.policy import (
    CONFIDENCE_FUNCTIONS,
    DEFAULT_MIN_SCORE,
    ExitPolicy,
    image_confidence,
    max_score,
    resolve_confidence,
    topk_mean_score,
)
from tinysaver_det.core.selection import (
    CandidateReport,
    RMatch,
    SaverCandidate,
    SelectionReport,
    delta_cost_tr,
    r_match,
    select_saver,
)
from tinysaver_det.core.summary import DEFAULT_MAX_DROPS, CostAtDrop, Table1Row, cost_at_drop, table1_row
from tinysaver_det.core.sweep import (
    PAPER_THRESHOLDS,
    SweepRow,
    SystemMetric,
    cascade_cost,
    default_thresholds,
    exit_masks,
    pareto_front,
    sweep,
)
from tinysaver_det.core.tables import Table, selection_table, sweep_table, table1_table, to_markdown, write_csv

__all__ = [
    "CONFIDENCE_FUNCTIONS",
    "DEFAULT_MAX_DROPS",
    "DEFAULT_MIN_SCORE",
    "PAPER_THRESHOLDS",
    "CandidateReport",
    "CostAtDrop",
    "ExitPolicy",
    "RMatch",
    "SaverCandidate",
    "SelectionReport",
    "SweepRow",
    "SystemMetric",
    "Table",
    "Table1Row",
    "cascade_cost",
    "cost_at_drop",
    "default_thresholds",
    "delta_cost_tr",
    "exit_masks",
    "expected_cost",
    "image_confidence",
    "max_score",
    "pareto_front",
    "r_match",
    "resolve_confidence",
    "select_saver",
    "selection_table",
    "sweep",
    "sweep_table",
    "table1_row",
    "table1_table",
    "to_markdown",
    "topk_mean_score",
    "write_csv",
]
