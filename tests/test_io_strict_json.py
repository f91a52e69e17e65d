"""Every json tinysaver_det writes is strict JSON: no NaN or Infinity token, an error naming the place."""

import json
import math

import pytest

from tinysaver_det.io import JsonlWriter, NonFiniteJsonError, atomic_write_json, read_jsonl


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_naming_the_file_and_the_place(tmp_path, value):
    with pytest.raises(NonFiniteJsonError, match=r"summary\.json: cascade\.metrics\.AP is (nan|inf|-inf)"):
        atomic_write_json(tmp_path / "summary.json", {"cascade": {"metrics": {"AP": value}}})
    assert not (tmp_path / "summary.json").exists()


def test_a_jsonl_batch_with_a_non_finite_number_is_refused_whole(tmp_path):
    with JsonlWriter(tmp_path / "records.jsonl") as writer:
        writer.write_many([{"image_id": 1, "confidence": 0.5}])
        with pytest.raises(NonFiniteJsonError, match=r"records\.jsonl: \[1\]|records\.jsonl: confidence is nan"):
            writer.write_many([{"image_id": 2, "confidence": 0.1}, {"image_id": 3, "confidence": math.nan}])
    assert read_jsonl(tmp_path / "records.jsonl") == [{"image_id": 1, "confidence": 0.5}]


def test_finite_data_reads_back_with_a_strict_parser(tmp_path):
    data = {"AP": 0.5, "rows": [{"t": 0.25, "gflops": 1e-6}], "r_match": None}
    atomic_write_json(tmp_path / "x.json", data, indent=2)

    def refuse(token):
        raise AssertionError(f"non-standard token {token}")

    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=refuse) == data
