"""Files that survive a crash: final outputs are written atomically, streams are flushed per batch."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one, never a part.

    The text goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
