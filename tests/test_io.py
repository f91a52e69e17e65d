"""Crash safety of the file helpers: atomic final outputs, repairable json-lines streams."""

import json
import os

import pytest

from tinysaver_det import io


class _DiskFullAfter:
    """A text stream that writes the first ``limit`` characters, then fails like a full disk."""

    def __init__(self, stream, limit):
        self.stream, self.limit = stream, limit

    def write(self, text):
        self.stream.write(text[: self.limit])
        self.stream.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()


def test_a_write_failing_midway_leaves_the_old_file_whole_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    io.atomic_write_json(target, [{"score": 0.5}] * 3)
    old = target.read_text()
    real_fdopen = os.fdopen
    monkeypatch.setattr(io.os, "fdopen", lambda fd, mode: _DiskFullAfter(real_fdopen(fd, mode), 10))
    with pytest.raises(OSError, match="No space left"):
        io.atomic_write_json(target, [{"score": 0.9}] * 1000)
    assert target.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_write_failing_midway_leaves_no_file_when_there_was_none(tmp_path, monkeypatch):
    real_fdopen = os.fdopen
    monkeypatch.setattr(io.os, "fdopen", lambda fd, mode: _DiskFullAfter(real_fdopen(fd, mode), 10))
    with pytest.raises(OSError):
        io.atomic_write_text(tmp_path / "summary.md", "x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_are_readable_like_plain_files(tmp_path):
    io.atomic_write_text(tmp_path / "a.txt", "a")
    (tmp_path / "b.txt").write_text("b")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode


def test_stale_temporaries_of_a_killed_write_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "results.json").write_text("[]")
    (tmp_path / ".results.json.abc123.tmp").write_text("[{")
    (tmp_path / ".other.json.abc123.tmp").write_text("keep")
    io.remove_stale_temporaries(tmp_path / "results.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc123.tmp", "results.json"]


def test_truncate_jsonl_drops_a_half_written_line_and_everything_after_a_rejected_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"image_id": i}) + "\n" for i in range(5)]
    path.write_text("".join(lines) + '{"image_id": 5, "bo')
    assert [r["image_id"] for r in io.truncate_jsonl(path, lambda i, row: True)] == [0, 1, 2, 3, 4]
    assert path.read_text() == "".join(lines)
    assert [r["image_id"] for r in io.truncate_jsonl(path, lambda i, row: row["image_id"] != 3)] == [0, 1, 2]
    assert path.read_text() == "".join(lines[:3])
    with io.JsonlWriter(path) as writer:  # appending goes on after the cut
        writer.write_many([{"image_id": 3}])
    assert [r["image_id"] for r in io.read_jsonl(path)] == [0, 1, 2, 3]


def test_truncate_jsonl_stops_at_a_corrupt_line_and_a_missing_file_has_no_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    assert io.truncate_jsonl(path, lambda i, row: True) == [{"a": 1}]
    assert path.read_text() == '{"a": 1}\n'
    assert io.truncate_jsonl(tmp_path / "absent.jsonl", lambda i, row: True) == []
    assert not (tmp_path / "absent.jsonl").exists()
