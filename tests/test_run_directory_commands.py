"""``predict-coco`` and ``multistage-run`` resume as ``eval`` does (the run-directory machinery of
:mod:`tinysaver_det.detection.run_directory`): a killed run continued with ``--resume`` writes the rows of
an uninterrupted one (timing fields aside), other settings are refused naming each difference, and an
existing output is never rewritten without ``--resume`` or ``--overwrite``.
"""

import json
import shutil
import sys

import pytest

from tinysaver_det import assets
from tinysaver_det.cli import main
from tinysaver_det.detection.dataset import restrict_annotations
from tinysaver_det.io import read_jsonl, sha256_file

from tests.runs import count_lines, kill_midway

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("assets_folder")]  # every test here runs demo models

N_IMAGES, BATCH = 24, 2
PREDICT = ["predict-coco", "--weights", "demo:pico", "--limit", str(N_IMAGES), "--batch", str(BATCH), "--quiet"]


def run(argv) -> int:
    return main([str(a) for a in argv])


def without_timing(rows):
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("uninterrupted") / "pico_predictions.jsonl"
    assert run([*PREDICT, "--out", path]) == 0
    return path


def test_the_predictions_file_is_described_beside_it(uninterrupted):
    described = json.loads(uninterrupted.with_name("pico_predictions.run.json").read_text())
    assert set(described) == {
        "format", "package_version", "model", "features", "batch_size", "annotation_file", "annotation_sha256",
        "image_dir", "limit", "n_images", "image_ids_sha256"}
    assert described["model"]["sha256"] == sha256_file(assets.asset_path(assets.DEMO_SAVER))
    assert described["model"]["imgsz"] and described["features"] is False
    assert (described["batch_size"], described["limit"], described["n_images"]) == (BATCH, N_IMAGES, N_IMAGES)
    assert described["annotation_sha256"] == sha256_file(assets.asset_path(assets.DEMO_ANNOTATIONS))


def test_a_predict_coco_run_killed_with_sigkill_resumes_to_the_uninterrupted_rows(uninterrupted, tmp_path):
    path, log = tmp_path / "pico_predictions.jsonl", tmp_path / "stderr.txt"
    kill_midway([sys.executable, "-m", "tinysaver_det", *PREDICT, "--out", path], path, N_IMAGES // 3, log, poll=0.01)
    assert count_lines(path) < N_IMAGES
    assert run([*PREDICT, "--out", path, "--resume"]) == 0
    assert without_timing(read_jsonl(path)) == without_timing(read_jsonl(uninterrupted))


def test_a_predictions_file_cut_mid_row_resumes_and_other_settings_or_no_flag_are_refused(uninterrupted, tmp_path, capsys):
    path = tmp_path / "pico_predictions.jsonl"
    shutil.copy(uninterrupted.with_name("pico_predictions.run.json"), tmp_path / "pico_predictions.run.json")
    lines = uninterrupted.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:9]) + lines[9][:50])  # a kill mid-row, in the middle of a batch
    cut = path.read_bytes()

    assert run([*PREDICT, "--out", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} already holds a run (pico_predictions.run.json, pico_predictions.jsonl)")
    assert err.count("\n") == 1 and path.read_bytes() == cut

    assert run([*PREDICT, "--out", path, "--resume", "--batch", "4", "--imgsz", "320"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume {path}: its run was made with other settings (")
    assert "batch_size: 2 in the run, 4 now" in err and "model.imgsz:" in err and path.read_bytes() == cut

    assert run([*PREDICT, "--out", path, "--resume"]) == 0
    assert without_timing(read_jsonl(path)) == without_timing(read_jsonl(uninterrupted))
    assert run([*PREDICT[:-3], "--batch", "4", "--quiet", "--out", path, "--overwrite"]) == 0
    assert json.loads((tmp_path / "pico_predictions.run.json").read_text())["batch_size"] == 4


MULTI = ["multistage-run", "--weights", "demo:pico", "demo:s", "--t", "0.2", "--batch", "2", "--quiet"]


@pytest.fixture(scope="module")
def slice_data(tmp_path_factory):
    """The first 12 demo val images as their own annotation file (multistage-run has no --limit)."""
    annotations = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    ids = sorted(image["id"] for image in annotations["images"])[:12]
    path = tmp_path_factory.mktemp("slice") / "instances_slice.json"
    path.write_text(json.dumps(restrict_annotations(annotations, ids)))
    return ["--ann", path, "--images", assets.asset_path(assets.DEMO_IMAGES)]


def test_a_multistage_run_cut_short_resumes_to_the_uninterrupted_outputs_and_refuses_mixing(slice_data, tmp_path, capsys):
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert run([*MULTI, *slice_data, "--out", reference]) == 0
    described = json.loads((reference / "run.json").read_text())
    assert [stage["sha256"] for stage in described["stages"]] == [
        sha256_file(assets.asset_path(name)) for name in (assets.DEMO_SAVER, assets.DEMO_BASE)]
    assert described["thresholds"] == [0.2] and described["n_images"] == 12
    out.mkdir()
    shutil.copy(reference / "run.json", out / "run.json")
    records = (reference / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text("".join(records[:5]) + records[5][:30])
    (out / "detections.jsonl").write_text((reference / "detections.jsonl").read_text())  # written before the records

    assert run([*MULTI, *slice_data, "--out", out]) == 2
    assert capsys.readouterr().err.startswith(f"error: {out} already holds a run (run.json, records.jsonl")
    assert run([*MULTI[:4], "--t", "0.3", *MULTI[6:], *slice_data, "--out", out, "--resume"]) == 2
    assert "thresholds: [0.2] in the run, [0.3] now" in capsys.readouterr().err

    assert run([*MULTI, *slice_data, "--out", out, "--resume"]) == 0
    for name in ("records.jsonl", "detections.jsonl"):
        assert without_timing(read_jsonl(out / name)) == without_timing(read_jsonl(reference / name)), name
    assert (out / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    for timed in (summary, expected):
        timed.pop("wall_seconds"), timed.pop("ms_per_image")
    assert summary == expected
