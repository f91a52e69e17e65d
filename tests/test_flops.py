import copy
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor
from ultralytics import YOLO

from tinysaver_det import assets
from tinysaver_det.core.cost import convention_note, gflops_in_convention
from tinysaver_det.flops import FLOPS_CONVENTION, count_flops, count_flops_without_running

REPO = Path(__file__).resolve().parent.parent

# Ultralytics' published GFLOPs at 640 (fused), FLOPs = 2 * MACs.
PUBLISHED = {"n": 8.7, "s": 28.6, "m": 78.9, "l": 165.2, "x": 257.8}


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_yolov8_gflops_match_ultralytics_published(variant):
    model = YOLO(f"yolov8{variant}.yaml").model.fuse().eval()
    count = count_flops(lambda: model(torch.zeros(1, 3, 640, 640)))
    assert count.gflops == pytest.approx(PUBLISHED[variant], abs=0.1)
    assert "silu" in {op.rstrip("_") for op in count.uncounted_ops}  # listed, not silently dropped
    assert "convolution" not in count.uncounted_ops


def test_convention_is_stated():
    assert "2 * MACs" in FLOPS_CONVENTION


def test_linear_layer_counts_two_flops_per_mac():
    layer = torch.nn.Linear(10, 5, bias=False)
    assert count_flops(lambda: layer(torch.zeros(3, 10))).gflops * 1e9 == 2 * 3 * 10 * 5


def test_counting_without_running_equals_the_real_forward_count():
    model = YOLO("yolov8n.yaml").model.fuse().eval()
    real = count_flops(lambda: model(torch.zeros(1, 3, 320, 256)))
    fake = count_flops_without_running(lambda: model(torch.zeros(1, 3, 320, 256)), model)
    assert fake.gflops == real.gflops > 0


def test_counting_without_running_leaves_no_fake_tensor_in_the_model():
    """Ultralytics' detect head caches its anchors per input shape in a plain attribute: counting at a
    shape must not leave fake anchors for the next real forward at that shape."""
    model = YOLO("yolov8n.yaml").model.fuse().eval()
    untouched = copy.deepcopy(model)
    image = torch.rand(1, 3, 256, 256)
    count_flops_without_running(lambda: model(torch.zeros(1, 3, 256, 256)), model)
    with torch.no_grad():
        after = model(image)[0]
        expected = untouched(image)[0]
    assert not isinstance(model.model[-1].anchors, FakeTensor)
    assert torch.equal(after, expected)


@pytest.mark.parametrize("name", sorted(assets.DEMO_LADDER))
def test_demo_detector_gflops_equal_a_real_forward_count_at_the_shape_run(name, demo_dataset):
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector
    from tinysaver_det.detection.images import load_image

    detector = UltralyticsDetector(assets.demo_weights(name), demo_dataset.category_ids_by_name)
    infos = demo_dataset.images[:2]
    images = [load_image(demo_dataset.path(info)) for info in infos]
    prediction = detector.predict(images, [info.image_id for info in infos])
    network = detector.model.predictor.model.model
    reference = count_flops(lambda: network(torch.zeros(1, 3, *prediction.input_shapes[0])))
    assert prediction.gflops == [reference.gflops] * 2
    again = detector.predict(images, [info.image_id for info in infos])  # the network still runs for real
    assert [len(d.scores) for d in again.detections] == [len(d.scores) for d in prediction.detections]


def test_the_convention_note_names_the_unit_and_the_input_size():
    assert convention_note("flops") == FLOPS_CONVENTION + ", per image at the input shape each image ran"
    note = convention_note("paper-macs", (800, 1333))
    assert "GMACs" in note and "1333x800" in note
    assert gflops_in_convention(10.0, "flops") == 10.0 and gflops_in_convention(10.0, "paper-macs") == 5.0


def mmdet_base(config: str):
    """The base detector of a shipped config, random weights, in eval mode."""
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import tinysaver_det.mmdet  # noqa: F401  (registers the plug-in)

    init_default_scope("mmdet")
    return MODELS.build(Config.fromfile(REPO / "configs" / config).model.base).eval()


@pytest.mark.parametrize("config, post_processing_counted", [
    ("tinysaver_demo_rtmdet-tiny_coco-subset.py", False),  # its score filter sizes tensors by values
    ("tinysaver_yolov8n_dino-4scale-r50_coco.py", True),  # DETR: spatial shapes as tensors, all counted
])
def test_mmdet_gflops_without_running_equal_a_real_predict(config, post_processing_counted):
    from tinysaver_det.adapters.mmdet import POST_PROCESSING, MMDetFlops

    model = mmdet_base(config)
    counted, reference = MMDetFlops(model), MMDetFlops(model, running=True)
    for shape in [(320, 256), (256, 352)]:
        assert counted(shape) == reference(shape) > 0
    assert (POST_PROCESSING not in counted.uncounted_ops) == post_processing_counted


def test_a_two_stage_mmdet_detector_is_counted_on_a_real_forward_with_a_warning():
    """Its RoI head works on the proposals the RPN's post-processing makes, which fake tensors cannot."""
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from tinysaver_det.adapters.mmdet import MMDetFlops

    mmdet_base("tinysaver_demo_rtmdet-tiny_coco-subset.py")  # the registry scope
    config = Config.fromfile(f"{mmdet_config_root()}/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py")
    config.model.backbone.update(depth=18, init_cfg=None)
    config.model.neck.in_channels = [64, 128, 256, 512]
    model = MODELS.build(config.model).eval()
    with pytest.warns(UserWarning, match="counted on a real forward"):
        gflops = MMDetFlops(model)((224, 224))
    assert gflops == MMDetFlops(model, running=True)((224, 224)) > 0


def mmdet_config_root() -> str:
    import mmdet

    return str(Path(mmdet.__file__).parent / ".mim" / "configs")
