"""Files that survive a crash: final outputs are written atomically, streams are flushed per batch."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

from tinysaver_det.errors import TinySaverInputError

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


class NonFiniteJsonError(ValueError):
    """A value to write as json is NaN or infinite; the message names where it is."""


def _first_non_finite(data, place: str = "") -> tuple[str, float] | None:
    """``(place, value)`` of the first NaN or infinite float in nested dicts/lists/tuples, else None."""
    if isinstance(data, float):
        return None if math.isfinite(data) else (place or "the value", data)
    if isinstance(data, dict):
        items = ((f"{place}.{key}" if place else str(key), value) for key, value in data.items())
    elif isinstance(data, (list, tuple)):
        items = (((f"{place}[{index}]"), value) for index, value in enumerate(data))
    else:
        return None
    for where, value in items:
        found = _first_non_finite(value, where)
        if found:
            return found
    return None


def strict_json_dumps(data, indent: int | None = None) -> str:
    """``json.dumps`` that writes strict JSON: a NaN or an infinity is an error, never a ``NaN`` or
    ``Infinity`` token (which Python accepts back but most JSON readers reject).

    Raises:
        NonFiniteJsonError: naming the place of the first non-finite number.

    >>> strict_json_dumps({"AP": 0.5, "rows": [1, 2]})
    '{"AP": 0.5, "rows": [1, 2]}'
    >>> strict_json_dumps({"rows": [{"gflops": float("nan")}]})
    Traceback (most recent call last):
    ...
    tinysaver_det.io.NonFiniteJsonError: rows[0].gflops is nan: JSON has no NaN or Infinity
    """
    try:
        return json.dumps(data, indent=indent, allow_nan=False)
    except ValueError:
        found = _first_non_finite(data)
        if found is None:  # a numpy float or another type json reached through a default: say what it is
            raise
        raise NonFiniteJsonError(f"{found[0]} is {found[1]}: JSON has no NaN or Infinity") from None


def atomic_write_json(path: str | Path, data, indent: int | None = None) -> None:
    """:func:`atomic_write_text` of :func:`strict_json_dumps` ``(data)``.

    Raises:
        NonFiniteJsonError: ``data`` holds a NaN or an infinity (the message names the file and
            the place); nothing is written.
    """
    try:
        text = strict_json_dumps(data, indent=indent)
    except NonFiniteJsonError as error:
        raise NonFiniteJsonError(f"cannot write {path}: {error}") from None
    atomic_write_text(path, text)


class JsonlWriter:
    """Appends one json object per line and flushes after each :meth:`write_many`, so a killed run
    keeps every batch it finished. Rows are strict JSON (:func:`strict_json_dumps`), and a batch
    with a non-finite number is refused whole, before any of its lines is written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stream = self.path.open("a")

    def write_many(self, rows) -> None:
        lines = []
        for row in rows:
            try:
                lines.append(strict_json_dumps(row) + "\n")
            except NonFiniteJsonError as error:
                raise NonFiniteJsonError(f"cannot write {self.path}: {error}") from None
        self._stream.writelines(lines)
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_json(path: str | Path, what: str):
    """The content of the json file ``path``; ``what`` names it in the errors (``"results file"``).

    Raises:
        FileNotFoundError: ``<what> not found: <path>``.
        TinySaverInputError: ``<what> <path> is not valid json: <why>``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TinySaverInputError(f"{what} {path} is not valid json: {error}") from None


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
