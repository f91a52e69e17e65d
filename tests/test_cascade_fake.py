"""The cascade's bookkeeping with fake detectors (no model, no torch): routing, what runs on which image,
costs and records, for two and three stages, ``run_all``, routers, and the batched runner's files.

A :class:`tests.fakes.FakeDetector` answers from a table keyed by image id and records every batch it was given,
so each test can say exactly which images each model saw.
"""

import json

import numpy as np
import pytest

from tinysaver_det.core import stage_indices
from tinysaver_det.detection.cascade import Cascade, CascadeOutput, MultiStageCascade, StageOutput
from tests.fakes import FakeDetector, FakeRouter

IMAGES = [np.zeros((4, 4, 3), np.uint8)] * 4
IDS = [1, 2, 3, 4]
# Mean of the scores >= 0.05: image 1 -> 0.9, 2 -> 0.3 (0.01 is below the floor), 3 -> 0.0 (no box), 4 -> 0.6.
SAVER = {1: [0.9], 2: [0.3, 0.01], 3: [], 4: [0.8, 0.4]}
BASE = {i: [0.99] * 3 for i in IDS}


def pair(threshold, **options):
    saver, base = FakeDetector("saver", SAVER, 1.0, 0.01), FakeDetector("base", BASE, 10.0, 0.1)
    return Cascade(saver, base, threshold, **options), saver, base


def test_exited_images_keep_the_savers_whole_answer_and_the_base_sees_only_the_rest_in_one_batch():
    cascade, saver, base = pair(0.5)
    outputs = cascade(IMAGES, IDS)
    assert saver.calls == [IDS] and base.calls == [[2, 3]]
    assert [o.record.exited for o in outputs] == [True, False, False, True]
    assert [o.record.confidence for o in outputs] == pytest.approx([0.9, 0.3, 0.0, 0.6])
    assert list(outputs[1].detections.scores) == pytest.approx(BASE[2])
    assert list(outputs[3].detections.scores) == pytest.approx([0.8, 0.4])  # the saver's answer, not filtered
    assert [o.record.n_boxes for o in outputs] == [1, 3, 3, 2]
    assert [o.record.saver_gflops for o in outputs] == [1.0] * 4
    assert [o.record.base_gflops for o in outputs] == [0.0, 10.0, 10.0, 0.0]
    assert [o.record.seconds for o in outputs] == pytest.approx([0.01, 0.11, 0.11, 0.01])
    assert [o.base is None for o in outputs] == [True, False, False, True]


def test_threshold_zero_exits_every_image_even_one_without_boxes_and_above_one_none():
    cascade, saver, base = pair(0.0)
    assert all(o.record.exited for o in cascade(IMAGES, IDS)) and base.calls == []
    cascade, saver, base = pair(1.5)
    assert not any(o.record.exited for o in cascade(IMAGES, IDS)) and base.calls == [IDS]


def test_run_base_on_all_caches_both_answers_but_routes_and_costs_as_without():
    plain = [o.record for o in pair(0.5)[0](IMAGES, IDS)]
    cascade, saver, base = pair(0.5, run_base_on_all=True)
    outputs = cascade(IMAGES, IDS)
    assert base.calls == [IDS] and all(o.base is not None for o in outputs)
    assert [o.record for o in outputs] == plain


def test_a_router_object_sees_the_whole_detections_and_a_callable_sees_scores_and_floor():
    most_boxes = FakeRouter("most_boxes", lambda detections: len(detections) / 2)
    cascade, _, base = pair(1.0, confidence=most_boxes)
    assert [o.record.exited for o in cascade(IMAGES, IDS)] == [False, True, False, True]
    assert cascade.confidence_name == "most_boxes" and base.calls == [[1, 3]]
    seen = []
    cascade, _, _ = pair(0.5, confidence=lambda scores, floor: seen.append(floor) or max(scores, default=0.0), min_score=0.2)
    assert [o.record.exited for o in cascade(IMAGES, IDS)] == [True, False, False, True] and set(seen) == {0.2}


def test_an_exit_policy_carries_the_whole_rule_as_one_value():
    from tinysaver_det.core import ExitPolicy

    loose = [o.record for o in pair(0.5, confidence="max", min_score=0.2)[0](IMAGES, IDS)]
    cascade, _, _ = pair(ExitPolicy(0.5, "max", 0.2))
    assert [o.record for o in cascade(IMAGES, IDS)] == loose
    assert (cascade.policy.threshold, cascade.min_score, cascade.confidence_name) == (0.5, 0.2, "max")
    # One rule per exiting stage, each with its own confidence.
    models = three_stages([0.5, 0.5])[1]
    mixed = MultiStageCascade(models, [ExitPolicy(0.5), ExitPolicy(0.65, "max")])
    assert [r.name for r in mixed.routers] == ["mean", "max"] and mixed.thresholds == (0.5, 0.65)
    assert [o.stage for o in mixed.run(IMAGES, IDS)] == [0, 1, 2, 1]


def three_stages(thresholds, run_all=False):
    answers = [
        {1: [0.9], 2: [0.1], 3: [0.2], 4: []},  # stage 0: image 1 exits at t0 = 0.5
        {i: [0.7] if i in (2, 4) else [0.1] for i in IDS},  # stage 1: images 2 and 4 exit at t1 = 0.5
        {i: [0.99] for i in IDS},
    ]
    models = [FakeDetector(f"m{k}", a, 10.0 ** k, 0.001 * 10 ** k) for k, a in enumerate(answers)]
    return MultiStageCascade(models, thresholds, run_all=run_all), models


def test_calling_a_cascade_and_its_run_give_one_type_and_the_two_model_view_adds_the_saver_base_names():
    two, saver, base = pair(0.5)
    by_call, by_run = two(IMAGES, IDS), pair(0.5)[0].run(IMAGES, IDS)
    assert all(type(o) is CascadeOutput for o in by_call + by_run)
    assert [o.record for o in by_call] == [o.record for o in by_run]
    plain = MultiStageCascade([saver, base], [0.5]).run(IMAGES, IDS)  # the same rule, without the names
    assert all(type(o) is StageOutput for o in plain)
    assert [(o.stage, o.confidences, o.gflops) for o in plain] == [(o.stage, o.confidences, o.gflops) for o in by_call]
    for out in by_call:
        assert out.saver is out.outputs[0] and out.base is out.outputs[1]
        assert out.record.exited == (out.stage == 0) and out.record.confidence == out.confidences[0]
        assert out.record.base_gflops == (0.0 if out.stage == 0 else out.base.gflops)


def test_each_stage_runs_once_per_batch_on_the_pending_images_and_the_first_confident_stage_answers():
    cascade, models = three_stages([0.5, 0.5])
    outputs = cascade.run(IMAGES, IDS)
    assert [m.calls for m in models] == [[IDS], [[2, 3, 4]], [[3]]]
    assert [o.stage for o in outputs] == [0, 1, 2, 1]
    assert [o.confidences for o in outputs] == [(0.9,), (0.1, 0.7), (0.2, 0.1), (0.0, 0.7)]
    assert [o.gflops for o in outputs] == [1.0, 11.0, 111.0, 11.0]
    assert [o.seconds for o in outputs] == pytest.approx([0.001, 0.011, 0.111, 0.011])
    # The offline rule (core) routes the same confidences the same way.
    conf = np.array([[0.9, 0.1, 0.2, 0.0], [0.0, 0.7, 0.1, 0.7]])  # stage 1 of image 1 never ran: any value
    assert stage_indices(conf, [0.5, 0.5]).tolist() == [o.stage for o in outputs]


def test_run_all_runs_every_stage_on_every_image_and_counts_only_the_stages_used():
    routed = three_stages([0.5, 0.5])[0].run(IMAGES, IDS)
    cascade, models = three_stages([0.5, 0.5], run_all=True)
    outputs = cascade.run(IMAGES, IDS)
    assert [m.calls for m in models] == [[IDS]] * 3 and all(None not in o.outputs for o in outputs)
    assert [(o.stage, o.gflops, o.confidences) for o in outputs] == [(o.stage, o.gflops, o.confidences) for o in routed]


def test_a_wrong_number_of_thresholds_or_confidences_is_refused():
    models = three_stages([0.5, 0.5])[1]
    with pytest.raises(ValueError, match="one per stage but the last"):
        MultiStageCascade(models, [0.5])
    with pytest.raises(ValueError, match="confidence: 3 given for 2 stages"):
        MultiStageCascade(models, [0.5, 0.5], confidence=["mean", "max", "mean"])


@pytest.fixture
def tiny_dataset(tmp_path):
    """Four 8x8 PNGs (image 3 missing on disk), one box each, written with cv2 only to make the files."""
    cv2 = pytest.importorskip("cv2")
    from tinysaver_det.detection.dataset import CocoDataset

    (tmp_path / "images").mkdir()
    for i in IDS:
        if i != 3:
            cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    box = {"bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0, "category_id": 1}
    annotations = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8} for i in IDS],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{**box, "id": i, "image_id": i} for i in IDS],
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    return CocoDataset(tmp_path / "ann.json", tmp_path / "images")


def test_the_runner_writes_one_record_per_image_skips_the_unreadable_one_and_resumes(tiny_dataset, tmp_path):
    from tinysaver_det.detection.runner import evaluate_cascade
    from tinysaver_det.io import read_jsonl

    cascade, saver, base = pair(0.5, run_base_on_all=True)
    summary = evaluate_cascade(cascade, tiny_dataset, tmp_path / "run", batch_size=2, progress=False)
    records = read_jsonl(tmp_path / "run" / "records.jsonl")
    assert [(r["image_id"], r["status"], r["exited"]) for r in records] == [
        (1, "ok", True), (2, "ok", False), (3, "missing", None), (4, "ok", True)]
    assert saver.calls == [[1, 2], [4]]  # image 3 is never fed to a model
    assert summary.cascade.exit_ratio == pytest.approx(2 / 3) and summary.skipped_images == {"missing": 1}
    assert json.loads((tmp_path / "run" / "errors.json").read_text())["skipped"][0]["image_id"] == 3
    # A finished run resumed runs nothing more and writes the same records.
    again, saver_again, _ = pair(0.5, run_base_on_all=True)
    evaluate_cascade(again, tiny_dataset, tmp_path / "run", batch_size=2, progress=False, resume=True)
    assert saver_again.calls == [] and read_jsonl(tmp_path / "run" / "records.jsonl") == records


def test_the_multistage_runner_records_the_answering_stage_of_every_image(tiny_dataset, tmp_path):
    from tinysaver_det.detection.runner import evaluate_multistage
    from tinysaver_det.io import read_jsonl

    (tiny_dataset.image_dir / "3.png").write_bytes((tiny_dataset.image_dir / "1.png").read_bytes())
    cascade, models = three_stages([0.5, 0.5])
    summary = evaluate_multistage(cascade, tiny_dataset, tmp_path / "multi", batch_size=4, progress=False)
    records = read_jsonl(tmp_path / "multi" / "records.jsonl")
    assert [r["stage"] for r in records] == [0, 1, 2, 1]
    assert summary.stage_ratios == [0.25, 0.5, 0.25] and summary.gflops_per_image == pytest.approx((1 + 11 + 111 + 11) / 4)


def test_one_model_and_the_multistage_runner_keep_an_unreadable_image_as_one_with_no_detections(tiny_dataset, tmp_path):
    from tinysaver_det.detection.cache import read_predictions
    from tinysaver_det.detection.runner import evaluate_multistage, predict_dataset
    from tinysaver_det.io import read_jsonl

    saver = FakeDetector("saver", SAVER, 1.0, 0.01)
    path = predict_dataset(saver, tiny_dataset, tmp_path / "saver_predictions.jsonl", batch_size=3, progress=False)
    assert saver.calls == [[1, 2], [4]]  # image 3 is missing on disk
    cached = read_predictions(path)
    assert sorted(cached) == IDS and len(cached[3].detections) == 0 and cached[3].gflops == 0.0
    assert [r.get("status") for r in read_jsonl(path)] == [None, None, "missing", None]

    cascade, models = three_stages([0.5, 0.5])
    summary = evaluate_multistage(cascade, tiny_dataset, tmp_path / "multi", batch_size=4, progress=False)
    records = read_jsonl(tmp_path / "multi" / "records.jsonl")
    assert [(r["image_id"], r["status"], r["stage"]) for r in records] == [
        (1, "ok", 0), (2, "ok", 1), (3, "missing", None), (4, "ok", 1)]
    assert models[0].calls == [[1, 2, 4]] and summary.n_images == 4
    assert summary.stage_ratios == pytest.approx([1 / 3, 2 / 3, 0.0])


PREDICTIONS_RUN_KEYS = {
    "format", "package_version", "model", "features", "batch_size", "annotation_file", "annotation_sha256",
    "image_dir", "limit", "n_images", "image_ids_sha256",
}


def test_a_predictions_file_is_described_beside_it_refused_when_present_and_resumed_in_whole_batches(tiny_dataset, tmp_path):
    """``predict_dataset`` on the run-directory machinery: ``p.run.json`` first, no silent rewrite, a cut
    file resumed from its last whole batch, a missing image retried once it is on disk, other settings refused."""
    from tinysaver_det.detection.runner import predict_dataset
    from tinysaver_det.errors import TinySaverInputError
    from tinysaver_det.io import read_jsonl, sha256_file

    path = tmp_path / "p.jsonl"
    predict_dataset(FakeDetector("saver", SAVER, 1.0), tiny_dataset, path, batch_size=2, progress=False)
    whole = path.read_text()
    described = json.loads((tmp_path / "p.run.json").read_text())
    assert set(described) == PREDICTIONS_RUN_KEYS
    assert described["model"] == {"name": "saver"} and described["features"] is False and described["batch_size"] == 2
    assert described["annotation_sha256"] == sha256_file(tiny_dataset.annotation_file) and described["n_images"] == 4

    with pytest.raises(TinySaverInputError, match=r"p.jsonl already holds a run \(p.run.json, p.jsonl\): pass --resume"):
        predict_dataset(FakeDetector("saver", SAVER, 1.0), tiny_dataset, path, batch_size=2, progress=False)
    assert path.read_text() == whole

    lines = whole.splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:20])  # killed mid-write in the second batch
    again = FakeDetector("saver", SAVER, 1.0)
    predict_dataset(again, tiny_dataset, path, batch_size=2, progress=False, resume=True)
    assert again.calls == [[4]] and path.read_text() == whole  # the second batch redone whole (3 is still missing)

    with pytest.raises(TinySaverInputError, match=r"other settings \(batch_size: 2 in the run, 3 now\)"):
        predict_dataset(FakeDetector("saver", SAVER, 1.0), tiny_dataset, path, batch_size=3, progress=False, resume=True)

    (tiny_dataset.image_dir / "3.png").write_bytes((tiny_dataset.image_dir / "1.png").read_bytes())
    retried = FakeDetector("saver", SAVER, 1.0)
    predict_dataset(retried, tiny_dataset, path, batch_size=2, progress=False, resume=True)
    assert retried.calls == [[3, 4]]  # readable now: its batch runs again
    rows = read_jsonl(path)
    assert [r["image_id"] for r in rows] == IDS and "status" not in rows[2] and rows[:2] == read_jsonl_lines(lines[:2])

    fresh = FakeDetector("saver", SAVER, 1.0)
    predict_dataset(fresh, tiny_dataset, path, batch_size=4, progress=False, overwrite=True)
    assert fresh.calls == [IDS] and json.loads((tmp_path / "p.run.json").read_text())["batch_size"] == 4


def read_jsonl_lines(lines):
    return [json.loads(line) for line in lines]


def test_a_multistage_run_directory_resumes_to_the_uninterrupted_files_and_refuses_mixing(tiny_dataset, tmp_path):
    from tinysaver_det.detection.runner import evaluate_multistage
    from tinysaver_det.errors import TinySaverInputError

    reference, out = tmp_path / "reference", tmp_path / "run"
    evaluate_multistage(three_stages([0.5, 0.5])[0], tiny_dataset, reference, batch_size=2, progress=False)
    assert json.loads((reference / "run.json").read_text())["stages"] == [{"name": f"m{k}"} for k in range(3)]
    out.mkdir()
    (out / "run.json").write_bytes((reference / "run.json").read_bytes())
    records = (reference / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text("".join(records[:3]))  # the second batch's records cut short
    (out / "detections.jsonl").write_text((reference / "detections.jsonl").read_text())  # its detections written
    cascade, models = three_stages([0.5, 0.5])
    with pytest.raises(TinySaverInputError, match="already holds a run"):
        evaluate_multistage(cascade, tiny_dataset, out, batch_size=2, progress=False)
    with pytest.raises(TinySaverInputError, match=r"thresholds: \[0.5, 0.5\] in the run, \[0.5, 0.6\] now"):
        evaluate_multistage(three_stages([0.5, 0.6])[0], tiny_dataset, out, batch_size=2, progress=False, resume=True)
    evaluate_multistage(cascade, tiny_dataset, out, batch_size=2, progress=False, resume=True)
    assert models[0].calls == [[4]]  # image 3 is missing; the batch [3, 4] is redone whole
    for name in ("records.jsonl", "detections.jsonl", "results.json"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    assert {**summary, "wall_seconds": 0} == {**expected, "wall_seconds": 0}
