"""The multi-stage rule (an image stops at the first stage whose confidence reaches its threshold), its cost,
sweeps and the picker: synthetic inputs for the logic, the trained demo ladder for a real 3-stage run."""

import numpy as np
import pytest

from tinysaver_det.classification import AccuracyMetric
from tinysaver_det.core import (
    StageRow,
    Target,
    held_out_gap,
    image_confidence,
    multistage_cost,
    multistage_sweep,
    pick,
    stage_indices,
    stage_indices_many,
    sweep,
    threshold_grid,
)
from tinysaver_det.detection.cascade import Cascade, MultiStageCascade
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.detection.images import load_image
from tinysaver_det.detection.cache import load_cache
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.cache import read_predictions
from tinysaver_det.detection.studies.depths import simulate_chain

from tests.fakes import FakeRouter


def brute_force_stage(confidences, thresholds):
    """The rule written as a loop over one sample's stages."""
    for k, (conf, t) in enumerate(zip(confidences, thresholds)):
        if conf >= t:
            return k
    return len(thresholds)


def test_first_stage_reaching_its_threshold_answers():
    conf = np.array([[0.9, 0.2, 0.2, 0.0, 0.5], [0.0, 0.8, 0.3, 0.0, 0.1]])
    # sample 0 stops at 0; 1 at 1; 2 reaches the last; 3 has no box anywhere; 4 equals threshold 0 exactly (>=).
    assert stage_indices(conf, [0.5, 0.5]).tolist() == [0, 1, 2, 2, 0]
    assert stage_indices(conf, [0.0, 0.5]).tolist() == [0, 0, 0, 0, 0]  # t = 0: every image stops at stage 0
    assert stage_indices(conf, [np.inf, 0.0]).tolist() == [1] * 5  # stage 0 never answers
    assert stage_indices(conf, [1.01, 1.01]).tolist() == [2] * 5  # the last stage always answers
    assert stage_indices([0.3, 0.7], [0.5]).tolist() == [1, 0]  # 1-D input: two stages


def test_rule_matches_a_loop_on_random_inputs():
    rng = np.random.default_rng(0)
    conf = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(3, 200))  # ties on the thresholds
    vectors = threshold_grid([0.0, 0.5, 1.0], [0.25, 0.75], [0.5, 2.0])
    stages = stage_indices_many(conf, vectors)
    for vector, row in zip(vectors, stages):
        assert row.tolist() == [brute_force_stage(conf[:, i], vector) for i in range(200)]
    with pytest.raises(ValueError, match="one row per stage"):
        stage_indices(conf, [0.5, 0.5])


def test_cost_sums_the_stages_each_image_went_through():
    assert multistage_cost([0, 1, 2], [1.0, 10.0, 100.0]) == pytest.approx((1 + 11 + 111) / 3)
    per_sample = [np.array([1.0, 2.0]), 10.0, np.array([100.0, 300.0])]
    np.testing.assert_allclose(multistage_cost([[0, 2], [2, 1]], per_sample), [(1 + 312) / 2, (111 + 12) / 2])
    with pytest.raises(ValueError, match="stage indices"):
        multistage_cost([3], [1.0, 2.0])


class CorrectnessMetric:
    """K models' per-sample correctness: top-1 of any routing."""

    primary = "top1"

    def __init__(self, correct):
        self.correct = np.asarray(correct, bool)
        self.n_models, self.n_samples = self.correct.shape

    def selected_many(self, stages):
        return [{"top1": float(self.correct[s, np.arange(self.n_samples)].mean())} for s in np.asarray(stages)]


def test_two_stage_sweep_equals_the_paper_sweep():
    rng = np.random.default_rng(1)
    conf = rng.random(50)
    correct = rng.random((2, 50)) < [[0.6], [0.9]]
    thresholds = np.linspace(0, 1, 11)
    rows = multistage_sweep(conf[None], thresholds[:, None], CorrectnessMetric(correct), {"cost": [1.0, 10.0]})
    paper = sweep(conf, thresholds, AccuracyMetric(correct[0], correct[1]), 1.0, 10.0)
    for row, reference in zip(rows, paper):
        assert row.stage_ratios[0] == pytest.approx(reference.exit_ratio)
        assert row.costs["cost"] == pytest.approx(reference.cost)
        assert row.metrics["top1"] == pytest.approx(reference.metrics["top1"])


def test_picker_rules_and_held_out_gap():
    rows = [
        StageRow((0.1,), (0.9, 0.1), {"GFLOPs": 1.0, "ms": 9.0}, {"AP": 0.40}),
        StageRow((0.3,), (0.5, 0.5), {"GFLOPs": 2.0, "ms": 20.0}, {"AP": 0.48}),
        StageRow((0.5,), (0.2, 0.8), {"GFLOPs": 3.0, "ms": 25.0}, {"AP": 0.495}),
    ]
    alone = StageRow((), (1.0,), {"GFLOPs": 3.5, "ms": 30.0}, {"AP": 0.50})
    assert pick(rows, Target("max_drop", 0.02, "GFLOPs"), "AP", 0.50).thresholds == (0.3,)
    assert pick(rows, Target("max_drop", 0.0, "GFLOPs"), "AP", 0.50) is None
    assert pick(rows, Target("max_drop", 0.0, "GFLOPs"), "AP", 0.50, fallback=alone) is alone
    assert pick(rows, Target("budget", 2.5, "GFLOPs"), "AP", 0.50).thresholds == (0.3,)
    assert pick(rows, Target("budget", 24.0, "ms"), "AP", 0.50).thresholds == (0.3,)
    assert pick(rows, Target("budget", 0.5, "GFLOPs"), "AP", 0.50) is None

    held = {(0.3,): StageRow((0.3,), (0.6, 0.4), {"GFLOPs": 1.8, "ms": 18.0}, {"AP": 0.45})}
    point = held_out_gap(Target("max_drop", 0.02, "GFLOPs"), rows, held.__getitem__, "AP", 0.50, 0.49)
    assert point.calibration.thresholds == (0.3,) and point.held_out is held[(0.3,)]
    assert point.gap("AP", "GFLOPs") == pytest.approx((-0.03, -0.2))
    assert point.met_held_out is False  # 0.45 < 0.49 - 0.02
    with pytest.raises(ValueError, match="kind"):
        Target("min_cost", 1.0, "GFLOPs")


def assert_same(a, b, atol):
    assert a.image_id == b.image_id
    np.testing.assert_array_equal(a.category_ids, b.category_ids)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol, rtol=0)
    np.testing.assert_allclose(a.scores, b.scores, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def slice_images(demo_slice):
    infos = demo_slice.dataset.images
    return [load_image(demo_slice.dataset.path(i)) for i in infos], [i.image_id for i in infos]


@pytest.fixture(scope="module")
def cached(demo_slice):
    return {name: read_predictions(path) for name, path in demo_slice.predictions.items()}


@pytest.mark.slow
def test_real_three_stage_cascade_stops_at_the_first_confident_stage(demo_slice, slice_images, cached):
    images, ids = slice_images
    conf = np.array([[image_confidence(cached[m][i].detections.scores) for i in ids] for m in ("pico", "n")])
    thresholds = [float(np.quantile(conf[0], 0.7)), float(np.quantile(conf[1], 0.5))]
    expected = stage_indices(conf, thresholds)
    assert set(expected.tolist()) == {0, 1, 2}  # every stage answers some image
    models = demo_slice.models
    outputs = MultiStageCascade([models["pico"], models["n"], models["s"]], thresholds)(images, ids)
    for out, stage, image_id in zip(outputs, expected, ids):
        assert out.stage == stage
        assert len(out.confidences) == stage + (stage < 2)  # every non-final stage the image reached
        ran = [o is not None for o in out.outputs]
        assert ran == [k <= stage for k in range(3)]  # later stages never ran on it
        answer = cached[("pico", "n", "s")[stage]][image_id]
        assert_same(out.detections, answer.detections, atol=0 if stage == 0 else 1e-3)  # smaller batches later
        assert out.gflops == pytest.approx(sum(cached[m][image_id].gflops for m in ("pico", "n", "s")[: stage + 1]))


@pytest.mark.slow
def test_simulated_cascade_equals_pycocotools_on_the_real_answers(demo_slice, slice_images, cached):
    images, ids = slice_images
    ladder = load_cache(demo_slice.annotations, demo_slice.predictions)
    conf = np.array([ladder.confidences(m, resolve_router("mean")) for m in ("pico", "n")])
    thresholds = (float(np.quantile(conf[0], 0.6)), float(np.quantile(conf[1], 0.4)))
    simulated = simulate_chain(ladder, ["pico", "n", "s"], [thresholds])[0]
    stages = stage_indices(conf, thresholds)
    answers = [cached[("pico", "n", "s")[k]][i].detections for k, i in zip(stages, ids)]
    reference = coco_bbox_metrics(load_coco(demo_slice.annotations), [e for d in answers for e in d.to_coco()])
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert simulated.metrics[key] == pytest.approx(reference[key], abs=1e-9), key
    assert simulated.stage_ratios == tuple(np.bincount(stages, minlength=3) / len(ids))
    gflops = np.array([[cached[m][i].gflops for i in ids] for m in ("pico", "n", "s")])
    assert simulated.costs["GFLOPs"] == pytest.approx(np.mean(np.cumsum(gflops, axis=0)[stages, np.arange(len(ids))]))


@pytest.mark.slow
def test_two_stage_cascade_accepts_a_router_that_sees_the_whole_detections(demo_slice, slice_images, cached):
    images, ids = slice_images

    # a router object: sees boxes, scores and classes, not only scores
    count_classes = FakeRouter("classes", lambda d: len(np.unique(d.category_ids[d.scores >= 0.25])) / 8)
    cascade = Cascade(demo_slice.models["pico"], demo_slice.models["s"], 0.25, confidence=count_classes)
    outputs = cascade(images[:8], ids[:8])
    assert cascade.confidence_name == "classes"
    for out, image_id in zip(outputs, ids[:8]):
        assert out.record.confidence == count_classes(cached["pico"][image_id].detections)
        assert out.record.exited == (out.record.confidence >= 0.25)
    with pytest.raises(ValueError, match="one per stage but the last"):
        MultiStageCascade([demo_slice.models["pico"], demo_slice.models["s"]], [0.2, 0.3])
