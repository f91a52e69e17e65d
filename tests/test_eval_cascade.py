"""``tools/eval_coco.py`` end to end on real demo images with the trained demo models."""

import json

import numpy as np
import pytest

from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.io import read_jsonl

pytestmark = pytest.mark.slow  # every test here runs real models


def test_every_image_has_a_record_including_zero_box_images(full_run, small_set):
    records = read_jsonl(full_run / "records.jsonl")
    annotated = json.loads((small_set / "ann.json").read_text())["images"]
    assert sorted(r["image_id"] for r in records) == sorted(i["id"] for i in annotated)
    gray = next(r for r in records if r["image_id"] == 9999)
    assert gray["file_name"] == "gray.jpg" and gray["n_boxes"] == 0 and not gray["exited"]
    assert gray["confidence"] == 0.0


def test_results_json_rescored_independently_gives_the_summary_ap(full_run, small_set):
    summary = json.loads((full_run / "summary.json").read_text())
    ground_truth = load_coco(small_set / "ann.json")
    for name, file in (("cascade", "results.json"), ("saver", "results_saver.json"), ("base", "results_base.json")):
        row = next(r for r in summary["rows"] if r["name"] == name)
        rescored = coco_bbox_metrics(ground_truth, json.loads((full_run / file).read_text()))
        for key in ("AP", "AP50", "AP75"):
            assert rescored[key] == pytest.approx(row["metrics"][key], abs=1e-6)
    assert [r["name"] for r in summary["rows"]] == ["cascade", "saver", "base"]


def test_summary_numbers_are_consistent_with_records(full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    records = read_jsonl(full_run / "records.jsonl")
    cascade = summary["rows"][0]
    assert cascade["exit_ratio"] == pytest.approx(np.mean([r["exited"] for r in records]))
    assert cascade["gflops_per_image"] == pytest.approx(np.mean([r["saver_gflops"] + r["base_gflops"] for r in records]))
    saver, base = summary["rows"][1:]
    assert saver["gflops_per_image"] < cascade["gflops_per_image"] <= saver["gflops_per_image"] + base["gflops_per_image"]
    for r in records:
        assert r["exited"] == (r["confidence"] >= 0.25)


def test_markdown_table_names_the_flops_convention(full_run):
    table = (full_run / "summary.md").read_text()
    assert "| cascade |" in table and "FLOPs = 2 * MACs" in table and "Not counted" in table


def test_default_run_prints_the_headline_numbers(tmp_path, capsys, eval_coco_tool):
    assert eval_coco_tool.main(["--t", "0.25", "--limit", "16", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for heading in ("AP", "AP50", "GFLOPs/img", "exit ratio", "img/s"):
        assert heading in printed
    assert len(read_jsonl(tmp_path / "records.jsonl")) == 16
