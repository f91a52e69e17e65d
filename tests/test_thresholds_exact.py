"""The fast selection accumulation: equal to pycocotools, exact r_match, --workers.

The accumulation that scores many selections from sparse events must equal pycocotools on the COCO
subset at several thresholds (merged results) and on r_match's subsets (``params.imgIds``); r_match
is searched over every distinct confidence, so the printed grid cannot change it; and any number of
worker processes gives identical numbers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from tinysaver_det.core import image_confidence
from tinysaver_det.core.selection import r_match
from tinysaver_det.detection.cache import cache_from_results
from tinysaver_det.detection.coco import STAT_KEYS
from tinysaver_det.detection.coco.reference import coco_bbox_metrics
from tinysaver_det.detection.synthetic import BASE_PROFILE, SAVER_PROFILE, simulate_detections
from tinysaver_det.detection.studies.thresholds import sweep_cascade

TOLERANCE = 1e-9


def pycocotools(data: dict, results: list[dict], image_ids=None) -> np.ndarray:
    ground_truth = COCO()
    ground_truth.dataset = copy.deepcopy(data)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    return np.array(list(coco_bbox_metrics(ground_truth, copy.deepcopy(results), image_ids).values()))


@pytest.fixture(scope="module")
def case(coco_annotations, tmp_path_factory):
    data = json.loads(coco_annotations.read_text())
    known = {c["id"] for c in data["categories"]}
    folder = tmp_path_factory.mktemp("fast")
    results, paths = {}, {}
    for name, profile, seed in (("saver", SAVER_PROFILE, 1), ("base", BASE_PROFILE, 2)):
        detections = simulate_detections(data, profile, seed=seed)
        results[name] = [e for d in detections.values() for e in d.to_coco() if e["category_id"] in known]
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(results[name]))
    cache = cache_from_results(coco_annotations, paths["saver"], paths["base"], 8.7, 257.8)
    return data, results, paths, cache


def confidence_by_image(cache) -> dict[int, float]:
    return {d.image_id: image_confidence(d.scores) for d in cache.detections("saver")}


@pytest.mark.slow
def test_sweep_equals_pycocotools_at_five_thresholds(case):
    data, results, _, cache = case
    confidence = confidence_by_image(cache)
    thresholds = np.quantile(list(confidence.values()), [0.1, 0.3, 0.5, 0.7, 0.9]).tolist()
    result = sweep_cascade(cache, thresholds, workers=2)
    for row, t in zip(result.rows, thresholds):
        merged = [e for e in results["saver"] if confidence[e["image_id"]] >= t]
        merged += [e for e in results["base"] if confidence[e["image_id"]] < t]
        reference = pycocotools(data, merged)
        np.testing.assert_allclose([row.metrics[k] for k in STAT_KEYS], reference, rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_r_match_subsets_equal_pycocotools_with_imgIds(case):
    data, results, _, cache = case
    result = sweep_cascade(cache, [0.5])
    curve = result.r_match
    picked = np.unique(np.linspace(0, len(curve.thresholds) - 1, 5).round().astype(int))
    confidence = confidence_by_image(cache)
    for index in picked:
        exited = [i for i in confidence if confidence[i] >= curve.thresholds[index]]
        assert len(exited) / len(confidence) == pytest.approx(curve.exit_ratios[index])
        for name, values in (("saver", curve.saver), ("base", curve.base)):
            assert values[index] == pytest.approx(pycocotools(data, results[name], exited)[0], abs=TOLERANCE)


def test_r_match_is_exact_over_every_distinct_confidence(case):
    _, _, _, cache = case
    result = sweep_cascade(cache, [0.2, 0.25, 0.3])
    confidences = np.array(list(confidence_by_image(cache).values()))
    assert len(result.r_match.thresholds) == len(np.unique(confidences[confidences > 0])) + (confidences == 0).any()
    assert "every distinct confidence" in result.r_match.search
    matching = result.r_match.exit_ratios[result.r_match.saver >= result.r_match.base]
    assert result.r_match.r_match == (matching.max() if matching.size else 0.0)


@pytest.mark.slow
def test_r_match_does_not_depend_on_the_printed_grid(case, coco_annotations, tmp_path, load_script, capsys):
    _, _, paths, _ = case
    tool = load_script("tools/sweep.py")
    printed = []
    for grid in ([], ["--thresholds", "0.2", "0.25", "0.3"]):
        argv = ["--ann", str(coco_annotations), "--saver-json", str(paths["saver"]), "--base-json", str(paths["base"]),
                "--saver-gflops", "8.7", "--base-gflops", "257.8", "--workers", "2", "--out", str(tmp_path / "s"), *grid]
        assert tool.main(argv) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("r_match"))
        assert "every distinct confidence" in line and "exact" in line
        printed.append(re.match(r"r_match = (\S+) \(t = (\S+)\)", line).groups())
    assert printed[0] == printed[1]


def test_workers_give_identical_results(case):
    _, _, _, cache = case
    grid = np.linspace(0, 1, 11)
    one, two = (sweep_cascade(cache, grid, workers=workers) for workers in (1, 2))
    assert [row.metrics for row in one.rows] == [row.metrics for row in two.rows]
    assert one.r_match.r_match == two.r_match.r_match and one.r_match.threshold == two.r_match.threshold
    np.testing.assert_array_equal(one.r_match.saver, two.r_match.saver)
    np.testing.assert_array_equal(one.r_match.base, two.r_match.base)


def test_exact_r_match_equals_the_core_search_on_the_metric(case):
    """The sweep's r_match is core.r_match over every distinct confidence (no grid passed)."""
    _, _, _, cache = case
    confidences = np.array(list(confidence_by_image(cache).values()))
    direct = r_match(confidences, cache.pair_metric("saver", "base"))
    swept = sweep_cascade(cache, [0.5]).r_match
    assert (direct.r_match, direct.threshold) == (swept.r_match, swept.threshold)


def test_the_compiled_walk_over_exit_sets_equals_the_general_accumulation(case):
    """r_match's chain of exit sets: the compiled walk (numba) against scoring each set on its own."""
    pytest.importorskip("numba")
    from tinysaver_det.detection.coco.nested import is_chain, nested_ap

    _, _, _, cache = case
    confidences = np.array(list(confidence_by_image(cache).values()))
    masks = confidences[None, :] >= np.unique(confidences)[::-1, None]  # the exit rule, conf >= t
    assert is_chain(masks) and not is_chain(masks[::-1])
    metric = cache.pair_metric("saver", "base")
    for name in ("saver", "base"):
        walked = metric.subset_many(name, masks)
        k = ("saver", "base").index(name)
        selections = np.zeros((len(masks), 2, masks.shape[1]), dtype=bool)
        selections[:, k] = masks
        one_by_one = np.array([s["AP"] for s in metric._merged.summaries(selections, keys=("AP",))])
        np.testing.assert_allclose(walked, one_by_one, rtol=0, atol=1e-12)
        assert np.array_equal(nested_ap(metric._merged, k, masks, 0, 2), walked)
        for workers in (2, 3, 7):  # ranges of sets walked in threads: the same values, bit for bit
            assert np.array_equal(nested_ap(metric._merged, k, masks, 0, 2, workers=workers), walked)
    shuffled = masks[np.random.default_rng(0).permutation(len(masks))[:40]]  # not a chain: the general path
    assert not is_chain(shuffled)
    np.testing.assert_allclose(metric.subset_many("saver", shuffled), metric.subset_many("saver", masks)[
        [int(np.flatnonzero((masks == row).all(axis=1))[0]) for row in shuffled]], rtol=0, atol=1e-12)



@pytest.mark.slow
def test_forked_workers_end_quietly_under_the_command_line(full_run, tmp_path):
    """The command line turns SIGTERM into Ctrl-C; the workers' pool ends them with SIGTERM, which must
    not print a traceback per worker in a run that succeeded."""
    argv = [sys.executable, "-m", "tinysaver_det", "sweep", "--records", str(full_run), "--workers", "2",
            "--out", str(tmp_path / "s")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr[-2000:]
    assert "r_match" in done.stdout
