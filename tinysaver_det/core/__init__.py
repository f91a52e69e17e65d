"""Task-agnostic cascade maths: numpy and the standard library only.

Nothing under ``tinysaver_det.core`` may import torch, Ultralytics or mmdet: classification and
detection plug into these functions with plain arrays, so the offline simulation (sweeps) and the
online cascade share one rule.
"""

from tinysaver_det.core.cascade_model import (
    COST,
    DEFERRED,
    PAPER_THRESHOLDS,
    SelectionMetric,
    StageRow,
    default_thresholds,
    multistage_cost,
    multistage_sweep,
    pareto_front,
    stage_front,
    stage_indices,
    stage_indices_many,
    sweep,
    threshold_grid,
)
from tinysaver_det.core.cost import FLOPS_CONVENTION, expected_cost
from tinysaver_det.core.picker import TOLERANCE, Target, TargetPick, held_out_gap, pick
from tinysaver_det.core.policy import (
    CONFIDENCE_FUNCTIONS,
    DEFAULT_MIN_SCORE,
    ExitPolicy,
    correctly_rounded_mean,
    entropy_confidence,
    high_score_share,
    image_confidence,
    max_score,
    resolve_confidence,
    stage_policies,
    topk_mean_score,
)
from tinysaver_det.core.score_routers import Router, ScoreRouter, router_confidences, score_router
from tinysaver_det.core.selection import (
    CandidateReport,
    RMatch,
    SaverCandidate,
    SelectionReport,
    delta_cost_tr,
    r_match,
    select_saver,
)
from tinysaver_det.core.summary import TABLE1_MAX_DROPS, CostAtDrop, Table1Row, cost_at_drop, table1_row
from tinysaver_det.core.tables import Table, selection_table, sweep_table, table1_table, to_markdown, write_csv

__all__ = [
    "COST",
    "DEFERRED",
    "FLOPS_CONVENTION",
    "TOLERANCE",
    "CONFIDENCE_FUNCTIONS",
    "TABLE1_MAX_DROPS",
    "DEFAULT_MIN_SCORE",
    "PAPER_THRESHOLDS",
    "CandidateReport",
    "CostAtDrop",
    "ExitPolicy",
    "RMatch",
    "Router",
    "SaverCandidate",
    "ScoreRouter",
    "SelectionMetric",
    "SelectionReport",
    "StageRow",
    "Table",
    "Table1Row",
    "Target",
    "TargetPick",
    "correctly_rounded_mean",
    "cost_at_drop",
    "default_thresholds",
    "delta_cost_tr",
    "entropy_confidence",
    "expected_cost",
    "held_out_gap",
    "high_score_share",
    "image_confidence",
    "max_score",
    "multistage_cost",
    "multistage_sweep",
    "pareto_front",
    "pick",
    "r_match",
    "resolve_confidence",
    "router_confidences",
    "score_router",
    "select_saver",
    "selection_table",
    "stage_front",
    "stage_policies",
    "stage_indices",
    "stage_indices_many",
    "sweep",
    "sweep_table",
    "table1_row",
    "table1_table",
    "threshold_grid",
    "to_markdown",
    "topk_mean_score",
    "write_csv",
]
