"""A YOLO model alone scores what Ultralytics' own validator says: tinysaver's AP (validator NMS, the
evaluation default) against pycocotools on the predictions json that ``YOLO.val(save_json=True)`` writes.

* with ``rect=False`` the validator runs the same input tensors: equal to 1e-9 once tinysaver's boxes are
  rounded as the json rounds them (3 decimals, scores 5), and within 1e-4 unrounded;
* with its default rectangular batching (256 px images run at 288 px) a few boxes move: within 0.003 AP on
  the 500 demo images (slow).

The comparison itself is ``benchmarks/ultralytics_val_parity.py``, which prints the same numbers.
"""

import pytest

DEMO_MODELS = ("demo:pico", "demo:n", "demo:s")


@pytest.fixture(scope="module")
def parity_script(load_script):
    return load_script("benchmarks/ultralytics_val_parity.py")


@pytest.mark.slow  # Ultralytics' validator and the adapter on 24 images, per model
@pytest.mark.parametrize("weights", DEMO_MODELS)
def test_same_images_run_the_same_way_score_the_same(parity_script, weights, tmp_path):
    ap = parity_script.parity(weights, tmp_path, limit=24)
    assert ap["validator_square"] > 0.05  # the models detect: an empty json would also "match"
    assert abs(ap["rounded"] - ap["validator_square"]) <= 1e-9
    assert abs(ap["tinysaver"] - ap["validator_square"]) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("weights", DEMO_MODELS)
def test_a_model_alone_scores_what_the_validator_says(parity_script, weights, tmp_path):
    ap = parity_script.parity(weights, tmp_path)
    assert abs(ap["tinysaver"] - ap["validator_rect"]) <= 0.003
    assert abs(ap["rounded"] - ap["validator_square"]) <= 1e-9


def test_the_predictor_mode_is_what_yolo_predict_returns(parity_script, demo_dataset):
    """The named option: ``nms="predictor"`` gives exactly Ultralytics' own ``predict`` boxes (one label each),
    the validator mode more boxes, some anchors under two labels."""
    from ultralytics import YOLO

    from tinysaver_det import assets
    from tinysaver_det.detection.images import load_image

    subset = demo_dataset.subset(demo_dataset.image_ids[:4])
    weights = assets.asset_path(assets.DEMO_SAVER)
    # one image per batch, as YOLO.predict on one image: a batch's convolutions may differ in the last bits
    predictor = parity_script.tinysaver_detections(weights, subset, nms="predictor", batch=1)
    validator = parity_script.tinysaver_detections(weights, subset, nms="validator", batch=1)
    model = YOLO(str(weights))
    for info, ours, multi in zip(subset.images, predictor, validator):
        result = model.predict(load_image(subset.path(info)), imgsz=256, conf=0.001, iou=0.7, max_det=300,
                               verbose=False)[0].boxes.cpu().numpy()
        assert ours.boxes.tolist() == result.xyxy.astype(float).tolist()
        assert ours.scores.tolist() == result.conf.astype(float).tolist()
        assert len(multi) > len(ours)
