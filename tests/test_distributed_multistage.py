"""``multistage-run``, ``predict-coco`` and ``predict`` on a folder under torchrun write what one process
writes (the first two by the one run driver of ``eval``), and ``predict`` on a webcam or stream, which
cannot be cut into shards, is refused there.

The runs are real: ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m tinysaver_det ...``
(gloo on CPU) against the same command in one process, the demo ladder pico -> n -> s on 16 demo images in
batches of 3 (rank 0: 3 batches, rank 1: 3 batches, the last of one image). Timing fields differ between any
two runs and are left out; everything else must be equal. (The same driver in a one-process simulation
of two ranks, with fakes: ``tests/test_distributed.py``.)
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinysaver_det.errors import EveryRankInputError
from tinysaver_det.io import read_jsonl

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
ONE_PROCESS = [sys.executable, "-m", "tinysaver_det"]
TWO_PROCESSES = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "tinysaver_det"]
# On the first 16 demo images, pico answers 4 images at 0.25, n 5 at 0.35, s the other 7.
MULTISTAGE = ["multistage-run", "--weights", "demo:pico", "demo:n", "demo:s", "--t", "0.25", "0.35",
              "--limit", "16", "--batch", "3", "--quiet"]
PREDICT_COCO = ["predict-coco", "--weights", "demo:pico", "--limit", "16", "--batch", "3", "--quiet"]
TIMING = {"seconds", "wall_seconds", "ms_per_image"}


def run(command: list[str], out: Path) -> None:
    result = subprocess.run([*command, "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=600,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]


def without_timing(rows: list[dict], timing: set[str] = TIMING) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in timing} for row in rows]


@pytest.mark.slow
def test_a_three_stage_run_under_torchrun_writes_what_one_process_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run([*ONE_PROCESS, *MULTISTAGE], one)
    run([*TWO_PROCESSES, *MULTISTAGE], two)

    records = read_jsonl(two / "records.jsonl")
    assert {r["stage"] for r in records} == {0, 1, 2} and len(records) == 16  # every stage answers some image
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    shards = [read_jsonl(two / "shards" / f"rank-{r}-of-2" / "records.jsonl") for r in (0, 1)]
    assert [len(rows) for rows in shards] == [9, 7]  # whole batches of 3: 3 and 3 (the last of one image)
    for name in ("records.jsonl", "detections.jsonl"):
        assert without_timing(read_jsonl(two / name)) == without_timing(read_jsonl(one / name)), name
    for name in ("results.json", "errors.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    summaries = [json.loads((out / "summary.json").read_text()) for out in (one, two)]
    assert without_timing(summaries[1:]) == without_timing(summaries[:1])
    assert summaries[1]["skipped_images"] == {} and summaries[1]["n_images"] == 16


@pytest.mark.slow
def test_a_predictions_file_under_torchrun_is_the_one_process_file(tmp_path):
    one, two = tmp_path / "one" / "pico_predictions.jsonl", tmp_path / "two" / "pico_predictions.jsonl"
    run([*ONE_PROCESS, *PREDICT_COCO], one)
    run([*TWO_PROCESSES, *PREDICT_COCO], two)
    assert without_timing(read_jsonl(two)) == without_timing(read_jsonl(one))
    assert [len(read_jsonl(two.parent / "shards" / f"rank-{r}-of-2" / two.name)) for r in (0, 1)] == [9, 7]
    described = json.loads(two.with_suffix(".run.json").read_text())
    assert described["world_size"] == 2 and described["n_images"] == 16


@pytest.mark.slow
def test_predict_on_a_folder_under_torchrun_writes_the_one_process_rows(tmp_path, demo_video):
    """12 demo images in batches of 4 (3 units) and a 10-frame video (one more): rank 0 runs 2 batches,
    rank 1 the last batch and the whole video; the merged rows are one process's."""
    from tinysaver_det import assets

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:12]:
        shutil.copy(path, folder / path.name)
    shutil.copy(demo_video[0], folder / "clip.avi")
    predict = ["predict", "--source", str(folder), "--saver", "demo:pico", "--base", "demo:n", "--t", "0.25",
               "--batch", "4", "--save", "--quiet"]
    one, two = tmp_path / "one", tmp_path / "two"
    run([*ONE_PROCESS, *predict], one)
    run([*TWO_PROCESSES, *predict], two)

    rows = read_jsonl(two / "predictions.jsonl")
    assert len(rows) == 22 and [r["frame"] for r in rows[12:]] == list(range(1, 11))
    assert without_timing(rows, {"ms"}) == without_timing(read_jsonl(one / "predictions.jsonl"), {"ms"})
    assert [len(read_jsonl(two / "shards" / f"rank-{r}-of-2" / "predictions.jsonl")) for r in (0, 1)] == [8, 14]
    summaries = [json.loads((out / "summary.json").read_text()) for out in (one, two)]
    timing = {"ms_per_image", "images_per_second"}
    assert without_timing(summaries[1:], timing) == without_timing(summaries[:1], timing)
    assert {p.name for p in (two / "annotated").iterdir()} == {p.name for p in (one / "annotated").iterdir()}
    assert json.loads((two / "predict.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("source", ["0", "rtsp://camera.local/stream"])
def test_predict_on_a_webcam_or_stream_refuses_several_processes_in_one_line_printed_once(rank, source, tmp_path,
                                                                                           monkeypatch):
    from tinysaver_det.predict_run import run_predictions

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    with pytest.raises(EveryRankInputError, match="runs in one process .*no end to cut.*run it without torchrun") as refused:
        run_predictions(None, source, tmp_path / "out")
    assert refused.value.printed_here == (rank == 0) and "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written
