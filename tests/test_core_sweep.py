"""The task-agnostic sweep, r_match, Table 1, Pareto front, selection and tables, against hand-computed values."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinysaver_det.classification import AccuracyMetric
from tinysaver_det.core import (
    TABLE1_MAX_DROPS,
    PAPER_THRESHOLDS,
    ExitPolicy,
    SaverCandidate,
    SelectionMetric,
    StageRow,
    cost_at_drop,
    default_thresholds,
    delta_cost_tr,
    expected_cost,
    multistage_cost,
    pareto_front,
    r_match,
    select_saver,
    selection_table,
    stage_indices_many,
    sweep,
    sweep_table,
    table1_row,
    table1_table,
    to_markdown,
    write_csv,
)

# Ten samples written out by hand. Samples 1 and 2 tie at 0.90; sample 9 has confidence 0.0.
CONF = np.array([0.95, 0.90, 0.90, 0.80, 0.70, 0.60, 0.50, 0.40, 0.30, 0.00])
SAVER_OK = np.array([1, 1, 1, 0, 1, 0, 1, 0, 0, 0], dtype=bool)  # 5/10
BASE_OK = np.array([1, 1, 1, 1, 0, 1, 1, 0, 1, 1], dtype=bool)  # 8/10
C_S, C_B = 1.0, 10.0

# Exit set by threshold range (conf >= t), worked out by hand:
#   t in       exits      saver right  base right on the rest  top1  r    cost = 1 + (1 - r) * 10
#   (0.95, 1]  {}         0            8                       0.8   0.0  11
#   (0.90, .95] {0}        1            7                       0.8   0.1  10
#   (0.80, .90] {0,1,2}    3            5                       0.8   0.3   8
#   (0.70, .80] {0..3}     3            4                       0.7   0.4   7
#   (0.60, .70] {0..4}     4            4                       0.8   0.5   6
#   (0.50, .60] {0..5}     4            3                       0.7   0.6   5
#   (0.40, .50] {0..6}     5            2                       0.7   0.7   4
#   (0.30, .40] {0..7}     5            2                       0.7   0.8   3
#   (0.00, .30] {0..8}     5            1                       0.6   0.9   2
#   0          all        5            0                       0.5   1.0   1
HAND = {1.0: (0.0, 11.0, 0.8), 0.95: (0.1, 10.0, 0.8), 0.9: (0.3, 8.0, 0.8), 0.8: (0.4, 7.0, 0.7),
        0.7: (0.5, 6.0, 0.8), 0.6: (0.6, 5.0, 0.7), 0.31: (0.8, 3.0, 0.7), 0.3: (0.9, 2.0, 0.6),
        0.0: (1.0, 1.0, 0.5)}  # fmt: skip


def row(threshold, exit_ratio, cost, metrics):
    """A two-model sweep row."""
    return StageRow((threshold,), (exit_ratio, 1 - exit_ratio), {"cost": cost}, metrics)


def exit_masks(confidences, thresholds):
    """The saver's exits at each threshold: stage 0 of the one K-stage rule."""
    return stage_indices_many(np.asarray(confidences, dtype=float)[None], np.asarray(thresholds)[:, None]) == 0


@pytest.fixture
def metric():
    return AccuracyMetric(SAVER_OK, BASE_OK)


def test_accuracy_metric_is_a_selection_metric(metric):
    assert isinstance(metric, SelectionMetric)
    assert metric.primary == "top1" and metric.n_samples == 10 and metric.n_models == 2


def test_sweep_matches_hand_computed_rows(metric):
    rows = {row.threshold: row for row in sweep(CONF, default_thresholds(), metric, C_S, C_B)}
    for threshold, (ratio, cost, top1) in HAND.items():
        row = rows[threshold]
        assert row.exit_ratio == pytest.approx(ratio), threshold
        assert row.cost == pytest.approx(cost), threshold
        assert row.metrics == {"top1": pytest.approx(top1)}, threshold


def test_r_match_is_the_largest_matching_ratio_with_ties_exiting_together(metric):
    result = r_match(CONF, metric)
    # Subsets conf >= t: {0} 1 vs 1, {0,1,2} 3 vs 3, {0..3} 3 vs 4 (dip), {0..4} 4 vs 4 (matches again), then worse.
    assert result.r_match == pytest.approx(0.5)
    assert result.threshold == 0.70
    np.testing.assert_allclose(result.thresholds, [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0])
    np.testing.assert_allclose(result.exit_ratios, [0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(result.saver, [1, 1, 3 / 4, 4 / 5, 4 / 6, 5 / 7, 5 / 8, 5 / 9, 5 / 10])
    np.testing.assert_allclose(result.base, [1, 1, 4 / 4, 4 / 5, 5 / 6, 6 / 7, 6 / 8, 7 / 9, 8 / 10])


def test_r_match_on_a_grid_and_when_nothing_matches(metric):
    on_grid = r_match(CONF, metric, thresholds=[2.0, 0.92, 0.85, 0.5])
    # 2.0 exits nobody (left out of the curve); 0.92 -> {0}, 0.85 -> {0,1,2}, 0.5 -> {0..6} (5 vs 6).
    np.testing.assert_allclose(on_grid.thresholds, [0.92, 0.85, 0.5])
    assert on_grid.r_match == pytest.approx(0.3) and on_grid.threshold == 0.85

    never = r_match(CONF, AccuracyMetric(np.zeros(10, bool), np.ones(10, bool)))
    assert never.r_match == 0.0 and never.threshold is None
    assert len(never.exit_ratios) == 9  # r = 0 (empty subset) is never a curve point


def test_table1_columns_match_hand_values(metric):
    rows = sweep(CONF, default_thresholds(), metric, C_S, C_B)
    base_top1 = metric.routed(np.zeros(10, bool))["top1"]
    assert base_top1 == pytest.approx(0.8)
    row = table1_row(rows, "top1", base_top1, C_B, max_drops=(*TABLE1_MAX_DROPS, 0.1, 0.2, 0.3))
    # Within 1, 0.5, 0.01 and 0 points of 0.8 only top1 = 0.8 qualifies; the cheapest is r = 0.5
    # (cost 6), first reached at t = 0.61. Ten points: cost 3 (t = 0.31); twenty: 2 (t = 0.01); thirty: 1 (t = 0).
    expected = [(6.0, 0.61)] * 4 + [(3.0, 0.31), (2.0, 0.01), (1.0, 0.0)]
    assert [(p.cost, p.threshold) for p in row.at_drop] == [(pytest.approx(c), t) for c, t in expected]
    assert [p.relative_cost for p in row.at_drop] == [pytest.approx(c / C_B) for c, _ in expected]
    assert row.best.performance == pytest.approx(0.8) and row.best.cost == pytest.approx(6.0)
    assert row.best.threshold == 0.61 and row.best.max_drop == pytest.approx(0.0)
    assert (row.base_performance, row.base_cost) == (pytest.approx(0.8), C_B)


def test_cost_at_drop_is_absolute_points_and_none_when_unreached():
    rows = [row(0.5, 0.9, 2.0, {"AP": 0.40}), row(0.8, 0.5, 6.0, {"AP": 0.45})]
    # base 0.45: one point allows 0.44 (absolute), which 0.40 misses; a relative 1% would allow 0.4455.
    assert cost_at_drop(rows, "AP", 0.45, 10.0, 0.01).cost == 6.0
    assert cost_at_drop(rows, "AP", 0.45, 10.0, 0.05).cost == 2.0
    unreached = cost_at_drop(rows, "AP", 0.46, 10.0, 0.0)
    assert (unreached.cost, unreached.relative_cost, unreached.threshold) == (None, None, None)
    # Float rounding in base - drop (0.95 - 0.01 = 0.9399999999999999) must not exclude 0.94.
    assert cost_at_drop([row(0.5, 0.5, 1.0, {"top1": 0.94})], "top1", 0.95, 2.0, 0.01).cost == 1.0


def test_exit_masks_ties_and_zero_confidence_use_the_policy():
    conf = [0.0, 0.3, 0.3, 1.0]
    thresholds = [0.0, 0.01, 0.3, 1.0, 1.5]
    masks = exit_masks(conf, thresholds)
    assert masks.shape == (5, 4) and masks.dtype == bool
    assert masks.astype(int).tolist() == [[1, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    for row, t in zip(masks, thresholds):
        np.testing.assert_array_equal(row, ExitPolicy(t).exits(np.asarray(conf)))
    # The empty-box image (confidence 0.0) exits only at t = 0.
    assert masks[:, 0].tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="threshold"):
        exit_masks(conf, [-0.1])
    with pytest.raises(ValueError, match="NaN"):
        exit_masks([0.5, float("nan")], [0.5])


def cascade_cost(exit_mask, cost_saver, cost_base):
    """The two-model cost: stage 0 where the sample exits, stage 1 elsewhere."""
    return multistage_cost(np.where(exit_mask, 0, 1), [cost_saver, cost_base])


def test_cascade_cost_with_per_sample_costs():
    mask = np.array([True, False, True, False])
    saver, base = np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 30.0, 40.0])
    assert cascade_cost(mask, saver, base) == pytest.approx(2.5 + (20 + 40) / 4)
    masks = np.array([[True] * 4, [False] * 4, mask])
    np.testing.assert_allclose(cascade_cost(masks, saver, base), [2.5, 2.5 + 25.0, 17.5])
    with pytest.raises(ValueError, match="cost of model 1"):
        cascade_cost(mask, saver, base[:3])


def test_cascade_cost_with_scalars_is_expected_cost_exactly():
    masks = np.random.default_rng(0).random((20, 7)) < 0.5
    np.testing.assert_array_equal(cascade_cost(masks, 0.1, 7.3), expected_cost(masks.mean(axis=1), 0.1, 7.3))


def test_sweep_checks_the_metric_size(metric):
    with pytest.raises(ValueError, match="10 samples"):
        sweep(CONF[:5], [0.5], metric, C_S, C_B)


def test_default_thresholds_grid():
    grid = default_thresholds()
    assert grid.tolist() == [k / 100 for k in range(101)]
    assert all(t in grid.tolist() for t in PAPER_THRESHOLDS)
    coarse = default_thresholds(10).tolist()
    assert coarse == sorted(set(coarse)) and set(PAPER_THRESHOLDS) <= set(coarse) and len(coarse) == 16


def test_pareto_front_ties_and_nan():
    costs = [5.0, 1.0, 2.0, 2.0, 1.0, 3.0, float("nan"), 4.0]
    perfs = [0.9, 0.5, 0.8, 0.7, 0.5, 0.8, 1.0, 0.95]
    # 1 and 4 are identical (keep the first); 3 loses to 2 at equal cost; 5 ties 2 in performance at a
    # higher cost (dominated); 6 is NaN; 0 is beaten by 7 (cheaper and better).
    assert pareto_front(costs, perfs).tolist() == [1, 2, 7]
    assert pareto_front([], []).tolist() == []


def test_selection_picks_the_lowest_delta_cost_tr():
    base_ok = np.ones(8, bool)
    conf = np.linspace(0.95, 0.25, 8)  # distinct, falling: the top-k samples exit first
    pool = {
        # cheapest, but wrong from the 2nd sample on: r_match = 1/8, dC = 0.01 - 0.125
        "tiny": (1.0, [1, 0, 1, 1, 1, 1, 1, 1]),
        # right on the top 6: r_match = 6/8, dC = 0.2 - 0.75 = -0.55 (the answer)
        "small": (20.0, [1, 1, 1, 1, 1, 1, 0, 0]),
        # always right but as costly as the base: r_match = 1, dC = 1 - 1 = 0
        "big": (100.0, [1] * 8),
    }
    candidates = [SaverCandidate(n, conf, AccuracyMetric(ok, base_ok), c) for n, (c, ok) in pool.items()]
    report = select_saver(candidates, 100.0)
    assert report.chosen == "small"
    by_name = {c.name: c for c in report.candidates}
    assert by_name["tiny"].r_match == pytest.approx(1 / 8)
    assert by_name["small"].r_match == pytest.approx(6 / 8) and by_name["small"].threshold == pytest.approx(conf[5])
    assert by_name["big"].r_match == 1.0
    expected = {"tiny": 0.01 - 1 / 8, "small": 0.2 - 0.75, "big": 0.0}
    assert {n: c.delta_cost_tr for n, c in by_name.items()} == pytest.approx(expected)
    assert report.chosen_report.relative_cost == pytest.approx(0.2)
    assert delta_cost_tr(0.75, 20.0, 100.0) == pytest.approx(-0.55)
    with pytest.raises(ValueError, match="unique"):
        select_saver(candidates + candidates[:1], 100.0)


def test_tables_markdown_and_csv_hold_the_same_columns(tmp_path, metric):
    rows = sweep(CONF, [0.0, 0.7], metric, C_S, C_B)
    table = sweep_table(rows, cost_label="GFLOPs", note="FLOPs = 2 * MACs")
    text = to_markdown(table)
    assert text.splitlines()[0] == "| threshold | exit_ratio | GFLOPs | top1 |"
    assert text.splitlines()[-1] == "FLOPs = 2 * MACs"
    with write_csv(table, tmp_path / "sweep.csv").open() as handle:
        written = list(csv.reader(handle))
    assert written[0] == list(table.header)
    assert [float(v) for v in written[2]] == [0.7, 0.5, 6.0, pytest.approx(0.8)]

    t1 = table1_row(rows, "top1", 0.8, C_B, max_drops=(0.01, 0.0001))
    full = table1_table({"tiny": t1})
    short = table1_table({"tiny": t1}, detailed=False)
    assert len(full.header) == 3 + 2 * 3 + 1 + 3 and len(short.header) == 3 + 2 + 2
    assert "drop<=0.01pt" in " ".join(short.header)
    none_row = table1_row([row(0.5, 1.0, 1.0, {"top1": 0.1})], "top1", 0.8, C_B, max_drops=(0.0,))
    assert "| - |" in to_markdown(table1_table({"bad": none_row}, detailed=False))
    with write_csv(table1_table({"bad": none_row}), tmp_path / "t1.csv").open() as handle:
        assert list(csv.reader(handle))[1][3:6] == ["", "", ""]

    report = select_saver([SaverCandidate("tiny", CONF, metric, C_S)], C_B)
    assert to_markdown(selection_table(report)).splitlines()[2].endswith("| yes |")
    assert math.isclose(report.candidates[0].r_match, 0.5)


def test_package_core_and_classification_import_no_framework():
    code = (
        "import sys, tinysaver_det, tinysaver_det.core, tinysaver_det.classification; "
        "assert tinysaver_det.Cascade and tinysaver_det.Detections and tinysaver_det.sweep; "
        "heavy = {'torch', 'sklearn', 'matplotlib', 'ultralytics', 'mmdet'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
