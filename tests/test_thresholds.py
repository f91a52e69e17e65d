"""Detection threshold sweeps: equal to pycocotools on merged results, and to the real cascade run."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinysaver_det import assets
from tinysaver_det.core import image_confidence
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.synthetic import BASE_PROFILE, SAVER_PROFILE, simulate_detections
from tinysaver_det.detection.cache import cache_from_results, cache_from_run
from tinysaver_det.detection.studies.thresholds import sweep_cascade

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def coco_inputs(coco_annotations, tmp_path_factory):
    """Two detectors simulated from the ground truth (known categories only), as COCO results jsons."""
    annotations = json.loads(coco_annotations.read_text())
    known = {c["id"] for c in annotations["categories"]}
    folder = tmp_path_factory.mktemp("results")
    paths = []
    for name, profile, seed in (("saver", SAVER_PROFILE, 1), ("base", BASE_PROFILE, 2)):
        detections = simulate_detections(annotations, profile, seed=seed)
        results = [e for d in detections.values() for e in d.to_coco() if e["category_id"] in known]
        paths.append(folder / f"{name}.json")
        paths[-1].write_text(json.dumps(results))
    return cache_from_results(coco_annotations, *paths, saver_gflops=8.7, base_gflops=257.8), paths


@pytest.mark.slow
def test_sweep_equals_pycocotools_on_merged_results(coco_inputs, coco_annotations):
    inputs, _ = coco_inputs
    saver, base = (dict(zip(inputs.image_ids.tolist(), inputs.detections(m))) for m in ("saver", "base"))
    confidences = {i: image_confidence(saver[i].scores) for i in saver}
    thresholds = [0.0, *np.quantile(list(confidences.values()), [0.2, 0.5, 0.8]).tolist(), 0.37, 1.01]
    result = sweep_cascade(inputs, thresholds)
    ground_truth = load_coco(coco_annotations)
    for row, t in zip(result.rows, thresholds):
        merged = [e for i in saver
                  for e in (saver[i] if confidences[i] >= t else base[i]).to_coco()]
        reference = coco_bbox_metrics(ground_truth, merged)
        for key, value in reference.items():
            assert row.metrics[key] == pytest.approx(value, abs=1e-9), (t, key)
        assert row.exit_ratio == pytest.approx(np.mean([c >= t for c in confidences.values()]))
        assert row.cost == pytest.approx(8.7 + (1 - row.exit_ratio) * 257.8)
    assert 0 < result.rows[2].exit_ratio < 1


def test_r_match_and_delta_cost_tr_are_consistent(coco_inputs):
    result = sweep_cascade(coco_inputs[0], np.linspace(0, 1, 21))
    matched = result.r_match
    assert result.delta_cost_tr == pytest.approx(8.7 / 257.8 - matched.r_match)
    if matched.threshold is not None:
        at = list(matched.exit_ratios).index(matched.r_match)
        assert matched.saver[at] >= matched.base[at]
    assert np.all(matched.saver[np.asarray(matched.exit_ratios) > matched.r_match]
                  < matched.base[np.asarray(matched.exit_ratios) > matched.r_match])


@pytest.mark.slow
def test_sweep_at_the_run_threshold_reproduces_the_real_cascade(full_run, small_set):
    summary = json.loads((full_run / "summary.json").read_text())
    result = sweep_cascade(cache_from_run(full_run), [summary["threshold"]])
    cascade = summary["rows"][0]
    assert result.rows[0].exit_ratio == pytest.approx(cascade["exit_ratio"])
    assert result.rows[0].cost == pytest.approx(cascade["gflops_per_image"])
    for key, value in cascade["metrics"].items():
        assert result.rows[0].metrics[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.slow
def test_sweep_tool_on_demo_records_writes_tables_and_plots(full_run, small_set, tmp_path, capsys, load_script):
    out = tmp_path / "sweep"
    assert load_script("tools/sweep.py").main(["--records", str(full_run), "--out", str(out)]) == 0
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0] == "t,exit_ratio,AP,AP50,AP75,APs,APm,APl,gflops"
    assert len(lines) == 1 + 101  # 0..1 step 0.01; the paper's 0.25, 0.26, 0.34, 0.37, 0.69 are on that grid
    assert "FLOPs = 2 * MACs" in (out / "sweep.md").read_text()
    for png in ("ap_vs_gflops.png", "exit_ratio.png", "subset_ap.png"):
        assert (out / png).stat().st_size > 10_000
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "r_match = " in printed and "dC_tr = " in printed


@pytest.mark.slow
def test_records_without_full_are_refused(small_set, tmp_path, eval_coco_tool):
    out = tmp_path / "partial"
    eval_coco_tool.main(["--images", str(small_set / "images"), "--ann", str(small_set / "ann.json"),
                                            "--t", "0.0", "--out", str(out), "--quiet"])
    with pytest.raises(ValueError, match="sweeps need a run made with --full"):
        cache_from_run(out, small_set / "ann.json")
    command = subprocess.run([sys.executable, "tools/sweep.py", "--records", str(out)], cwd=REPO,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert command.returncode == 2
    assert command.stderr.startswith("error: ") and "sweeps need a run made with --full" in command.stderr
    assert "Traceback" not in command.stderr


def test_sweep_tool_rejects_mixed_inputs(load_script):
    with pytest.raises(SystemExit):
        load_script("tools/sweep.py").parse_args(["--records", "x", "--saver-json", "s.json"])


def test_results_json_with_a_bad_entry_is_refused_naming_it(coco_inputs, coco_annotations, tmp_path):
    saver_path, base_path = coco_inputs[1]
    entries = json.loads(saver_path.read_text())
    entries[3]["score"] = 1.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"bad\.json.*score 1\.5"):
        cache_from_results(coco_annotations, bad, base_path, 1.0, 2.0)


@pytest.fixture(scope="module")
def second_pair_run(small_set, tmp_path_factory, eval_coco_tool):
    """The n -> s pair on the same small set."""
    out = tmp_path_factory.mktemp("n_s")
    saver = str(assets.asset_path("demo/weights/yolov8n_shapes.pt"))
    assert eval_coco_tool.main(["--saver", saver, "--images", str(small_set / "images"), "--ann",
                                str(small_set / "ann.json"), "--t", "0.25", "--batch", "5", "--out", str(out),
                                "--full", "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_benchmark_table_over_two_pairs(full_run, second_pair_run, tmp_path, load_script):
    out = tmp_path / "table"
    tool = load_script("tools/benchmark_table.py")
    assert tool.main(["--runs", str(full_run), str(second_pair_run), "--thresholds", "0.25", "--out", str(out)]) == 0
    with (out / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    statics = {r["system"]: r for r in rows if r["operating point"] == "static"}
    assert sorted(statics) == ["yolov8n_shapes.pt", "yolov8p_shapes.pt", "yolov8s_shapes.pt"]
    for run in (full_run, second_pair_run):
        summary = json.loads((run / "summary.json").read_text())
        cascade, saver, base = summary["rows"]
        pair = f"{summary['saver']} -> {summary['base']}"
        at_t = next(r for r in rows if r["system"] == pair and r["operating point"] == "t = 0.25")
        assert float(at_t["AP"]) == pytest.approx(cascade["metrics"]["AP"], abs=1e-9)
        assert float(at_t["GFLOPs/img"]) == pytest.approx(cascade["gflops_per_image"])
        assert float(at_t["GFLOPs vs base"]) == pytest.approx(cascade["gflops_per_image"] / base["gflops_per_image"])
        assert float(statics[summary["saver"]]["AP"]) == pytest.approx(saver["metrics"]["AP"], abs=1e-9)
        for drop in (1, 0.5, 0):
            within = next(r for r in rows if r["system"] == pair and r["operating point"] == f"AP drop <= {drop:g} pt")
            assert float(within["AP"]) >= base["metrics"]["AP"] - drop / 100 - 1e-9
    assert "FLOPs = 2 * MACs" in (out / "table.md").read_text()
    assert (out / "ap_vs_gflops.png").stat().st_size > 10_000
