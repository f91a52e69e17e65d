"""RunLock: one writer per run directory, released by the OS whatever way its holder ends."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.lock import LOCK_FILE, RunLock, RunLockedError

REPO = Path(__file__).resolve().parent.parent

HOLDER = """
import sys, time
from tinysaver_det.lock import RunLock
with RunLock(sys.argv[1], command="holder-command --out x"):
    print("locked", flush=True)
    time.sleep(600)
"""


def start_holder(directory):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_refused_naming_the_holder_and_kill_9_leaves_nothing_stale(tmp_path):
    holder = start_holder(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError) as refused:
            RunLock(tmp_path / "run").acquire()
        message = str(refused.value)
        assert f"pid {holder.pid} on " in message and "holder-command --out x" in message and "started 20" in message
        assert isinstance(refused.value, TinySaverInputError)  # the tools print it as error: ... with exit 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run" / LOCK_FILE).exists()  # left behind by kill -9, and harmless:
    with RunLock(tmp_path / "run") as lock:
        assert lock.held


def test_the_lock_is_reentrant_within_a_process_and_released_by_the_last_holder(tmp_path):
    outer = RunLock(tmp_path)
    with outer:
        with RunLock(tmp_path) as inner:
            assert inner.held
        assert outer.held
        holder_text = (tmp_path / LOCK_FILE).read_text()
        assert f'"pid": {os.getpid()}' in holder_text
    assert not outer.held and (tmp_path / LOCK_FILE).read_text() == ""
    # released: another process can take it now
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def test_one_directory_locked_does_not_lock_another(tmp_path):
    with RunLock(tmp_path / "a"), RunLock(tmp_path / "b") as b:
        assert b.held


@pytest.mark.parametrize("case", ["directory is a file", "below a file"])
def test_a_directory_that_cannot_be_made_is_an_input_error_naming_it(tmp_path, case):
    (tmp_path / "f").write_text("x")
    directory = tmp_path / "f" if case == "directory is a file" else tmp_path / "f" / "run"
    with pytest.raises(TinySaverInputError, match=str(tmp_path / "f")):
        RunLock(directory).acquire()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_directory_without_write_permission_is_an_input_error(tmp_path):
    tmp_path.joinpath("ro").mkdir(mode=0o500)
    with pytest.raises(TinySaverInputError, match="Permission denied"):
        RunLock(tmp_path / "ro").acquire()


def test_the_repair_of_a_resumed_run_never_runs_while_another_process_holds_the_directory(tmp_path):
    """open_run (clean-up and repair) takes the lock itself: refused while a holder writes, nothing touched."""
    from tinysaver_det.detection.run_directory import open_run

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "records.jsonl").write_text('{"image_id": 1}\n{"image_')  # what a repair would cut
    holder = start_holder(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError):
            open_run(tmp_path / "run", {}, dataset=None, resume=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run" / "records.jsonl").read_text() == '{"image_id": 1}\n{"image_'


FILE_HOLDER = """
import sys, time
from tinysaver_det.lock import RunLock
with RunLock.for_file(sys.argv[1], command="predict-coco --out p.jsonl"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_one_writer_per_predictions_file_and_other_files_of_its_folder_stay_free(tmp_path):
    from tinysaver_det.detection.runner import evaluate_multistage, predict_dataset

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", FILE_HOLDER, str(tmp_path / "p.jsonl")], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        with pytest.raises(RunLockedError, match=rf"{tmp_path / 'p.jsonl'} is being written by another run \(pid {holder.pid}"):
            predict_dataset(None, None, tmp_path / "p.jsonl")  # refused before it reads anything
        with RunLock.for_file(tmp_path / "q.jsonl"), RunLock(tmp_path):  # the folder and its other files are free
            pass
        with RunLock(tmp_path / "m"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    multistage_holder = start_holder(tmp_path / "m")
    try:
        with pytest.raises(RunLockedError, match=f"pid {multistage_holder.pid}"):
            evaluate_multistage(None, None, tmp_path / "m")
    finally:
        multistage_holder.send_signal(signal.SIGKILL)
        multistage_holder.wait()
