"""The digits example end to end, and tools/select_saver.py on the records it writes."""

from pathlib import Path

import numpy as np
import pytest

from tinysaver_det.cli import select_saver

pytestmark = pytest.mark.slow  # every test here runs real models


@pytest.fixture(scope="module")
def example(tmp_path_factory, load_script):
    out = tmp_path_factory.mktemp("digits")
    module = load_script("examples/digits_tinysaver.py")
    return module, out, module.main(["--out", str(out)])


def test_records_are_in_the_authors_format(example):
    module, out, study = example
    for name in module.build_models():
        for split in ("train", "test"):
            with np.load(out / f"{name}_{split}.npz") as data:
                assert sorted(data.files) == ["confs", "label", "preds"]
                assert data["preds"].ndim == 3 and data["preds"].shape[:2] == (1, len(data["label"]))
    assert (out / "table1.csv").is_file() and (out / "selection.csv").is_file()


def test_selection_picks_the_lowest_delta_cost_tr(example):
    _, _, study = example
    candidates = study.selection.candidates
    assert len(candidates) >= 3
    assert len({round(c.cost) for c in candidates}) == len(candidates)  # clearly different sizes
    assert all(c.relative_cost < 0.1 for c in candidates)
    assert study.selection.chosen == min(candidates, key=lambda c: c.delta_cost_tr).name
    assert study.selection.chosen_report.delta_cost_tr < 0


def test_a_cascade_is_within_half_a_point_of_the_base_for_less(example):
    _, _, study = example
    chosen = study.selection.chosen
    table1 = study.table1[chosen]
    half_point = next(p for p in table1.at_drop if p.max_drop == 0.005)
    assert half_point.cost is not None and half_point.relative_cost < 1
    assert half_point.performance >= table1.base_performance - 0.005
    # The same, read directly from the sweep rows.
    assert any(
        row.metrics["top1"] >= table1.base_performance - 0.005 and row.cost < table1.base_cost
        for row in study.sweeps[chosen]
    )


def test_select_saver_tool_reproduces_the_study(example, tmp_path, capsys, load_script):
    module, out, study = example
    costs = {c.name: c.cost for c in study.selection.candidates}
    argv = ["--base", module.BASE, repr(study.selection.base_cost), *_files(out, module.BASE), "--out", str(tmp_path)]
    for name, cost in costs.items():
        argv += ["--saver", name, repr(cost), *_files(out, name)]
    tool = load_script("tools/select_saver.py")
    tool_study = select_saver.select(tool.parse_args(argv))
    assert tool_study.selection == study.selection
    assert tool_study.table1 == study.table1
    printed = capsys.readouterr().out
    assert "FLOPs = 2 * MACs" in printed and "Table 2" in printed and "Table 1" in printed
    assert (tmp_path / "table1.csv").read_text() == (out / "table1.csv").read_text()


def _files(out: Path, name: str) -> list[str]:
    return [str(out / f"{name}_train.npz"), str(out / f"{name}_test.npz")]
