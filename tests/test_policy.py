import math

import numpy as np
import pytest

from tinysaver_det.core import ExitPolicy, expected_cost, image_confidence, max_score, resolve_confidence, topk_mean_score


def test_image_confidence_is_mean_of_scores_at_or_above_floor():
    assert image_confidence([0.9, 0.05, 0.04, 0.01]) == pytest.approx((0.9 + 0.05) / 2)


def test_image_confidence_without_boxes_above_floor_is_zero():
    assert image_confidence([]) == 0.0
    assert image_confidence([0.049, 0.001]) == 0.0


def test_min_score_is_a_parameter():
    assert image_confidence([0.3, 0.2, 0.1], min_score=0.25) == pytest.approx(0.3)


def test_other_confidence_functions():
    scores = [0.9, 0.6, 0.3, 0.01]
    assert max_score(scores) == 0.9
    assert topk_mean_score(scores, k=2) == pytest.approx(0.75)
    assert topk_mean_score(scores, k=10) == pytest.approx(0.6)
    assert max_score([0.01]) == 0.0
    assert resolve_confidence("max") is max_score
    with pytest.raises(ValueError, match="unknown confidence function 'median'"):
        resolve_confidence("median")


def test_exit_rule_is_greater_or_equal():
    policy = ExitPolicy(0.25)
    assert policy.exits(0.25) and not policy.exits(0.2499)
    assert policy.exits(np.array([0.1, 0.25, 0.9])).tolist() == [False, True, True]


def test_zero_confidence_exits_only_at_threshold_zero():
    assert ExitPolicy(0.0).exits(0.0)
    assert not ExitPolicy(1e-9).exits(0.0)


def test_threshold_above_one_never_exits():
    assert not ExitPolicy(1.01).exits(1.0)


@pytest.mark.parametrize("bad", [-0.1, math.nan])
def test_bad_threshold_is_an_error_naming_the_value(bad):
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        ExitPolicy(bad)


def test_expected_cost_matches_eq1():
    r, cs, cb = 0.3, 1.0, 10.0
    assert expected_cost(r, cs, cb) == pytest.approx(r * cs + (1 - r) * (cs + cb))


@pytest.mark.parametrize("score", [0.37, 0.1, 0.3, 0.7, 1 / 3, 0.05, 1.0])
def test_boxes_all_scoring_the_same_give_exactly_that_confidence(score):
    for n in range(1, 120):
        assert image_confidence([score] * n) == score, n
        assert topk_mean_score([score] * n, k=3) == score, n
    assert float(np.mean([0.37] * 3)) != 0.37  # what the rule used to give: the image did not exit at t = 0.37
    assert ExitPolicy(0.37).exits(image_confidence([0.37] * 3))


def test_the_mean_is_the_correctly_rounded_exact_mean():
    from fractions import Fraction

    from tinysaver_det.core.policy import correctly_rounded_mean

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 50, 300):
        for scale in (1.0, 1e-3, 1e5):
            values = rng.random(n) * scale
            for sample in (values, values.astype(np.float32).astype(np.float64), np.append(values, [5e-324, 1e15])):
                exact = sum(map(Fraction, sample.tolist())) / len(sample)
                assert correctly_rounded_mean(sample) == float(exact)
    with pytest.raises(ValueError):
        correctly_rounded_mean([])


def test_the_sweep_and_the_online_cascade_exit_an_image_of_equal_scores_at_that_threshold():
    from tinysaver_det.detection.cache import CachedModel, PredictionCache
    from tinysaver_det.detection.cascade import Cascade
    from tinysaver_det.detection.coco import load_ground_truth
    from tinysaver_det.detection.router_files import resolve_router
    from tinysaver_det.detection.types import Detections, Prediction

    answers = {1: [0.37, 0.37, 0.37], 2: [0.36, 0.2], 3: [0.9, 0.01]}
    ids = sorted(answers)

    def detections(i):
        return Detections(i, [[k, k, k + 10, k + 10] for k in range(len(answers[i]))], answers[i], [1] * len(answers[i]))

    class Saver:
        name = "saver"

        def predict(self, images, image_ids):
            return Prediction([detections(i) for i in image_ids], [1.0] * len(image_ids), [0.0] * len(image_ids))

    class Base(Saver):
        name = "base"

    box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}
    annotations = {"images": [{"id": i, "width": 64, "height": 64} for i in ids],
                   "categories": [{"id": 1, "name": "a"}], "annotations": [box]}
    model = CachedModel("saver", tuple(detections(i) for i in ids), np.ones(3), np.zeros(3))
    cache = PredictionCache(load_ground_truth(annotations), [model])
    offline = cache.confidences("saver", resolve_router("mean")) >= 0.37
    online = [o.record.exited for o in Cascade(Saver(), Base(), 0.37)([np.zeros((4, 4, 3), np.uint8)] * 3, ids)]
    assert offline.tolist() == online == [True, False, True]


def test_an_exit_policy_without_a_threshold_carries_the_confidence_rule_alone():
    from tinysaver_det.core.policy import stage_policies
    from tinysaver_det.detection.router_files import resolve_router

    rule = ExitPolicy(confidence="max", min_score=0.2)
    with pytest.raises(ValueError, match="no threshold yet"):
        rule.exits(0.5)
    assert rule.with_threshold(0.5).exits(0.5) and rule.with_threshold(0.5).min_score == 0.2
    assert resolve_router(rule).min_score == 0.2 and resolve_router(rule).name == "max"
    with pytest.raises(ValueError, match="min_score in the exit policy"):
        resolve_router(rule, 0.1)
    assert stage_policies(rule, 2) == [rule, rule]
    with pytest.raises(ValueError, match="1 given for 2 exiting stages"):
        stage_policies([rule], 2)
