"""The feature post-evaluator: its fit and selection, its router file and refusals (fast, hand-made
features), and with the real pico saver: features from the same forward pass, and the real cascade's
routing equal to the routing simulated from the cached predictions."""

import json

import numpy as np
import pytest

from tinysaver_det.detection.feature_router import FeatureRouter, captured_gain, fit_feature_router, gain_target
from tinysaver_det.detection.router_files import load_router, resolve_router
from tinysaver_det.detection.saver_features import CANDIDATE_NAMES, RECIPE
from tinysaver_det.detection.types import Detections, SaverFeatures
from tinysaver_det.errors import TinySaverInputError

SAVER_SHA = "a" * 64
OTHER_SHA = "b" * 64
N_POOLED = 6


def synthetic_images(n=120, seed=0, saver=SAVER_SHA):
    """Images whose base gain is carried by one candidate statistic (class margin) and one pooled value."""
    rng = np.random.default_rng(seed)
    images, gains = [], []
    for i in range(n):
        values = rng.normal(size=len(CANDIDATE_NAMES) + N_POOLED)
        gain = 0.6 * values[CANDIDATE_NAMES.index("class_margin")] - 0.4 * values[-1] + 0.05 * rng.normal()
        k = int(rng.integers(1, 6))
        boxes = np.tile([10.0, 10.0, 50.0, 50.0], (k, 1)) + rng.integers(0, 100, size=(k, 1))
        images.append(Detections(i + 1, boxes, rng.uniform(0.05, 1, size=k), rng.integers(1, 4, size=k),
                                 SaverFeatures(RECIPE, saver, values, 2e-5)))
        gains.append(gain)
    return images, np.array(gains)


def test_gain_target_is_base_minus_saver_and_zero_without_ground_truth():
    np.testing.assert_allclose(gain_target([0.2, 0.5, -1.0], [0.7, 0.4, -1.0]), [0.5, -0.1, 0.0])


def test_cross_validation_prefers_the_blocks_that_carry_the_gain_and_ranks_held_out_images():
    images, gains = synthetic_images()
    router = fit_feature_router(images[:80], gains[:80])
    assert "candidates" in router.blocks and "pooled" in router.blocks  # outputs alone carry nothing here
    table = router.info["cv_table"]
    outputs_only = max(r["cv_captured_gain"] for r in table if r["blocks"] == "outputs")
    assert max(r["cv_captured_gain"] for r in table) > outputs_only + 0.2
    confidences = np.array([router(d) for d in images[80:]])
    assert ((0 < confidences) & (confidences < 1)).all()
    # high confidence = little to gain: sending the least confident images to the base captures most of the gain
    assert captured_gain(-confidences, gains[80:]) > 0.8
    assert captured_gain(confidences, gains[80:]) < 0.3


def test_router_file_round_trips_and_is_usable_as_a_confidence_option(tmp_path):
    images, gains = synthetic_images()
    router = fit_feature_router(images, gains, name="features")
    path = router.save(tmp_path / "features_router.json")
    data = json.loads(path.read_text())
    assert data["kind"] == "features" and data["saver_sha256"] == SAVER_SHA and data["recipe"] == RECIPE
    loaded = resolve_router(str(path))
    assert isinstance(loaded, FeatureRouter)
    assert [loaded(d) for d in images[:10]] == [router(d) for d in images[:10]]
    assert loaded.gflops(images[0]) > 2e-5  # the capture's cost plus the output statistics and the model


def test_a_router_file_from_another_saver_is_refused(tmp_path):
    images, gains = synthetic_images()
    path = fit_feature_router(images, gains, block_choices=[("outputs", "candidates", "pooled")]).save(
        tmp_path / "r.json")
    router = load_router(path)
    foreign, _ = synthetic_images(n=3, saver=OTHER_SHA)
    with pytest.raises(TinySaverInputError, match="sha256 aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        router(foreign[0])
    with pytest.raises(TinySaverInputError, match="sha256"):
        router.check_saver({"name": "other.pt", "sha256": OTHER_SHA, "features": RECIPE})
    router.check_saver({"name": "pico.pt", "sha256": SAVER_SHA, "features": RECIPE})  # its own saver passes
    bare = Detections(1, [[0, 0, 5, 5]], [0.9], [1])
    with pytest.raises(TinySaverInputError, match="features=True"):
        router(bare)
    other_recipe = Detections(1, [[0, 0, 5, 5]], [0.9], [1], SaverFeatures("other/1", SAVER_SHA, np.zeros(3)))
    with pytest.raises(TinySaverInputError, match="recipe"):
        router(other_recipe)


def test_features_survive_the_prediction_cache_row():
    images, _ = synthetic_images(n=2)
    again = Detections.from_dict(json.loads(json.dumps(images[0].to_dict())))
    assert again.features.recipe == RECIPE and again.features.saver == SAVER_SHA
    np.testing.assert_array_equal(again.features.values, images[0].features.values)
    assert "features" not in Detections(1, [], [], []).to_dict()


# ---------------------------------------------------------------------------------------------
# The real saver (pico) on real demo images.

N_IMAGES = 24


@pytest.fixture(scope="module")
def batch(demo_images):
    return demo_images(N_IMAGES)


@pytest.fixture(scope="module")
def feature_saver(demo_dataset):
    from tinysaver_det import assets
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(assets.asset_path(assets.DEMO_SAVER), demo_dataset.category_ids_by_name,
                               features=True)


@pytest.mark.slow
def test_features_come_from_the_same_forward_pass_as_the_detections(batch, feature_saver, demo_saver):
    import torch

    images, ids = batch
    feature_saver.predict(images[:2], ids[:2])  # sets up the predictor, so its network can be watched
    head = feature_saver.model.predictor.model.model.model[-1]
    calls = []

    def watch(module, args):
        maps = args[0]
        calls.append([torch.cat([m.mean(dim=(2, 3)), m.amax(dim=(2, 3))], dim=1) for m in maps])

    handle = head.register_forward_pre_hook(watch)
    try:
        before = feature_saver.model.predictor.forward_calls
        prediction = feature_saver.predict(images, ids)
    finally:
        handle.remove()
    # one forward of the network for the batch: every image once, none run again for the features
    assert len(calls) == 1 and calls[0][0].shape[0] == len(images)
    assert feature_saver.model.predictor.forward_calls - before == 1
    seen = torch.cat(calls[0], dim=1).double().numpy()
    n_candidates = len(CANDIDATE_NAMES)
    for i, d in enumerate(prediction.detections):
        assert d.features.recipe == RECIPE and d.features.saver == feature_saver.settings["sha256"]
        np.testing.assert_allclose(d.features.values[n_candidates:], seen[i], rtol=1e-6, atol=1e-7)
        assert d.features.gflops > 0
    # capturing changes no detection
    plain = demo_saver.predict(images, ids)
    for a, b in zip(prediction.detections, plain.detections):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
    assert feature_saver.settings["features"] == RECIPE and "features" not in demo_saver.settings


@pytest.mark.slow
def test_real_cascade_routes_as_the_simulation_from_the_cached_predictions(tmp_path, demo_dataset, feature_saver,
                                                                            batch):
    from tinysaver_det import assets
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector
    from tinysaver_det.detection.cache import read_predictions
    from tinysaver_det.detection.cascade import Cascade
    from tinysaver_det.detection.dataset import CocoDataset
    from tinysaver_det.detection.runner import predict_dataset

    subset = CocoDataset(assets.asset_path(assets.DEMO_ANNOTATIONS), assets.asset_path(assets.DEMO_IMAGES),
                         limit=N_IMAGES)
    cached = read_predictions(predict_dataset(feature_saver, subset, tmp_path / "pico.jsonl", batch_size=N_IMAGES,
                                              progress=False))
    detections = [cached[i].detections for i in sorted(cached)]
    rng = np.random.default_rng(0)
    router = fit_feature_router(detections, rng.normal(size=len(detections)),
                                block_choices=[("outputs", "candidates", "pooled")])
    router = load_router(router.save(tmp_path / "features_router.json"))
    simulated = np.array([router(d) for d in detections])
    threshold = float(np.median(simulated))
    base = UltralyticsDetector(assets.asset_path(assets.DEMO_LADDER["n"]), demo_dataset.category_ids_by_name)
    cascade = Cascade(feature_saver, base, threshold, confidence=str(tmp_path / "features_router.json"))
    images, ids = batch
    outputs = cascade(images, ids)
    assert [o.record.image_id for o in outputs] == sorted(cached)
    real = np.array([o.record.confidence for o in outputs])
    np.testing.assert_allclose(real, simulated, rtol=0, atol=1e-9)
    exited = np.array([o.record.exited for o in outputs])
    np.testing.assert_array_equal(exited, simulated >= threshold)
    assert 0 < exited.sum() < len(exited)
    # the evaluator's own cost (capture + statistics + model) is counted into the cascade's, as simulated
    expected = np.array([router.gflops(d) for d in detections])
    assert (expected > 0).all()
    np.testing.assert_allclose([o.record.router_gflops for o in outputs], expected, rtol=1e-9)


@pytest.mark.slow
def test_a_cascade_refuses_a_feature_router_of_another_saver(tmp_path, demo_dataset, feature_saver, demo_base):
    images, gains = synthetic_images(n=30, saver=OTHER_SHA)
    path = fit_feature_router(images, gains, block_choices=[("candidates", "pooled")]).save(tmp_path / "r.json")
    from tinysaver_det.detection.cascade import Cascade

    with pytest.raises(TinySaverInputError, match="sha256"):
        Cascade(feature_saver, demo_base, 0.5, confidence=str(path))


@pytest.mark.slow
def test_post_evaluator_command_writes_one_row_per_router_split_and_budget(tmp_path, demo_slice, feature_saver,
                                                                           capsys):
    import csv

    from tinysaver_det.cli import main
    from tinysaver_det.detection.runner import predict_dataset

    pico = predict_dataset(feature_saver, demo_slice.dataset, tmp_path / "pico.jsonl", batch_size=32, progress=False)
    out = tmp_path / "post"
    argv = ["post-evaluator", "--ann", str(demo_slice.annotations), "--model", f"pico={pico}",
            "--model", f"n={demo_slice.predictions['n']}", "--model", f"s={demo_slice.predictions['s']}",
            "--splits", "2", "--out", str(out)]
    assert main(argv) == 0
    assert "gap closed @ n" in capsys.readouterr().out
    with open(out / "routers.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["router", "split", "budget", "ap", "gap_closed"]
    routers = ["mean", "outputs", "features", "features[outputs]", "features[candidates+pooled]", "features[all]",
               "oracle"]
    assert [(r["router"], r["split"], r["budget"]) for r in rows] == [
        (router, split, budget) for split in ("perm0", "perm1") for router in routers for budget in ("pico", "n", "s")
    ]
    by_key = {(r["router"], r["split"], r["budget"]): r for r in rows}
    for (router, split, budget), row in by_key.items():
        low, high = by_key[("mean", split, budget)]["ap"], by_key[("oracle", split, budget)]["ap"]
        if row["gap_closed"] not in ("", "-", None):
            expected = (float(row["ap"]) - float(low)) / (float(high) - float(low))
            assert float(row["gap_closed"]) == pytest.approx(expected, abs=1e-3)
    router = load_router(out / "features_router.json")
    assert isinstance(router, FeatureRouter) and router.info["n_images"] == 16
    if router.needs_saver_features:
        assert router.saver == feature_saver.settings["sha256"]
