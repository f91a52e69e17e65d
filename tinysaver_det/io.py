"""Files that survive a crash: final outputs are written atomically, streams are flushed per batch."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

_TEMPORARY_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read the process's umask (the only way is to set it) and put it back
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one, never a part.

    The text goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows). The file gets the permissions a plain
    ``open`` would give it (``mkstemp`` makes it private to its owner).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX, dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete the temporary files that :func:`atomic_write_text` of ``path`` left behind when its
    process was killed (a kill skips the clean-up); ``path`` itself is never touched."""
    path = Path(path)
    for temporary in path.parent.glob(f".{path.name}.*{_TEMPORARY_SUFFIX}"):
        temporary.unlink(missing_ok=True)


def atomic_write_json(path: str | Path, data, indent: int | None = None) -> None:
    """:func:`atomic_write_text` of ``json.dumps(data)``."""
    atomic_write_text(path, json.dumps(data, indent=indent))


class JsonlWriter:
    """Appends one json object per line and flushes after each :meth:`write_many`, so a killed run
    keeps every batch it finished."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stream = self.path.open("a")

    def write_many(self, rows) -> None:
        self._stream.writelines(json.dumps(row) + "\n" for row in rows)
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a json-lines file."""
    with Path(path).open() as stream:
        return [json.loads(line) for line in stream if line.strip()]


def truncate_jsonl(path: str | Path, keep: Callable[[int, dict], bool]) -> list[dict]:
    """Cut a json-lines file after its longest prefix of rows to keep, and return those rows.

    A row is kept when its line is complete (ends with a newline), parses, and ``keep(index, row)``
    is true; the file is cut (and synced) at the first line that fails, which drops a line half
    written by a killed process together with everything after it. A missing file has no rows.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows, end = [], 0
    with path.open("rb") as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except ValueError:
                break
            if not keep(len(rows), row):
                break
            rows.append(row)
            end += len(line)
    if end < path.stat().st_size:
        with path.open("r+b") as stream:
            stream.truncate(end)
            os.fsync(stream.fileno())
    return rows


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
