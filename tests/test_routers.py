"""Confidence functions on hand-made score lists, the router hook, and the learned router's fit and save/load."""

import json
import math

import numpy as np
import pytest

from tinysaver_det.core import (
    CONFIDENCE_FUNCTIONS,
    Router,
    ScoreRouter,
    entropy_confidence,
    high_score_share,
    image_confidence,
    max_score,
    topk_mean_score,
)
from tinysaver_det.detection.logistic_router import LogisticRouter
from tinysaver_det.detection.output_features import FEATURE_NAMES, detection_features, feature_flops
from tinysaver_det.detection.router_files import load_router, resolve_router
from tinysaver_det.core.curves import curve_mean_ap, curve_thresholds
from tinysaver_det.detection.studies.router_comparison import evaluator_condition, oracle_confidences
from tinysaver_det.core import StageRow
from tinysaver_det.detection.types import Detections

SCORES = [0.9, 0.6, 0.3, 0.1, 0.04]  # 0.04 is below the 0.05 floor


def binary_entropy(p):
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_every_confidence_function_on_a_hand_made_list():
    kept = [0.9, 0.6, 0.3, 0.1]
    assert image_confidence(SCORES) == pytest.approx(sum(kept) / 4)
    assert max_score(SCORES) == 0.9
    assert topk_mean_score(SCORES) == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    assert high_score_share(SCORES) == pytest.approx(2 / 4)  # 0.9 and 0.6 of the four kept
    assert high_score_share(SCORES, high=0.95) == 0.0
    assert entropy_confidence(SCORES) == pytest.approx(1 - np.mean([binary_entropy(p) for p in kept]))


def test_every_registered_function_gives_zero_without_a_box_above_the_floor():
    assert set(CONFIDENCE_FUNCTIONS) == {"mean", "max", "topk_mean", "high_share", "entropy"}
    for name, function in CONFIDENCE_FUNCTIONS.items():
        assert function([], 0.05) == 0.0, name
        assert function([0.049, 0.01], 0.05) == 0.0, name
        assert 0.0 <= function(SCORES, 0.05) <= 1.0, name


def test_entropy_confidence_orders_decided_above_hesitant():
    assert entropy_confidence([0.5]) == pytest.approx(0.0)
    assert entropy_confidence([0.99, 0.98]) > entropy_confidence([0.7, 0.6]) > entropy_confidence([0.5, 0.55])


def test_min_score_moves_the_floor_of_the_new_functions():
    assert high_score_share([0.6, 0.3, 0.2], min_score=0.25) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="high"):
        high_score_share([0.6], min_score=0.5, high=0.4)


def dets(scores, boxes=None, classes=None, image_id=1):
    scores = np.asarray(scores, dtype=float)
    boxes = np.tile([0.0, 0.0, 10.0, 10.0], (len(scores), 1)) if boxes is None else boxes
    classes = np.ones(len(scores), dtype=int) if classes is None else classes
    return Detections(image_id, boxes, scores, classes)


def test_resolve_router_accepts_names_callables_routers_and_files(tmp_path):
    detections = dets(SCORES)
    named = resolve_router("max")
    assert isinstance(named, ScoreRouter) and named.name == "max" and named(detections) == 0.9
    legacy = resolve_router(lambda scores, min_score: float(len(scores)) / 10)  # the original (scores, min_score) hook
    assert legacy(detections) == pytest.approx(0.5)
    assert resolve_router("mean", min_score=0.5)(detections) == pytest.approx(0.75)
    router = LogisticRouter(np.ones(len(FEATURE_NAMES)), 0.0, np.zeros(len(FEATURE_NAMES)), np.ones(len(FEATURE_NAMES)))
    assert resolve_router(router) is router and isinstance(router, Router)
    path = router.save(tmp_path / "router.json")
    assert resolve_router(str(path))(detections) == pytest.approx(router(detections))
    with pytest.raises(ValueError, match="unknown confidence 'median'"):
        resolve_router("median")


def test_detection_features_on_hand_made_boxes():
    boxes = np.array([[0, 0, 40, 40], [0, 0, 40, 40], [100, 100, 110, 110], [0, 0, 1, 1]], dtype=float)
    features = dict(zip(FEATURE_NAMES, detection_features(dets([0.8, 0.4, 0.2, 0.01], boxes, np.array([1, 2, 1, 3])))))
    kept, weights = np.array([0.8, 0.4, 0.2]), np.array([0.8, 0.4, 0.2]) / 1.4
    assert features["log_n_kept"] == pytest.approx(np.log(4))
    assert features["log_n_25"] == pytest.approx(np.log(3)) and features["log_n_50"] == pytest.approx(np.log(2))
    assert features["mean_score"] == pytest.approx(kept.mean()) and features["max_score"] == 0.8
    assert features["top3_mean"] == pytest.approx(kept.mean()) and features["score_std"] == pytest.approx(kept.std())
    assert features["high_share"] == pytest.approx(1 / 3)
    assert features["log_size"] == pytest.approx(weights @ np.log([40, 40, 10]))
    assert features["small_share"] == pytest.approx(weights[2])  # only the 10 px box is under 32 px
    assert features["log_n_classes"] == pytest.approx(np.log(3))  # classes 1 and 2 score >= 0.25
    shares = np.array([0.8 + 0.2, 0.4]) / 1.4
    assert features["class_entropy"] == pytest.approx(-(shares * np.log(shares)).sum())
    # The two 40 px boxes overlap fully with another class; the 10 px box overlaps nothing.
    assert features["ambiguity"] == pytest.approx((0.8 + 0.4) / 1.4)
    assert features["empty"] == 0.0
    empty = detection_features(dets([0.01]))
    assert empty[-1] == 1.0 and not empty[:-1].any()


def separable_problem(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    y = x[:, 3] - 0.5 * x[:, 9] + 0.3 * rng.normal(size=n) > 0
    return x, y


def test_logistic_router_learns_the_informative_features():
    x, y = separable_problem()
    router = LogisticRouter.fit(x, y, l2=0.1)
    accuracy = ((router.predict_features(x) >= 0.5) == y).mean()
    assert accuracy > 0.9
    assert router.weights[3] > 0 > router.weights[9]
    assert np.abs(router.weights).argsort()[-2:].tolist() in ([9, 3], [3, 9])
    assert router.info["n_samples"] == 300 and 0 < router.info["positive_share"] < 1
    with pytest.raises(ValueError, match="both outcomes"):
        LogisticRouter.fit(x, np.zeros(len(x), bool))
    with pytest.raises(ValueError, match="shape"):
        LogisticRouter.fit(x[:, :3], y)


def test_router_save_load_round_trip_is_exact_and_json(tmp_path):
    x, y = separable_problem(seed=1)
    router = LogisticRouter.fit(x, y, name="tiny", info={"note": "unit test"})
    path = router.save(tmp_path / "sub" / "router.json")
    data = json.loads(path.read_text())  # plain json, no pickle
    assert data["kind"] == "logistic" and data["feature_names"] == list(FEATURE_NAMES) and data["name"] == "tiny"
    loaded = load_router(path)
    np.testing.assert_array_equal(loaded.predict_features(x), router.predict_features(x))
    for attribute in ("weights", "mean", "scale"):
        np.testing.assert_array_equal(getattr(loaded, attribute), getattr(router, attribute))
    assert (loaded.bias, loaded.min_score, loaded.info["note"]) == (router.bias, router.min_score, "unit test")
    detections = dets([0.7, 0.3, 0.06], np.array([[0, 0, 5, 5], [2, 2, 9, 9], [1, 1, 3, 3]], float), np.array([1, 2, 2]))
    assert loaded(detections) == router(detections)


def test_router_files_from_another_version_or_kind_are_refused(tmp_path):
    x, y = separable_problem()
    data = LogisticRouter.fit(x, y).to_dict()
    (tmp_path / "old.json").write_text(json.dumps({**data, "feature_names": data["feature_names"][:-1]}))
    with pytest.raises(ValueError, match="retrain"):
        load_router(tmp_path / "old.json")
    (tmp_path / "tree.json").write_text(json.dumps({**data, "kind": "tree"}))
    with pytest.raises(ValueError, match="known 'kind'"):
        load_router(tmp_path / "tree.json")
    with pytest.raises(FileNotFoundError):
        load_router(tmp_path / "missing.json")


def test_router_cost_is_counted_and_grows_with_boxes():
    router = LogisticRouter(np.zeros(len(FEATURE_NAMES)), 0.0, np.zeros(len(FEATURE_NAMES)), np.ones(len(FEATURE_NAMES)))
    few, many = dets([0.9] * 3), dets([0.9] * 200)
    assert 0 < router.gflops(few) < router.gflops(many) < 1e-3  # a few MFLOPs at most
    assert feature_flops(200, 200) == pytest.approx(200 + 200 * np.log2(200) + 40 * 200 + 14 * 100**2 + 60)
    assert ScoreRouter(image_confidence).gflops(many) == 0.0


def test_oracle_ranks_by_gain_then_saver_quality():
    saver = [0.2, 0.9, 0.5, -1.0, 0.9]
    base = [0.8, 0.9, 0.4, 0.7, 0.95]
    # gains: 0.6, 0.0, -0.1, 0 (no gt), 0.05 -> order: 2, then the 0-gain pair by saver quality (1 before 3), 4, 0
    conf = oracle_confidences(saver, base)
    assert np.argsort(-conf).tolist() == [2, 1, 3, 4, 0]
    assert conf.max() == 1.0 and len(np.unique(conf)) == 5


def test_curve_thresholds_every_distinct_value_or_levels():
    conf = np.array([0.3, 0.1, 0.3, 0.7])
    assert curve_thresholds(conf).tolist() == [0.1, 0.3, 0.7, np.inf]
    ratios = [(conf >= t).mean() for t in curve_thresholds(np.linspace(0, 1, 101), levels=11)]
    assert ratios[0] == 1.0 and ratios[-1] == 0.0 and len(ratios) == 11


def test_evaluator_condition_is_eq5():
    def row(t, r, cost, metrics):
        return StageRow((t,), (r, 1 - r), {"cost": cost}, metrics)

    plain = [row(0.9, 0.1, 9.0, {"AP": 0.5}), row(0.5, 0.3, 7.0, {"AP": 0.4})]
    learned = [row(0.9, 0.2, 8.0, {"AP": 0.5}), row(0.5, 0.25, 7.5, {"AP": 0.4})]
    checks = evaluator_condition(plain, learned, cost_evaluator=0.5, cost_base=10.0, levels=[0.5, 0.4, 0.6])
    assert [(c.r, c.r_evaluator) for c in checks] == [(0.1, 0.2), (0.3, 0.25), (None, None)]
    assert checks[0].saving == pytest.approx(1.0) and checks[0].holds  # 0.5 < (0.2 - 0.1) * 10
    assert checks[1].holds is False and checks[2].holds is None
    assert curve_mean_ap(plain) == pytest.approx(0.45)
