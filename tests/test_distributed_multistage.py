"""``multistage-run`` and ``predict-coco`` under torchrun write what one process writes (the one run driver
of ``eval``), and ``predict``, whose sources cannot be cut into shards, is refused there.

The runs are real: ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m tinysaver_det ...``
(gloo on CPU) against the same command in one process, the demo ladder pico -> n -> s on 16 demo images in
batches of 3 (rank 0: 3 batches, rank 1: 3 batches, the last of one image). Timing fields differ between any
two runs and are left out; everything else must be equal.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tinysaver_det.detection.types import Detections, Prediction
from tinysaver_det.distributed import DistContext
from tinysaver_det.errors import EveryRankInputError, TinySaverInputError
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


def without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMING} for row in rows]


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


@pytest.mark.parametrize("rank", [0, 1])
def test_predict_refuses_a_job_of_several_processes_in_one_line_printed_once(rank, tmp_path, monkeypatch):
    from tinysaver_det.predict_run import run_predictions

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    with pytest.raises(EveryRankInputError, match="runs in one process .*run it without torchrun") as refused:
        run_predictions(None, "photos/", tmp_path / "out")
    assert refused.value.printed_here == (rank == 0) and "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written


class FakeDetector:
    """Answers one box per image with a fixed score per image id; records the batches it ran."""

    def __init__(self, name, scores, gflops):
        self.name, self.scores, self.gflops, self.calls = name, scores, gflops, []

    def predict(self, images, image_ids):
        self.calls.append(list(image_ids))
        detections = [Detections(i, [[0, 0, 10, 10]], [self.scores[i]], [1]) for i in image_ids]
        return Prediction(detections, [self.gflops] * len(image_ids), [0.01] * len(image_ids))


IDS = list(range(1, 8))  # 7 images in batches of 2 (4 batches): of 2 ranks, rank 0 runs 2 batches, rank 1 the rest
STAGE_SCORES = [{i: 0.9 if i in (1, 5) else 0.1 for i in IDS}, {i: 0.9 if i in (2, 6, 7) else 0.1 for i in IDS},
                {i: 0.99 for i in IDS}]


@pytest.fixture
def fake_dataset(tmp_path):
    """Seven 8x8 PNGs, image 4 missing on disk (an unreadable image inside rank 1's shard)."""
    import cv2

    from tinysaver_det.detection.dataset import CocoDataset

    (tmp_path / "images").mkdir()
    for i in IDS:
        if i != 4:
            cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.full((8, 8, 3), 30 * i, np.uint8))
    box = {"bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0, "category_id": 1}
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8} for i in IDS],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{**box, "id": i, "image_id": i} for i in IDS],
    }))
    return CocoDataset(tmp_path / "ann.json", tmp_path / "images")


def three_stages():
    from tinysaver_det.detection.cascade import MultiStageCascade

    return MultiStageCascade([FakeDetector(f"m{k}", s, 10.0 ** k) for k, s in enumerate(STAGE_SCORES)], [0.5, 0.5])


@dataclass(frozen=True)
class OthersRunAtTheBarrier(DistContext):
    """Rank 0's context in a one-process simulation: rank 1 runs its whole part when rank 0 reaches the
    barrier (after its checks and its shard, before its merge); without a process group, gather and
    broadcast give this rank's own object."""

    others: Callable[[], None] = lambda: None

    def barrier(self) -> None:
        self.others()


def sharded_in_one_process(run_one):
    """``run_one(context)`` as rank 1 then rank 0 of 2 would run it (rank 1's shard done at rank 0's barrier)."""
    return run_one(OthersRunAtTheBarrier(rank=0, world_size=2, others=lambda: run_one(DistContext(1, 2))))


def test_any_k_and_a_predictions_file_shard_as_eval_does_and_resume_only_with_as_many_processes(fake_dataset, tmp_path):
    from tinysaver_det.detection.runner import evaluate_multistage, predict_dataset

    one = evaluate_multistage(three_stages(), fake_dataset, tmp_path / "one", batch_size=2, progress=False)
    two = sharded_in_one_process(lambda context: evaluate_multistage(
        three_stages(), fake_dataset, tmp_path / "two", batch_size=2, progress=False, context=context))
    assert [r["stage"] for r in read_jsonl(tmp_path / "two" / "records.jsonl")] == [0, 1, 2, None, 0, 1, 1]
    for name in ("records.jsonl", "detections.jsonl", "results.json", "errors.json", "summary.json"):
        if name == "summary.json":
            one_text, two_text = ({**json.loads((tmp_path / d / name).read_text()), "wall_seconds": 0}
                                  for d in ("one", "two"))
        else:
            one_text, two_text = ((tmp_path / d / name).read_bytes() for d in ("one", "two"))
        assert two_text == one_text, name
    assert two.skipped_images == one.skipped_images == {"missing": 1}

    path = tmp_path / "p" / "pico_predictions.jsonl"
    predict_dataset(FakeDetector("pico", STAGE_SCORES[0], 1.0), fake_dataset, tmp_path / "p1.jsonl", batch_size=2,
                    progress=False)
    sharded_in_one_process(lambda context: predict_dataset(
        FakeDetector("pico", STAGE_SCORES[0], 1.0), fake_dataset, path, batch_size=2, progress=False, context=context))
    assert path.read_text() == (tmp_path / "p1.jsonl").read_text()
    assert (tmp_path / "p" / "shards" / "rank-1-of-2" / "pico_predictions.run.json").is_file()
    with pytest.raises(TinySaverInputError, match="run by 2 process"):  # its shards were cut for 2 processes
        predict_dataset(FakeDetector("pico", STAGE_SCORES[0], 1.0), fake_dataset, path, batch_size=2,
                        progress=False, resume=True)
    with pytest.raises(TinySaverInputError, match=r"already holds a run \(.*, shards/rank-1-of-2/\)"):
        predict_dataset(FakeDetector("pico", STAGE_SCORES[0], 1.0), fake_dataset, path, batch_size=2, progress=False)
    fresh = FakeDetector("pico", STAGE_SCORES[0], 1.0)
    predict_dataset(fresh, fake_dataset, path, batch_size=2, progress=False, overwrite=True)
    assert fresh.calls == [[1, 2], [3], [5, 6], [7]]  # one process, from scratch
    assert not list((tmp_path / "p" / "shards").rglob("pico_predictions.*"))  # shards gone (lock files stay, harmless)
