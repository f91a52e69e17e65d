"""Child-process helpers of the resume and one-writer tests: how far a run got, and a crash in its middle."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The environment of a child run: this checkout's package, no Ultralytics network checks.
CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1"}


def count_lines(path: Path) -> int:
    """Lines committed to a json-lines file so far (0 before it exists)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_midway(command: list[str], written: Path, lines: int, log: Path, poll: float = 0.02,
                patience: float = 180.0) -> None:
    """Run ``command`` (stderr to ``log``) and SIGKILL it once ``written`` holds ``lines`` lines.

    ``lines`` must leave the run work still to do, so the kill lands in its middle: the test fails, naming
    the child's stderr, if the run ends before that or commits nothing for ``patience`` seconds.
    """
    with log.open("w") as stderr:
        process = subprocess.Popen([str(part) for part in command], env=CHILD_ENV, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
    deadline = time.monotonic() + patience
    try:
        while count_lines(written) < lines:
            assert process.poll() is None, f"the run ended before it could be killed: {log.read_text()}"
            assert time.monotonic() < deadline, f"the run made no progress: {log.read_text()}"
            time.sleep(poll)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
