"""Sharded evaluation under torchrun: N processes write what one process writes, and a killed rank resumes.

The runs are real: ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m tinysaver_det eval``
(gloo on CPU) against a one-process run of the same flags (``python tools/eval_coco.py``, the shim of the
same subcommand), demo models on real demo images. Both use one
thread per process (``OMP_NUM_THREADS=1``), so the models' arithmetic is the same in both.
Timing fields (``seconds``, img/s, wall-clock) differ between any two runs and are left out.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tinysaver_det.detection.run_directory import open_run, open_sharded_run
from tinysaver_det.detection.shards import merge_jsonl, shard_bounds, shard_dir
from tinysaver_det.distributed import DistContext, environment_context, rank_device
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_jsonl

from tests.fakes import FakeDetector
from tests.runs import count_lines

REPO = Path(__file__).resolve().parent.parent

# 22 images in batches of 3: 8 batches, the last of one image; rank 0 gets 4 batches (12 images), rank 1 the
# other 4 (10 images), so the shards differ in size and one ends on a short batch.
N_IMAGES, BATCH = 22, 3
SHARD_1 = (12, 22)
OTHER_SIZE = (320, 224)  # width, height of every third image (the others are the demo's 256 x 256)
STREAMS = ("records.jsonl", "saver_predictions.jsonl", "base_predictions.jsonl")
EXACT_FILES = ("results.json", "results_saver.json", "results_base.json", "errors.json")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
ONE_PROCESS = [sys.executable, str(REPO / "tools" / "eval_coco.py")]
TWO_PROCESSES = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "tinysaver_det", "eval"]


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory) -> list[str]:
    """The first 22 demo val images, every third one resized (annotations scaled with it), as eval flags.

    With images of two sizes, Ultralytics letterboxes a batch of one size to a tight rectangle and a
    mixed batch to the full square, so a shard that did not keep the one-process batches whole
    would give other boxes: the equality below checks the cut as well as the merge.
    """
    import cv2

    from tinysaver_det import assets

    root = tmp_path_factory.mktemp("mixed_sizes")
    (root / "images").mkdir()
    data = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    images = sorted(data["images"], key=lambda info: info["id"])[:N_IMAGES]
    resized = {info["id"]: info for info in images[1::3]}
    for info in images:
        pixels = cv2.imread(str(assets.asset_path(assets.DEMO_IMAGES) / info["file_name"]))
        if info["id"] in resized:
            pixels = cv2.resize(pixels, OTHER_SIZE)
        cv2.imwrite(str(root / "images" / info["file_name"]), pixels)
    annotations = [a for a in data["annotations"] if a["image_id"] in {info["id"] for info in images}]
    for annotation in annotations:
        info = resized.get(annotation["image_id"])
        if info is not None:
            sx, sy = OTHER_SIZE[0] / info["width"], OTHER_SIZE[1] / info["height"]
            x, y, w, h = annotation["bbox"]
            annotation.update(bbox=[x * sx, y * sy, w * sx, h * sy], area=annotation["area"] * sx * sy)
    for info in resized.values():
        info.update(width=OTHER_SIZE[0], height=OTHER_SIZE[1])
    data.update(images=images, annotations=annotations)
    (root / "ann.json").write_text(json.dumps(data))
    return ["--images", str(root / "images"), "--ann", str(root / "ann.json"), "--batch", str(BATCH), "--t", "0.25",
            "--full", "--quiet"]


def run(command: list[str], args: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*command, *args, "--out", str(out), *extra], env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, mixed_sizes):
    out = tmp_path_factory.mktemp("one_process")
    run(ONE_PROCESS, mixed_sizes, out)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, mixed_sizes):
    out = tmp_path_factory.mktemp("two_processes")
    result = run(TWO_PROCESSES, mixed_sizes, out)
    return out, result.stdout


def without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def summary_without_timing(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("wall_seconds")
    for row in summary["rows"]:
        row.pop("images_per_second")
    return summary


def assert_same_outputs(out: Path, reference: Path) -> None:
    for name in STREAMS:
        assert without_timing(read_jsonl(out / name)) == without_timing(read_jsonl(reference / name)), name
    for name in EXACT_FILES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert summary_without_timing(out) == summary_without_timing(reference)


@pytest.mark.slow
def test_two_processes_under_torchrun_write_what_one_process_writes(one_process, two_processes):
    out, stdout = two_processes
    assert_same_outputs(out, one_process)
    assert len(read_jsonl(out / "records.jsonl")) == N_IMAGES
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    for rank, (first, stop) in enumerate([(0, SHARD_1[0]), SHARD_1]):
        shard = shard_dir(out, rank, 2)
        ids = [row["image_id"] for row in read_jsonl(shard / "records.jsonl")]
        assert ids == [row["image_id"] for row in read_jsonl(one_process / "records.jsonl")][first:stop]
        assert json.loads((shard / "run.json").read_text())["shard"] == {
            "rank": rank, "world_size": 2, "first": first, "stop": stop}
    assert stdout.count("| cascade |") == 1  # rank 0 alone prints the table


def rank_process(launcher: subprocess.Popen, rank: int):
    """The worker process of ``rank`` among the launcher's children (torchrun gives each its RANK)."""
    import psutil

    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "tinysaver_det" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_a_rank_killed_with_sigkill_is_completed_by_resume(one_process, mixed_sizes, tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    shard = shard_dir(out, 1, 2) / "records.jsonl"
    with log.open("w") as stderr:
        launcher = subprocess.Popen([*TWO_PROCESSES, *mixed_sizes, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                                    stderr=stderr)
    deadline = time.monotonic() + 300
    try:
        while count_lines(shard) < BATCH:  # rank 1 committed a batch; 3 more remain, time enough to kill it
            assert launcher.poll() is None, f"the run ended before rank 1 could be killed: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"rank 1 made no progress: {log.read_text()[-3000:]}"
            time.sleep(0.01)
        victim = rank_process(launcher, 1)
        assert victim is not None, "rank 1's process was not found among torchrun's children"
        victim.send_signal(signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0  # torchrun ends the job when one of its ranks dies
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    done = count_lines(shard)
    assert BATCH <= done < SHARD_1[1] - SHARD_1[0], "rank 1 finished its shard before it was killed"
    assert not (out / "results.json").exists()  # no merge happened
    rank_0 = shard_dir(out, 0, 2) / "records.jsonl"  # rank 0 was ended by torchrun, perhaps in a batch
    kept = {path: b"".join(lines[: len(lines) - len(lines) % BATCH])
            for path in (rank_0, shard) for lines in [path.read_bytes().splitlines(True)]}
    run(TWO_PROCESSES, mixed_sizes, out, "--resume")
    assert_same_outputs(out, one_process)
    for path, before in kept.items():  # committed batches are kept, not redone (their timings would differ)
        assert path.read_bytes().startswith(before), path


@pytest.mark.slow
def test_resuming_a_two_process_run_in_one_process_is_refused(two_processes, mixed_sizes, eval_coco_tool, capsys,
                                                              tmp_path):
    out = shutil.copytree(two_processes[0], tmp_path / "run")
    assert eval_coco_tool.main([*mixed_sizes, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume {out}: it was run by 2 process(es) and this job has 1")
    assert "torchrun --nproc_per_node 2" in err


@pytest.mark.slow
def test_an_input_error_of_a_two_process_job_is_printed_once(two_processes, mixed_sizes, tmp_path):
    """Other settings on --resume: every rank stops together, with one line (rank 0's) for the job."""
    out = shutil.copytree(two_processes[0], tmp_path / "run")
    args = [a if a != "0.25" else "0.5" for a in mixed_sizes]  # --t 0.5: not the run's settings
    result = subprocess.run([*TWO_PROCESSES, *args, "--out", str(out), "--resume"], env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: rank 0: cannot resume") and "other settings (threshold: 0.25" in errors[0]
    # torchrun prints its own traceback (ChildFailedError) when a process fails; none comes from ours
    assert not [line for line in result.stderr.splitlines() if 'File "' in line and "tinysaver_det" in line]


# Fast checks of the pieces (no model runs).


FAKE_IDS = list(range(1, 8))  # 7 images in batches of 2: 4 batches; of 3 ranks, rank 2 gets 2 batches (3 images)
FAKE_SAVER = {i: [0.1 * i] for i in FAKE_IDS}  # confidence 0.1 * i: images 5, 6, 7 exit at t = 0.45
FAKE_BASE = {i: [0.9, 0.8] for i in FAKE_IDS}


@pytest.fixture
def fake_dataset(tmp_path):
    """Seven 8x8 PNGs, image 4 missing on disk (a failed record inside rank 1's shard)."""
    import cv2
    import numpy as np

    from tinysaver_det.detection.dataset import CocoDataset

    (tmp_path / "images").mkdir()
    for i in FAKE_IDS:
        if i != 4:
            cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.full((8, 8, 3), 30 * i, np.uint8))
    box = {"bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0, "category_id": 1}
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8} for i in FAKE_IDS],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{**box, "id": i, "image_id": i} for i in FAKE_IDS],
    }))
    return CocoDataset(tmp_path / "ann.json", tmp_path / "images")


def fake_cascade():
    from tinysaver_det.detection.cascade import Cascade

    return Cascade(FakeDetector("saver", FAKE_SAVER, 1.0, 0.01), FakeDetector("base", FAKE_BASE, 10.0, 0.01), 0.45,
                   run_base_on_all=True)


@dataclass(frozen=True)
class OthersRunAtTheBarrier(DistContext):
    """Rank 0's context in a one-process simulation: the other ranks run their whole part when rank 0
    reaches the barrier (after its checks and its shard, before its merge), as they would beside it."""

    others: Callable[[], None] = lambda: None

    def barrier(self) -> None:
        self.others()


def run_sharded_in_one_process(dataset, out, world_size, **options):
    """Every rank's part of a sharded run, in this process: without a process group a context's gather and
    broadcast return this rank's own object. Returns rank 0's summary and the batches each saver ran."""
    from tinysaver_det.detection.runner import evaluate_cascade

    calls = {}

    def run_rank(rank, context):
        cascade = fake_cascade()
        summary = evaluate_cascade(cascade, dataset, out, batch_size=2, progress=False, context=context, **options)
        calls[rank] = cascade.saver.calls
        return summary

    def others():
        for rank in range(1, world_size):
            assert run_rank(rank, DistContext(rank=rank, world_size=world_size)) is None  # rank 0 alone merges

    return run_rank(0, OthersRunAtTheBarrier(rank=0, world_size=world_size, others=others)), calls


def sharded_in_one_process(run_one):
    """``run_one(context)`` as rank 1 and rank 0 of 2 run it (rank 1's part done at rank 0's barrier)."""
    return run_one(OthersRunAtTheBarrier(rank=0, world_size=2, others=lambda: run_one(DistContext(1, 2))))


def test_any_k_and_a_predictions_file_shard_as_eval_does_and_resume_only_with_as_many_processes(fake_dataset, tmp_path):
    """The one driver shards a K-stage run and ``predict-coco``'s file as it shards ``eval``."""
    from tinysaver_det.detection.cascade import MultiStageCascade
    from tinysaver_det.detection.runner import evaluate_multistage, predict_dataset

    def three_stages():  # stage 0 answers images 5, 6, 7 (t 0.45 on 0.1 * i), stage 1 images 1 and 2, stage 2 image 3
        answers = [FAKE_SAVER, {i: [0.9] if i in (1, 2) else [0.1] for i in FAKE_IDS}, FAKE_BASE]
        return MultiStageCascade([FakeDetector(f"m{k}", a, 10.0 ** k) for k, a in enumerate(answers)], [0.45, 0.5])

    one = evaluate_multistage(three_stages(), fake_dataset, tmp_path / "one", batch_size=2, progress=False)
    two = sharded_in_one_process(lambda context: evaluate_multistage(
        three_stages(), fake_dataset, tmp_path / "two", batch_size=2, progress=False, context=context))
    assert [r["stage"] for r in read_jsonl(tmp_path / "two" / "records.jsonl")] == [1, 1, 2, None, 0, 0, 0]
    for name in ("records.jsonl", "detections.jsonl", "results.json", "errors.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert dataclasses.replace(two, wall_seconds=0) == dataclasses.replace(one, wall_seconds=0)
    assert two.skipped_images == {"missing": 1}

    path = tmp_path / "p" / "pico_predictions.jsonl"
    predict_dataset(FakeDetector("pico", FAKE_SAVER, 1.0), fake_dataset, tmp_path / "p1.jsonl", batch_size=2,
                    progress=False)
    sharded_in_one_process(lambda context: predict_dataset(
        FakeDetector("pico", FAKE_SAVER, 1.0), fake_dataset, path, batch_size=2, progress=False, context=context))
    assert path.read_text() == (tmp_path / "p1.jsonl").read_text()
    assert (tmp_path / "p" / "shards" / "rank-1-of-2" / "pico_predictions.run.json").is_file()
    with pytest.raises(TinySaverInputError, match="run by 2 process"):  # its shards were cut for 2 processes
        predict_dataset(FakeDetector("pico", FAKE_SAVER, 1.0), fake_dataset, path, batch_size=2, progress=False,
                        resume=True)
    with pytest.raises(TinySaverInputError, match=r"already holds a run \(.*, shards/rank-1-of-2/\)"):
        predict_dataset(FakeDetector("pico", FAKE_SAVER, 1.0), fake_dataset, path, batch_size=2, progress=False)
    fresh = FakeDetector("pico", FAKE_SAVER, 1.0)
    predict_dataset(fresh, fake_dataset, path, batch_size=2, progress=False, overwrite=True)
    assert fresh.calls == [[1, 2], [3], [5, 6], [7]]  # one process, from scratch
    assert not list((tmp_path / "p" / "shards").rglob("pico_predictions.*"))  # shards gone (lock files stay)


def test_sharded_runner_writes_what_one_process_writes_from_the_shards_on_disk(fake_dataset, tmp_path):
    from tinysaver_det.detection.runner import evaluate_cascade

    one = evaluate_cascade(fake_cascade(), fake_dataset, tmp_path / "one", batch_size=2, progress=False)
    summary, calls = run_sharded_in_one_process(fake_dataset, tmp_path / "three", 3)
    assert calls == {0: [[1, 2]], 1: [[3]], 2: [[5, 6], [7]]}  # whole one-process batches; image 4 never runs
    for name in (*STREAMS, *EXACT_FILES):  # the fake's seconds are fixed: every file is byte-identical
        assert (tmp_path / "three" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert summary.rows == one.rows and summary.skipped_images == {"missing": 1}


def test_a_shard_cut_short_resumes_its_unfinished_batch_and_keeps_the_rest(fake_dataset, tmp_path):
    out = tmp_path / "run"
    run_sharded_in_one_process(fake_dataset, out, 3)
    reference = {name: (out / name).read_bytes() for name in (*STREAMS, *EXACT_FILES)}
    shard = shard_dir(out, 2, 3)
    lines = (shard / "records.jsonl").read_text().splitlines(keepends=True)
    (shard / "records.jsonl").write_text(lines[0] + lines[1] + lines[2][:20])  # killed writing its second batch
    for name in EXACT_FILES:
        (out / name).unlink()
    with pytest.raises(TinySaverInputError, match="already holds a run"):
        run_sharded_in_one_process(fake_dataset, out, 3)
    _, calls = run_sharded_in_one_process(fake_dataset, out, 3, resume=True)
    assert calls == {0: [], 1: [], 2: [[7]]}
    assert {name: (out / name).read_bytes() for name in reference} == reference


@pytest.mark.parametrize("n_images", [0, 1, 7, 22, 100])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_are_contiguous_whole_batches_covering_every_image(n_images, batch_size, world_size):
    bounds = shard_bounds(n_images, batch_size, world_size)
    assert len(bounds) == world_size
    assert bounds[0][0] == 0 and bounds[-1][1] == n_images
    assert all(stop == first for (_, stop), (first, _) in zip(bounds, bounds[1:]))  # contiguous, in rank order
    assert all(first % batch_size == 0 for first, _ in bounds)  # each shard starts on a batch of one process
    sizes = [-(-(stop - first) // batch_size) for first, stop in bounds]
    assert max(sizes) - min(sizes) <= 1  # balanced to a batch


def make_sharded_run(out: Path, world_size: int) -> dict:
    description = {"batch_size": 4, "full": False, "threshold": 0.25}
    open_sharded_run(out, description, world_size)
    shard_dir(out, 1, world_size).mkdir(parents=True)
    (shard_dir(out, 1, world_size) / "records.jsonl").write_text('{"image_id": 7}\n')
    return description


def test_a_sharded_run_is_resumed_only_with_its_number_of_processes(tmp_path):
    description = make_sharded_run(tmp_path, 2)
    open_sharded_run(tmp_path, description, 2, resume=True)  # same world size: accepted
    with pytest.raises(TinySaverInputError, match="it was run by 2 process.*this job has 3.*--nproc_per_node 2"):
        open_sharded_run(tmp_path, description, 3, resume=True)
    with pytest.raises(TinySaverInputError, match="it was run by 2 process.*this job has 1"):
        open_run(tmp_path, description, dataset=None, resume=True)


def test_a_one_process_run_is_not_resumed_by_several(tmp_path):
    open_run(tmp_path, {"batch_size": 4}, dataset=None)
    with pytest.raises(TinySaverInputError, match="it was run by 1 process.*this job has 2.*one process"):
        open_sharded_run(tmp_path, {"batch_size": 4}, 2, resume=True)


def test_a_new_run_is_refused_where_only_shards_remain_and_overwrite_removes_them(tmp_path):
    make_sharded_run(tmp_path, 2)
    (tmp_path / "run.json").unlink()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TinySaverInputError, match=r"already holds a run \(shards/rank-1-of-2/\)"):
        open_run(tmp_path, {"batch_size": 4}, dataset=None)
    open_run(tmp_path, {"batch_size": 4}, dataset=None, overwrite=True)
    assert not (shard_dir(tmp_path, 1, 2) / "records.jsonl").exists() and (tmp_path / "notes.txt").exists()


def test_an_incomplete_shard_is_not_merged(tmp_path):
    for rank, ids in enumerate([[1, 2], [3]]):
        shard_dir(tmp_path, rank, 2).mkdir(parents=True)
        (shard_dir(tmp_path, rank, 2) / "records.jsonl").write_text("".join(f'{{"image_id": {i}}}\n' for i in ids))
    sources = [shard_dir(tmp_path, rank, 2) / "records.jsonl" for rank in range(2)]
    assert [row["image_id"] for row in merge_jsonl(sources, tmp_path / "records.jsonl", [1, 2, 3])] == [1, 2, 3]
    with pytest.raises(TinySaverInputError, match="do not hold one row per image in dataset order"):
        merge_jsonl(sources, tmp_path / "records.jsonl", [1, 2, 3, 4])


def test_the_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert environment_context() == DistContext(rank=1, world_size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(TinySaverInputError, match="RANK=4, WORLD_SIZE=4"):
        environment_context()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TinySaverInputError, match="WORLD_SIZE must be an integer, got 'two'"):
        environment_context()
    assert rank_device("cuda", DistContext(1, 4, 1, "nccl")) == "cuda:1"


def test_a_cuda_rank_without_its_gpu_is_refused_before_the_process_group_starts(monkeypatch):
    """Two nccl ranks on a one-GPU node: rank 1 would need cuda:1. One line, no CUDA error from deep inside."""
    import torch
    import torch.distributed as dist

    from tinysaver_det.distributed import process_group

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("set_device was called"))
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("init_process_group was called"))
    with pytest.raises(TinySaverInputError, match=r"rank 1 \(LOCAL_RANK 1\) needs cuda:1, but this node has 1 GPU"):
        with process_group("0"):
            pass


def test_an_error_raised_on_every_rank_is_printed_by_rank_zero_alone(capsys):
    from tinysaver_det.errors import EveryRankInputError, exit_code_of

    def every_rank(rank):  # as DistContext.raise_if_any raises it on each rank
        raise EveryRankInputError("rank 0: cannot resume runs/x; rank 1: cannot resume runs/x", printed_here=rank == 0)

    def this_rank():
        raise TinySaverInputError("rank 1 (LOCAL_RANK 1) needs cuda:1")

    assert exit_code_of(every_rank, 1) == 2 and capsys.readouterr().err == ""
    assert exit_code_of(this_rank) == 2 and capsys.readouterr().err == "error: rank 1 (LOCAL_RANK 1) needs cuda:1\n"
    assert exit_code_of(every_rank, 0) == 2
    assert capsys.readouterr().err == "error: rank 0: cannot resume runs/x; rank 1: cannot resume runs/x\n"


def test_an_interrupted_torchrun_job_is_resumed_with_torchrun(monkeypatch, capsys):
    """SIGTERM reaches every rank: rank 0 prints the command, with the job's number of processes."""
    from tinysaver_det.cli.options import interrupted, resume_command

    argv = ["/site/tinysaver_det/__main__.py", "eval", "--t", "0.3", "--overwrite"]
    assert resume_command(argv, {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}) == (
        "torchrun --nnodes 2 --nproc_per_node 8 <the job's rendezvous flags> -m tinysaver_det eval --t 0.3 --resume")
    assert resume_command(["tools/eval_coco.py", "--resume"], {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}) == (
        "torchrun --standalone --nproc_per_node 2 tools/eval_coco.py --resume")
    monkeypatch.setattr(sys, "argv", argv)
    for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert interrupted("runs/x") == 130 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert interrupted("runs/x") == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "  torchrun --standalone --nproc_per_node 2 -m tinysaver_det eval --t 0.3 --resume")


def test_one_process_raises_its_own_error_unchanged():
    SINGLE = DistContext()
    SINGLE.raise_if_any(None)
    error = FileNotFoundError("weights file not found: x.pt")
    with pytest.raises(FileNotFoundError) as raised:
        SINGLE.raise_if_any(error)
    assert raised.value is error
    assert SINGLE.gather(3) == [3] and SINGLE.broadcast("summary") == "summary"


def test_a_shard_folder_held_by_another_process_stops_the_run_before_any_image(fake_dataset, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tinysaver_det.lock import RunLock\n"
         "RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)", str(shard_dir(out, 1, 3))],
        env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TinySaverInputError, match=r"rank 1: .*rank-1-of-3 is being written by another run"):
            run_sharded_in_one_process(fake_dataset, out, 3)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "records.jsonl").exists() and not (shard_dir(out, 1, 3) / "records.jsonl").exists()


@pytest.fixture(scope="module")
def photos_and_clip(tmp_path_factory):
    """Five demo images, a 4-frame video and a file that is not an image (sorted last, as Ultralytics
    lists images, so it skips no image of a batch before it)."""
    import cv2

    from tinysaver_det import assets
    from tests.videos import write_video

    folder = tmp_path_factory.mktemp("photos")
    images = sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))
    for path in images[:5]:
        shutil.copy(path, folder / path.name)
    write_video(folder / "clip.avi", [cv2.resize(cv2.imread(str(p)), (64, 64)) for p in images[5:9]], fps=10)
    (folder / "zz_broken.jpg").write_bytes(b"not a jpeg")
    return folder


def without_ms(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in ("ms", "ms_per_image", "images_per_second")}
            for row in rows]


@pytest.mark.slow
def test_predict_on_files_shards_as_eval_does_and_merges_the_one_process_rows(photos_and_clip, tmp_path):
    """Two ranks (simulated in this process) write the rows and summary of one process: 6 image files in
    batches of 2 are 3 units and the video one more; rank 0 runs 2 batches, rank 1 the last batch
    (its image that does not decode included) and the whole video."""
    from tinysaver_det.api import TinySaver
    from tinysaver_det.predict_run import run_predictions

    cascade = TinySaver("demo:pico", "demo:n", 0.25)
    options = dict(conf=0.25, batch=2, save=True, progress=False)
    one = run_predictions(cascade, photos_and_clip, tmp_path / "one", **options)
    two = sharded_in_one_process(lambda context: run_predictions(
        cascade, photos_and_clip, tmp_path / "two", context=context, **options))

    rows = read_jsonl(tmp_path / "two" / "predictions.jsonl")
    assert without_ms(rows) == without_ms(read_jsonl(tmp_path / "one" / "predictions.jsonl"))
    assert rows[-1]["status"] == "unreadable" and {r["frame"] for r in rows if r["source"].endswith(".avi")} == {1, 2, 3, 4}
    assert without_ms([two]) == without_ms([one]) and two["images"] == 9 and two["unreadable"] == 1
    shards = [read_jsonl(shard_dir(tmp_path / "two", rank, 2) / "predictions.jsonl") for rank in (0, 1)]
    assert [len(shard) for shard in shards] == [4, 6]  # 4 images | 1 image, 4 frames, the unreadable one
    assert sorted(p.name for p in (tmp_path / "two" / "annotated").iterdir()) == sorted(
        p.name for p in (tmp_path / "one" / "annotated").iterdir())
    assert json.loads((tmp_path / "two" / "predict.json").read_text())["world_size"] == 2

    again = sharded_in_one_process(lambda context: run_predictions(
        cascade, photos_and_clip, tmp_path / "two", resume=True, context=context, **options))
    assert again == two and read_jsonl(tmp_path / "two" / "predictions.jsonl") == rows  # every shard was done
    with pytest.raises(TinySaverInputError, match="run by 2 process.*this job has 1"):
        run_predictions(cascade, photos_and_clip, tmp_path / "two", resume=True, **options)
