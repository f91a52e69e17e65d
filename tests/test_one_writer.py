"""One writer per run directory, with real processes on the demo models: a second run (or a --resume)
on an --out that a run is writing is refused, naming the holder; the first finishes with every image
exactly once; a later --resume changes nothing. SIGTERM stops a run like Ctrl-C, with the command
that resumes it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinysaver_det.io import read_jsonl
from tinysaver_det.lock import LOCK_FILE

from tests.runs import count_lines

REPO = Path(__file__).resolve().parent.parent
N_IMAGES = 120
COMMAND = [sys.executable, "-m", "tinysaver_det", "eval", "--limit", str(N_IMAGES), "--batch", "4", "--t", "0.25",
           "--full", "--quiet"]
OUTPUTS = ("records.jsonl", "saver_predictions.jsonl", "base_predictions.jsonl", "results.json",
           "results_saver.json", "results_base.json", "errors.json", "run.json")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1"}


def start_run(out: Path, log: Path) -> subprocess.Popen:
    """Start a run and return once it holds the lock (its models may still be loading)."""
    with log.open("w") as stderr:
        process = subprocess.Popen([*COMMAND, "--out", str(out)], env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
    deadline = time.monotonic() + 120
    while not ((out / LOCK_FILE).exists() and (out / LOCK_FILE).read_text()):
        assert process.poll() is None, f"the run ended before it took the lock: {log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return process


@pytest.mark.slow
@pytest.mark.usefixtures("assets_folder")  # the demo defaults
def test_a_second_writer_is_refused_the_first_finishes_whole_and_a_resume_changes_nothing(tmp_path):
    out = tmp_path / "run"
    first = start_run(out, tmp_path / "first.txt")
    try:
        second = subprocess.run([*COMMAND, "--out", str(out), "--resume"], env=ENV, cwd=REPO, capture_output=True,
                                text=True, timeout=600)
        assert first.poll() is None, "the first run ended before the second tried: the test proves nothing"
    finally:
        assert first.wait(timeout=600) == 0, (tmp_path / "first.txt").read_text()

    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"error: {out} is being written by another run (pid {first.pid} on ")
    assert "eval --limit 120" in lines[0] and lines[0].endswith("wait for it to finish, or choose another --out")

    ids = [row["image_id"] for row in read_jsonl(out / "records.jsonl")]
    assert len(ids) == len(set(ids)) == N_IMAGES
    for name in ("saver_predictions.jsonl", "base_predictions.jsonl"):
        assert sorted(row["image_id"] for row in read_jsonl(out / name)) == sorted(ids), name
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    assert (out / LOCK_FILE).read_text() == ""  # released: nobody writes

    later = subprocess.run([*COMMAND, "--out", str(out), "--resume"], env=ENV, cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert later.returncode == 0, later.stderr[-2000:]
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before


@pytest.mark.slow
@pytest.mark.usefixtures("assets_folder")  # the demo defaults
def test_sigterm_stops_a_run_like_ctrl_c_with_the_command_that_resumes_it(tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    process = start_run(out, log)
    deadline = time.monotonic() + 300
    while count_lines(out / "records.jsonl") < 8:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 130
    err = log.read_text()
    assert "Traceback" not in err
    assert f"interrupted: the finished batches are in {out}; continue with:" in err
    resume = err.strip().splitlines()[-1].strip()
    assert resume.startswith("python -m tinysaver_det eval --limit 120") and resume.endswith("--resume")
    done = count_lines(out / "records.jsonl")
    assert 8 <= done < N_IMAGES and json.loads((out / "run.json").read_text())["n_images"] == N_IMAGES
