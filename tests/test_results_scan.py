"""The compiled results-json reader gives json.loads' values bit for bit, or leaves the file to json.loads.

Each case is a results json as text; the reference is ``json.loads`` followed by the columns the
``json.loads`` path of ``load_results_columns`` builds. The reader may answer None for any file (the
caller then reads it with json.loads), but whatever it answers must be the reference exactly, and
for the files real tools write (Ultralytics' rounded numbers, mmdet's full-precision floats, pretty
printed or not, an extra ``file_name``) it must answer.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest.importorskip("numba")

from tinysaver_det.detection.coco import results_scan  # noqa: E402
from tinysaver_det.detection.coco.results_json import (  # noqa: E402
    _fast_columns,
    load_results_columns,
    load_results_json,
)
from tinysaver_det.errors import TinySaverInputError  # noqa: E402


@pytest.fixture(autouse=True)
def compiled_reader_for_small_files(monkeypatch):
    monkeypatch.setattr(results_scan, "MIN_COMPILED_BYTES", 0)


def reference(text: str):
    """json.loads' columns, or None where json.loads or the type checks refuse the text."""
    try:
        entries = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entries, list):
        return None
    columns = _fast_columns(entries)
    if columns is None:
        return None
    return columns.image_ids, columns.category_ids, columns.boxes_xywh, columns.scores


def scanned(tmp_path, text: str, name: str = "r.json"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return results_scan.scan_results_file(path)


def assert_bitwise_equal(got, expected):
    assert got is not None and expected is not None
    for ours, theirs in zip(got, expected):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours.view(np.int64), theirs.view(np.int64))


def number_texts(rng: random.Random, n: int) -> list[str]:
    """Numbers as json writers print them, and the edge cases of json's number grammar."""
    fixed = ["0", "-0", "0.0", "-0.0", "1", "-1", "1e5", "1E5", "1e-5", "2.5e+2", "-2.5E-2", "100e-2",
             "0.000123", "123456789012345678", "1234567890123456789", "123456789012345678901234567890",
             "9007199254740993", "9007199254740992.5", "0.1", "0.30000000000000004", "5e-324", "4.9e-324",
             "2.2250738585072011e-308", "1.7976931348623157e308", "1e22", "1e23", "1e-22", "1e-23",
             "123456789012345.6", "1.23456789012345678901", "0.00000000000000000000000001", "1e400", "-1e400",
             "1e-400", "3.14159e0", "00.5e0"[1:]]
    out = list(fixed)
    for _ in range(n):
        kind = rng.randrange(5)
        value = rng.uniform(-700, 700)
        if kind == 0:
            out.append(repr(round(value, 3)))  # Ultralytics' boxes
        elif kind == 1:
            out.append(repr(float(np.float32(value))))  # mmdet's float32 boxes, 17 digits
        elif kind == 2:
            out.append(repr(value * 10 ** rng.randint(-30, 30)))
        elif kind == 3:
            out.append(str(rng.randint(-10**6, 10**6)))
        else:
            out.append(f"{value:.{rng.randint(0, 20)}e}")
    return out


def entry_text(rng: random.Random, numbers: list[str], space: str = " ", extra: bool = False) -> str:
    items = [f'"image_id":{space}{rng.randint(-5, 10**9)}', f'"category_id":{space}{rng.randint(0, 90)}',
             f'"bbox":{space}[{f",{space}".join(rng.choice(numbers) for _ in range(4))}]',
             f'"score":{space}{rng.choice(numbers)}']
    if extra:
        items.append(rng.choice(['"file_name": "000000397133.jpg"', '"area": 12.5', '"iscrowd": false',
                                 '"segmentation": null', '"id": 7', '"note": ""']))
    rng.shuffle(items)
    return "{" + f",{space}".join(items) + "}"


@pytest.mark.parametrize("seed", range(8))
def test_well_formed_files_are_read_exactly_as_json_loads_reads_them(tmp_path, seed):
    rng = random.Random(seed)
    numbers = number_texts(rng, 400)
    space = ["", " ", "\n  ", "\t", "\r\n"][seed % 5]
    entries = [entry_text(rng, numbers, space, extra=seed % 2 == 1) for _ in range(300)]
    text = f"[{space}" + f",{space}".join(entries) + f"{space}]{space}"
    assert_bitwise_equal(scanned(tmp_path, text), reference(text))


def test_the_files_tools_write_are_read_by_the_compiled_reader(tmp_path):
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 640, (50, 4))
    scores = rng.uniform(0, 1, 50)
    ultralytics = [{"image_id": 42, "file_name": "000000000042.jpg", "category_id": 18,
                    "bbox": [round(float(v), 3) for v in box], "score": round(float(s), 5)}
                   for box, s in zip(boxes, scores)]
    mmdet = [{"image_id": 42, "bbox": [float(v) for v in box.astype(np.float32)], "score": float(np.float32(s)),
              "category_id": 18} for box, s in zip(boxes, scores)]
    for results, indent in ((ultralytics, None), (mmdet, None), (mmdet, 2), ([], None)):
        text = json.dumps(results, indent=indent)
        assert_bitwise_equal(scanned(tmp_path, text), reference(text))


@pytest.mark.parametrize("text", [
    "",
    "{}",
    "[1, 2]",
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}] x',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}',
    '[{"image_id": 1 "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 01, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": .5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": +1}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1e}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, Infinity], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, -Infinity], "score": 0.5}]',
    '[{"image_id": 1.0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 1e0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": true, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 99999999999999999999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "0.5"}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": true}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.30000000000000004, "score": 0.5}]',
    '[{"image_id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "seg": [[1, 2]]}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "name": "a\\"b"}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "name": "caf\u00e9"}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "name": "a\tb"}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "flag": tru}]',
    '[{"image\\u005fid": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '\ufeff[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, [1]]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}\f]',
])
def test_what_it_cannot_read_exactly_is_left_to_json_loads(tmp_path, text):
    got = scanned(tmp_path, text)
    if got is not None:  # the reader may read it only where json.loads reads the same
        assert_bitwise_equal(got, reference(text))
    if reference(text) is None:
        assert got is None


def test_small_files_and_missing_files_are_left_to_json_loads(tmp_path, monkeypatch):
    text = '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]'
    assert scanned(tmp_path, text) is not None
    monkeypatch.setattr(results_scan, "MIN_COMPILED_BYTES", len(text) + 1)
    assert scanned(tmp_path, text) is None
    assert results_scan.scan_results_file(tmp_path / "missing.json") is None


@pytest.mark.parametrize("bad", [
    {"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.5},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")},
])
def test_a_file_the_reader_reads_but_the_checks_refuse_gets_the_entry_checks_message(tmp_path, bad):
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([good, bad, good]))
    with pytest.raises(TinySaverInputError) as expected:
        load_results_json(path, [1, 2], [1])
    with pytest.raises(TinySaverInputError) as got:
        load_results_columns(path, [1, 2], [1])
    assert str(got.value) == str(expected.value) and "[1]" in str(got.value)


def test_load_results_columns_reads_through_the_compiled_reader(tmp_path, monkeypatch):
    """Valid columns come from the compiled reader (json.loads is never called) and equal the json path's."""
    import tinysaver_det.detection.coco.results_json as module

    rng = random.Random(3)
    boxes = [n for n in number_texts(rng, 300) if 0 <= float(n) < float("inf")]
    scores = [n for n in number_texts(rng, 300) if 0 <= float(n) <= 1]
    text = "[" + ", ".join(
        f'{{"image_id": {rng.choice([1, 2])}, "category_id": 1, '
        f'"bbox": [{", ".join(rng.choice(boxes) for _ in range(4))}], "score": {rng.choice(scores)}}}'
        for _ in range(200)) + "]"
    path = tmp_path / "r.json"
    path.write_text(text)
    expected = reference(text)

    def no_json_loads(*args, **kwargs):
        raise AssertionError("json.loads was called")

    monkeypatch.setattr(module, "read_json", no_json_loads)
    columns = load_results_columns(path, [1, 2], [1])
    assert_bitwise_equal((columns.image_ids, columns.category_ids, columns.boxes_xywh, columns.scores), expected)
