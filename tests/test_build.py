"""The one cascade builder and the Detector contract, with fake detectors (no model, no framework):
exit rules given as ``t`` or ``ExitPolicy``, K stages, classes by name, the contract's defaults."""

import numpy as np
import pytest

from tinysaver_det.build import build_cascade, build_stages, exit_policies
from tinysaver_det.core.policy import ExitPolicy
from tinysaver_det.detection.cascade import Cascade, MultiStageCascade
from tinysaver_det.detection.types import (
    Detections,
    Detector,
    DetectorBase,
    Prediction,
    detector_names,
    detector_predict_args,
    detector_settings,
    detector_uncounted_ops,
)
from tinysaver_det.errors import TinySaverInputError


class Fake:
    """A duck-typed Detector: one box of ``score`` (category 1) on every image."""

    def __init__(self, name, score, names=None):
        self.name, self.score = name, score
        if names is not None:
            self.names = names

    def predict(self, images, image_ids):
        detections = [Detections(i, [[0, 0, 5, 5]], [self.score], [1]) for i in image_ids]
        return Prediction(detections, [1.0] * len(image_ids), [0.0] * len(image_ids))


class Based(DetectorBase):
    """The same through the contract's base class, with its own predict_args."""

    def __init__(self, conf):
        self.name, self.predict_args = "based", {"conf": conf}

    predict = Fake.predict
    score = 0.5


def test_a_duck_typed_detector_reads_as_the_base_class_defaults():
    fake = Fake("fake", 0.5)
    assert isinstance(fake, Detector) and isinstance(Based(0.001), Detector)
    assert detector_settings(fake) == {"name": "fake"} == detector_settings(Fake("fake", 0.1))
    assert (detector_names(fake), detector_predict_args(fake), detector_uncounted_ops(fake)) == ({}, {}, ())
    based = Based(0.001)
    assert detector_settings(based) == {"name": "based"} and detector_predict_args(based) == {"conf": 0.001}
    assert detector_names(Fake("named", 0.5, {1: "thing"})) == {1: "thing"}


def test_the_cascade_checks_the_score_floor_through_the_contract():
    with pytest.raises(TinySaverInputError, match="conf=0.25 > min_score=0.05"):
        build_cascade([Based(0.25), Fake("base", 0.9, {1: "thing"})], t=0.3, category_ids_by_name={"thing": 1})


def test_t_and_an_exit_policy_build_the_same_cascade_and_exactly_one_is_taken():
    models = [Fake("saver", 0.4, {1: "thing"}), Fake("base", 0.9, {1: "thing"})]
    by_t = build_cascade(models, t=0.3, confidence="max", min_score=0.1)
    by_policy = build_cascade(models, ExitPolicy(0.3, "max", 0.1))
    assert isinstance(by_t, Cascade) and by_t.policy == by_policy.policy == ExitPolicy(0.3, "max", 0.1)
    images, ids = [np.zeros((4, 4, 3), np.uint8)] * 2, [1, 2]
    assert [o.record.exited for o in by_t(images, ids)] == [True, True]
    assert [o.record.exited for o in build_cascade(models, t=0.5)(images, ids)] == [False, False]
    for wrong in (dict(), dict(policy=ExitPolicy(0.3), t=0.3)):
        with pytest.raises(TinySaverInputError, match="either as policy"):
            build_cascade(models, **wrong)


def test_k_models_give_a_multistage_cascade_with_one_rule_per_stage_but_the_last():
    models = [Fake(f"m{k}", s, {1: "thing"}) for k, s in enumerate((0.2, 0.6, 0.9))]
    cascade = build_cascade(models, t=[0.5, 0.5])
    assert isinstance(cascade, MultiStageCascade) and cascade.thresholds == (0.5, 0.5)
    assert [o.stage for o in cascade.run([np.zeros((4, 4, 3), np.uint8)], [7])] == [1]
    detectors, policies = build_stages(models, t=[0.5, 0.4], confidence=["mean", "max"])
    assert detectors == models and [p.confidence for p in policies] == ["mean", "max"]
    with pytest.raises(TinySaverInputError, match="t: 1 given for 3 stages"):
        build_cascade(models, t=[0.5])
    with pytest.raises(TinySaverInputError, match="at least 2 models"):
        build_cascade(models[:1], t=0.5)
    assert exit_policies(1, t=2.0)[0].exits(1.0) is False  # t > 1: nothing exits


def test_without_a_dataset_the_last_models_names_are_the_target_and_a_saver_must_share_them():
    with pytest.raises(TinySaverInputError, match="base 'base' has no class names"):
        build_cascade([Fake("saver", 0.5, {1: "thing"}), Fake("base", 0.9)], t=0.3)
    with pytest.raises(TinySaverInputError, match=r"saver 'saver': class ids/names \{1: 'other'\} are not the base's"):
        build_cascade([Fake("saver", 0.5, {1: "other"}), Fake("base", 0.9, {1: "thing"})], t=0.3)
    renamed = build_cascade([Fake("saver", 0.5, {1: "other"}), Fake("base", 0.9, {1: "thing"})], t=0.3,
                            class_map={"other": "thing"})
    assert renamed.saver.name == "saver"
