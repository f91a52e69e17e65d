"""A killed run resumes to the records and results of an uninterrupted one; mixing two runs is refused.

Timing fields (``seconds`` in the json-lines files, ``images_per_second`` and ``wall_seconds`` in the
summary) differ between any two runs and are left out of the comparisons; everything else must be equal.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from tinysaver_det import assets
from tinysaver_det.detection.cascade import Cascade
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.runner import evaluate_cascade
from tinysaver_det.detection.run_directory import describe_run, open_run
from tinysaver_det.io import read_jsonl

from tests.runs import count_lines, kill_midway

pytestmark = pytest.mark.slow  # every test here runs real models

REPO = Path(__file__).resolve().parent.parent

N_IMAGES, BATCH = 40, 4
ARGS = ["--limit", str(N_IMAGES), "--batch", str(BATCH), "--t", "0.25", "--quiet"]  # demo models and images
STREAMS = ("records.jsonl", "saver_predictions.jsonl", "base_predictions.jsonl")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, eval_coco_tool):
    out = tmp_path_factory.mktemp("uninterrupted")
    assert eval_coco_tool.main([*ARGS, "--out", str(out)]) == 0
    return out


def without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def summary_without_timing(out) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("wall_seconds")
    for row in summary["rows"]:
        row.pop("images_per_second")
    return summary


def assert_same_run(out, reference):
    """``out`` holds what the uninterrupted ``reference`` run holds: no image missing or twice."""
    ids = [r["image_id"] for r in read_jsonl(out / "records.jsonl")]
    assert len(ids) == len(set(ids)) == N_IMAGES
    for name in STREAMS:
        assert without_timing(read_jsonl(out / name)) == without_timing(read_jsonl(reference / name)), name
    for name in ("results.json", "results_saver.json", "errors.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert summary_without_timing(out) == summary_without_timing(reference)


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_outputs(uninterrupted, eval_coco_tool, tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    # N_IMAGES - 4 * BATCH records leave time to kill it before its end
    kill_midway([sys.executable, REPO / "tools" / "eval_coco.py", *ARGS, "--out", out], out / "records.jsonl",
                N_IMAGES - 4 * BATCH, log)
    assert count_lines(out / "records.jsonl") < N_IMAGES and not (out / "results.json").exists()
    assert eval_coco_tool.main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert_same_run(out, uninterrupted)


def lines_of(path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize(
    "records_kept, half_record, half_saver_row, done",
    [(N_IMAGES - 6, True, False, N_IMAGES - 2 * BATCH), (N_IMAGES - BATCH, False, True, N_IMAGES - BATCH)],
    ids=["between-predictions-and-records", "during-predictions"],
)
def test_a_batch_cut_short_at_any_write_is_redone_whole(
    uninterrupted, demo_saver, demo_base, tmp_path, records_kept, half_record, half_saver_row, done
):
    """Rebuild, from the uninterrupted run's own lines, what a kill leaves: the last batch's predictions
    whole but only part of its records, the next one half written (first case); or the records whole
    and the next batch's first saver row half written (second case). Resuming starts at the first
    image of the cut batch, so that images are batched as in the uninterrupted run."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(uninterrupted / "run.json", out / "run.json")
    records = lines_of(uninterrupted / "records.jsonl")
    (out / "records.jsonl").write_text("".join(records[:records_kept]) + (records[records_kept][:30] * half_record))
    predicted = {json.loads(line)["image_id"] for line in records[: N_IMAGES - BATCH]}
    for name in STREAMS[1:]:
        lines = lines_of(uninterrupted / name)
        kept = [line for line in lines if json.loads(line)["image_id"] in predicted]
        half_row = lines[len(kept)][:40] if half_saver_row and name == "saver_predictions.jsonl" else ""
        (out / name).write_text("".join(kept) + half_row)
    dataset = CocoDataset(
        assets.asset_path(assets.DEMO_ANNOTATIONS), assets.asset_path(assets.DEMO_IMAGES), limit=N_IMAGES
    )
    cascade = Cascade(demo_saver, demo_base, 0.25)
    assert open_run(out, describe_run(cascade, dataset, BATCH), dataset, resume=True) == done
    evaluate_cascade(cascade, dataset, out, BATCH, progress=False, resume=True)
    assert_same_run(out, uninterrupted)


def test_a_new_run_into_a_directory_holding_a_run_is_refused(uninterrupted, eval_coco_tool, capsys, tmp_path):
    out = shutil.copytree(uninterrupted, tmp_path / "run")
    before = (out / "records.jsonl").read_bytes()
    assert eval_coco_tool.main([*ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out} already holds a run (run.json, records.jsonl")
    assert "pass --resume to continue it, --overwrite to replace it" in err
    assert (out / "records.jsonl").read_bytes() == before


def test_a_resume_with_other_settings_is_refused_naming_each_difference(uninterrupted, eval_coco_tool, capsys, tmp_path):
    out = shutil.copytree(uninterrupted, tmp_path / "run")
    other_saver = assets.asset_path("demo/weights/yolov8n_shapes.pt")
    args = [*ARGS, "--out", str(out), "--resume", "--t", "0.3", "--batch", "8", "--saver", str(other_saver)]
    assert eval_coco_tool.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume {out}: its run was made with other settings (")
    assert "batch_size: 4 in the run, 8 now" in err and "threshold: 0.25 in the run, 0.3 now" in err
    assert "saver.sha256: 097037f8" in err and "saver.name" not in err  # names and paths may change


def test_a_directory_without_run_json_is_not_resumed(eval_coco_tool, capsys, tmp_path):
    (tmp_path / "records.jsonl").write_text('{"image_id": 1}\n')
    assert eval_coco_tool.main([*ARGS, "--out", str(tmp_path), "--resume"]) == 2
    assert f"cannot resume {tmp_path}: it has no run.json" in capsys.readouterr().err


def test_overwrite_replaces_the_run_files_and_nothing_else(uninterrupted, eval_coco_tool, tmp_path):
    out = shutil.copytree(uninterrupted, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    assert eval_coco_tool.main(["--limit", "4", "--full", "--quiet", "--out", str(out), "--overwrite"]) == 0
    assert len(read_jsonl(out / "records.jsonl")) == 4 and (out / "results_base.json").exists()
    assert (out / "notes.txt").read_text() == "mine"
