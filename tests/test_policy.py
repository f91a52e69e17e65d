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
