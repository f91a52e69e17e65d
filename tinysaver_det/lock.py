"""One writer per run directory: an exclusive lock held for the whole run.

Two processes writing one run directory lose work: a ``--resume`` started while a run is still
writing cuts the files the other is appending to. :class:`RunLock` takes an exclusive
``fcntl.flock`` on a lock file inside the directory for as long as the run writes there. The lock
belongs to the open file, so the operating system releases it when the process ends in any way
(``kill -9`` included): there is never a stale lock to clean up, and the file left behind is
harmless. The holder writes its pid, host, command and start time into the file, so a refused
writer can say who holds the directory.

Locks are advisory: they keep out every process that asks for one (every tinysaver_det tool that
writes a run directory does). ``flock`` works on local file systems; on NFS, Linux maps it to
``fcntl`` byte-range locks, which the server also honours.

Within one process the lock is re-entrant (a library call that locks a directory the calling tool
already holds just goes on), and a forked child shares its parent's lock, as a data loader worker
does.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from tinysaver_det.errors import TinySaverInputError

LOCK_FILE = ".tinysaver.lock"

_held: dict[str, list] = {}  # lock file path -> [file descriptor, depth], for this process
_held_guard = threading.Lock()


class RunLockedError(TinySaverInputError):
    """Another process holds the run directory; the message names it (pid, host, command, start)."""


def _holder_text(lock_file: Path) -> str:
    """What the holder wrote into ``lock_file``, as one phrase (it may be mid-write: then 'unknown')."""
    try:
        holder = json.loads(lock_file.read_text())
        return (
            f"pid {holder['pid']} on {holder['host']}, started {holder['started']}, "
            f"command: {holder['command']}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not known yet (it is just starting)"


class RunLock:
    """An exclusive lock on a run directory, as a context manager.

    Args:
        directory: the run directory; it is created when missing. The lock file is
            ``directory/.tinysaver.lock``.
        command: what to report as the holder's command (default: this process's ``sys.argv``).
        lock_name: the lock file's name in ``directory``; :meth:`for_file` locks one output file
            (``.<name>.lock``) instead of its whole folder.

    Raises (from :meth:`acquire` / ``with``):
        RunLockedError: another process holds the lock (``error: ...`` and exit 2 in the tools).
        TinySaverInputError: the directory cannot be made or the lock file cannot be opened
            (a file in the way, no permission, no space), naming the path.

    >>> import tempfile
    >>> with RunLock(tempfile.mkdtemp()) as lock:
    ...     lock.held
    True
    """

    def __init__(self, directory: str | Path, command: str | None = None, lock_name: str = LOCK_FILE) -> None:
        self.directory = Path(directory)
        self.lock_file = self.directory / lock_name
        self.command = command if command is not None else " ".join([Path(sys.executable).name, *sys.argv])
        self._key = str(self.lock_file.absolute())
        self.held = False

    @classmethod
    def for_file(cls, path: str | Path, command: str | None = None) -> "RunLock":
        """A lock on one output file (``predict-coco``'s predictions file): ``.<name>.lock`` beside it,
        so that writers of other files in the same folder are not kept out."""
        path = Path(path)
        return cls(path.parent, command, lock_name=f".{path.name}.lock")

    def acquire(self) -> "RunLock":
        """Take the lock now, or raise :class:`RunLockedError` at once (never waits)."""
        if self.held:
            return self
        with _held_guard:
            if self._key in _held:
                _held[self._key][1] += 1
                self.held = True
                return self
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    target = self.directory if self.lock_file.name == LOCK_FILE else self.lock_file.parent / self.lock_file.name[1:-5]
                    raise RunLockedError(
                        f"{target} is being written by another run ({_holder_text(self.lock_file)}); "
                        "wait for it to finish, or choose another --out"
                    ) from None
                raise TinySaverInputError(f"cannot lock {self.lock_file}: {error.strerror}") from None
            try:
                self._write_holder(fd)
            except OSError as error:
                os.close(fd)  # releases the lock
                raise TinySaverInputError(f"cannot write {self.lock_file}: {error.strerror}") from None
            _held[self._key] = [fd, 1]
            self.held = True
        return self

    def release(self) -> None:
        """Give the lock back (the last release of this process empties the file and unlocks it)."""
        if not self.held:
            return
        with _held_guard:
            self.held = False
            entry = _held[self._key]
            entry[1] -= 1
            if entry[1]:
                return
            del _held[self._key]
            fd = entry[0]
            try:
                os.ftruncate(fd, 0)  # the holder's details are about a run that no longer writes
            except OSError:
                pass
            os.close(fd)  # closing the last descriptor releases the flock

    def _open(self) -> int:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except FileExistsError:
            what = "run directory" if self.lock_file.name == LOCK_FILE else "output folder"
            raise TinySaverInputError(f"{what} {self.directory} is a file, not a folder") from None
        except OSError as error:
            where = error.filename or self.lock_file
            raise TinySaverInputError(f"cannot create the lock file of run directory {where}: {error.strerror}") from None

    def _write_holder(self, fd: int) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        data = json.dumps(holder).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.directory)!r}, held={self.held})"
