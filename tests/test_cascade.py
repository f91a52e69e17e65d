"""Routing of the real cascade with the trained demo models on real demo images."""

import numpy as np
import pytest

from tinysaver_det.core import image_confidence, max_score
from tinysaver_det.detection.cascade import Cascade

pytestmark = pytest.mark.slow  # every test here runs real models

N_IMAGES = 48


@pytest.fixture(scope="module")
def batch(demo_images):
    return demo_images(N_IMAGES)


@pytest.fixture(scope="module")
def standalone(batch, demo_saver, demo_base):
    images, ids = batch
    return demo_saver.predict(images, ids), demo_base.predict(images, ids)


def assert_same_detections(a, b, atol=0.0):
    assert a.image_id == b.image_id
    np.testing.assert_array_equal(a.category_ids, b.category_ids)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol, rtol=0)
    np.testing.assert_allclose(a.scores, b.scores, atol=atol, rtol=0)


def test_threshold_zero_returns_the_savers_detections(batch, standalone, demo_saver, demo_base):
    outputs = Cascade(demo_saver, demo_base, 0.0)(*batch)
    assert all(out.record.exited and out.base is None and out.record.base_gflops == 0 for out in outputs)
    for out, expected in zip(outputs, standalone[0].detections):
        assert_same_detections(out.detections, expected)


def test_threshold_above_one_returns_the_bases_detections(batch, standalone, demo_saver, demo_base):
    outputs = Cascade(demo_saver, demo_base, 1.01)(*batch)
    assert not any(out.record.exited for out in outputs)
    for out, expected in zip(outputs, standalone[1].detections):
        assert_same_detections(out.detections, expected)
        assert out.record.base_gflops == pytest.approx(standalone[1].gflops[0])


def test_intermediate_threshold_routes_each_image_by_the_rule(batch, standalone, demo_saver, demo_base):
    saver_alone, base_alone = standalone
    confidences = [image_confidence(d.scores) for d in saver_alone.detections]
    threshold = float(np.median(confidences))
    outputs = Cascade(demo_saver, demo_base, threshold)(*batch)
    exited = [out.record.exited for out in outputs]
    assert 0 < sum(exited) < len(exited)  # both branches are exercised
    for out, confidence, saver_dets, base_dets in zip(outputs, confidences, saver_alone.detections, base_alone.detections):
        assert out.record.confidence == pytest.approx(confidence, abs=1e-12)
        assert out.record.exited == (out.record.confidence >= threshold)
        if out.record.exited:
            assert_same_detections(out.detections, saver_dets)
        else:  # the base ran on a smaller batch of the same shape: equal up to float rounding
            assert_same_detections(out.detections, base_dets, atol=1e-3)
        assert out.record.n_boxes == len(out.detections)


def test_full_mode_keeps_both_answers_but_costs_only_the_routed_ones(batch, demo_saver, demo_base):
    outputs = Cascade(demo_saver, demo_base, 0.2, run_base_on_all=True)(*batch)
    assert all(out.base is not None for out in outputs)
    for out in outputs:
        assert out.record.base_gflops == (0.0 if out.record.exited else out.base.gflops)


def test_max_confidence_is_selectable(batch, demo_saver, demo_base):
    images, ids = batch
    outputs = Cascade(demo_saver, demo_base, 0.5, confidence="max")(images[:4], ids[:4])
    for out in outputs:
        assert out.record.confidence == max_score(out.saver.detections.scores)
