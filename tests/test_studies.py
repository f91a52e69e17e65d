"""The ladder of cached predictions against pycocotools, and the beyond-the-paper tools end to end on a 32-image slice."""

import csv
import json

import numpy as np
import pytest

from tinysaver_det.detection.logistic_router import LogisticRouter
from tinysaver_det.detection.router_files import load_router
from tinysaver_det.cli.options import parse_model_specs
from tinysaver_det.detection.cache import load_cache, load_splits, split_image_ids
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.cache import read_predictions
from tinysaver_det.core import ExitPolicy, Target
from tinysaver_det.detection.studies.depths import front_mean_best_ap, simulate_chain
from tinysaver_det.detection.studies.operating_points import pick_operating_points

pytestmark = pytest.mark.slow  # every test here runs real models


@pytest.fixture(scope="module")
def ladder(demo_slice):
    return load_cache(demo_slice.annotations, demo_slice.predictions)


@pytest.fixture(scope="module")
def ground_truth(demo_slice):
    return load_coco(demo_slice.annotations)


def results_of(detections):
    return [entry for d in detections for entry in d.to_coco()]


def test_k_model_selection_metric_equals_pycocotools(ladder, ground_truth):
    rng = np.random.default_rng(0)
    stages = rng.integers(0, 3, size=(3, ladder.n_images))
    metric = ladder.selection_metric()
    assert (metric.n_models, metric.n_samples) == (3, 32)
    for row, stats in zip(stages, metric.selected_many(stages)):
        answers = [ladder.detections(k)[i] for i, k in enumerate(row)]
        reference = coco_bbox_metrics(ground_truth, results_of(answers))
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
            assert stats[key] == pytest.approx(reference[key], abs=1e-9), key


def test_per_image_ap_and_subsets_equal_pycocotools(ladder, ground_truth):
    per_image = ladder.per_image_ap("pico")
    for i in (0, 7, 19):
        image_id = int(ladder.image_ids[i])
        expected = coco_bbox_metrics(ground_truth, results_of([ladder.detections("pico")[i]]), [image_id])["AP"]
        assert per_image[i] == pytest.approx(expected, abs=1e-9)
    metric = ladder.pair_metric("pico", "s")
    masks = np.random.default_rng(1).random((4, ladder.n_images)) < 0.5
    np.testing.assert_allclose(metric.subset_many("base", masks), [metric.subset("base", m) for m in masks], atol=1e-12)


def test_costs_in_both_units_come_from_the_cached_files(ladder, demo_slice):
    cached = read_predictions(demo_slice.predictions["n"])
    ids = ladder.image_ids.tolist()
    np.testing.assert_array_equal(ladder.cost("n", "GFLOPs"), [cached[i].gflops for i in ids])
    np.testing.assert_allclose(ladder.cost("n", "ms"), [cached[i].seconds * 1e3 for i in ids])
    with pytest.raises(ValueError, match="cost unit"):
        ladder.cost("n", "joules")


def test_split_is_fixed_and_disjoint(demo_slice):
    calibration, held_out = load_splits(demo_slice.annotations, demo_slice.predictions)
    assert calibration.image_ids.tolist() == list(range(1, 33, 2)) and held_out.image_ids.tolist() == list(range(2, 33, 2))
    a, b = split_image_ids(range(1, 101), "permutation", seed=3)
    assert sorted(a + b) == list(range(1, 101)) and (a, b) == split_image_ids(range(1, 101), "permutation", seed=3)
    with pytest.raises(ValueError, match="NAME=PREDICTIONS"):
        parse_model_specs(["pico"])


def ladder_args(demo_slice):
    return ["--ann", str(demo_slice.annotations)] + [
        arg for name, path in demo_slice.predictions.items() for arg in ("--model", f"{name}={path}")
    ]


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_compare_routers_tool(demo_slice, load_script, tmp_path, capsys):
    out = tmp_path / "routers"
    assert load_script("tools/compare_routers.py").main(ladder_args(demo_slice) + ["--out", str(out), "--levels", "0"]) == 0
    printed = capsys.readouterr().out
    rows = {r["router"]: r for r in read_csv(out / "routers.csv")}
    assert list(rows) == ["mean", "max", "topk_mean", "high_share", "entropy", "learned", "oracle"]
    assert sorted(int(rows[n]["rank curve mean AP"]) for n in rows if n != "oracle") == [1, 2, 3, 4, 5, 6]
    router = load_router(out / "learned_router.json")
    assert isinstance(router, LogisticRouter) and router.info["n_images"] == 16  # trained on the calibration half
    assert float(rows["learned"]["C_E (GFLOPs)"]) > 0
    context = {r["system"]: r for r in read_csv(out / "context.csv")}
    assert "n alone" in context and "learned (2-fold cross-fit)" in context and "oracle" in context
    assert "C_E < (r_E - r) C_B" in printed


def test_pick_threshold_tool_reports_the_held_out_result_of_the_calibration_pick(demo_slice, load_script, tmp_path):
    out = tmp_path / "pick"
    args = ladder_args(demo_slice) + ["--models", "pico", "n", "s", "--max-drop", "0.05", "--gflops", "1.5",
                                      "--latency-ms", "1000", "--out", str(out)]
    assert load_script("tools/pick_threshold.py").main(args) == 0
    rows = read_csv(out / "picks.csv")
    assert [r["target"] for r in rows] == ["AP drop <= 5pt, cheapest GFLOPs", "GFLOPs <= 1.5", "ms <= 1000"]
    assert float(rows[1]["cal GFLOPs"]) <= 1.5
    assert float(rows[1]["AP gap"]) == pytest.approx(float(rows[1]["held AP"]) - float(rows[1]["cal AP"]))


def test_picked_thresholds_are_applied_unchanged_to_held_out(demo_slice):
    chain = ["pico", "n", "s"]
    calibration, held_out = load_splits(demo_slice.annotations, demo_slice.predictions)
    targets = [Target("budget", 1.5, "GFLOPs"), Target("max_drop", 0.05, "GFLOPs"), Target("budget", 0.01, "GFLOPs")]
    budget, drop, impossible = pick_operating_points(calibration, held_out, chain, targets, levels=6)
    assert budget.calibration.costs["GFLOPs"] <= 1.5
    again = simulate_chain(held_out, chain, [budget.calibration.thresholds])[0]
    assert budget.held_out.metrics["AP"] == again.metrics["AP"]
    assert budget.held_out.costs["GFLOPs"] == again.costs["GFLOPs"]
    assert budget.held_out.costs["ms"] == pytest.approx(again.costs["ms"], rel=1e-2)  # the router's own time is measured
    assert drop.calibration.metrics["AP"] >= calibration.model_metrics("s")["AP"] - 0.05 - 1e-9
    assert drop.met_held_out == (drop.held_out.metrics["AP"] >= held_out.model_metrics("s")["AP"] - 0.05 - 1e-9)
    assert impossible.calibration is None and impossible.held_out is None  # cheaper than pico alone: unreachable


def test_multistage_front_tool_writes_a_figure_and_the_deep_front_dominates(demo_slice, load_script, tmp_path):
    from tinysaver_det.detection.studies.depths import compare_depths

    out = tmp_path / "fronts"
    assert load_script("tools/multistage_front.py").main(ladder_args(demo_slice) + ["--levels", "6", "--out", str(out)]) == 0
    assert (out / "fronts.png").stat().st_size > 10_000
    assert len(read_csv(out / "depths.csv")) == 6
    calibration, held_out = load_splits(demo_slice.annotations, demo_slice.predictions)
    study = compare_depths(calibration, held_out, levels=6)
    assert front_mean_best_ap(study.deep_front, "GFLOPs") >= front_mean_best_ap(study.two_stage_front, "GFLOPs") - 1e-12
    assert {len(s.models) for s in study.sweeps} == {2, 3} and len(study.sweeps) == 4


def test_run_multistage_tool_matches_the_simulation(demo_slice, load_script, tmp_path, capsys, ladder):
    out = tmp_path / "run"
    args = ["--weights", "demo:pico", "demo:n", "demo:s", "--t", "0.15", "0.2", "--ann", str(demo_slice.annotations),
            "--part", "held-out", "--out", str(out), "--quiet"]
    assert load_script("tools/run_multistage.py").main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    _, held_out = load_splits(demo_slice.annotations, demo_slice.predictions)
    simulated = simulate_chain(held_out, ["pico", "n", "s"], [(0.15, 0.2)])[0]
    assert summary["n_images"] == 16
    assert summary["stage_ratios"] == pytest.approx(list(simulated.stage_ratios))
    assert summary["gflops_per_image"] == pytest.approx(simulated.costs["GFLOPs"])
    assert summary["metrics"]["AP"] == pytest.approx(simulated.metrics["AP"], abs=2e-3)  # later stages ran smaller batches
    assert "stage ratios" in capsys.readouterr().out


def test_detection_sweep_takes_a_router_file_through_the_same_hook(demo_slice, tmp_path):
    from tinysaver_det.core import router_confidences
    from tinysaver_det.detection.studies.router_comparison import train_router
    from tinysaver_det.detection.studies.thresholds import sweep_cascade

    ladder = load_cache(demo_slice.annotations, {m: demo_slice.predictions[m] for m in ("pico", "s")})
    router = train_router(ladder, "pico", "s")
    path = router.save(tmp_path / "router.json")
    confidences = router_confidences(router, ladder.detections("pico"))
    thresholds = np.quantile(confidences, [0.25, 0.5, 0.75]).tolist()
    result = sweep_cascade(ladder, thresholds, ExitPolicy(confidence=str(path)), saver="pico", base="s")
    assert [row.exit_ratio for row in result.rows] == [pytest.approx((confidences >= t).mean()) for t in thresholds]
    metric = ladder.pair_metric("pico", "s")
    for row, t in zip(result.rows, thresholds):
        assert row.metrics["AP"] == pytest.approx(metric.routed(confidences >= t)["AP"], abs=1e-12)
