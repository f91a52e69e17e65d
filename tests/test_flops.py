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


@pytest.mark.slow
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
    pytest.param("tinysaver_yolov8n_dino-4scale-r50_coco.py", True,  # DETR: spatial shapes as tensors, all counted
                 marks=pytest.mark.slow),  # a real DINO forward: seconds on 2 cores
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


def two_row_pair():
    """A saver/base pair with a two-threshold sweep (costs in GFLOPs at the shapes run)."""
    from tinysaver_det.core.cascade_model import StageRow
    from tinysaver_det.detection.studies.benchmark_table import PairSweep
    from tinysaver_det.detection.studies.thresholds import DetectionSweep

    metrics = lambda ap: {"AP": ap, "AP50": ap, "AP75": ap}  # noqa: E731
    rows = [StageRow((0.25,), (0.5, 0.5), {"cost": 6.0}, metrics(0.40)),
            StageRow((0.5,), (0.2, 0.8), {"cost": 9.0}, metrics(0.45))]
    sweep = DetectionSweep(rows, metrics(0.30), metrics(0.46), 1.0, 10.0, None, 0.0)
    return PairSweep("saver", "base", sweep)


def test_the_paper_convention_prints_gmacs_at_the_stated_size():
    from tinysaver_det.detection.studies.benchmark_table import CostConvention, benchmark_table

    pair = two_row_pair()
    as_run = benchmark_table([pair], (0.25,), (0.01,))
    halved = benchmark_table([pair], (0.25,), (0.01,), CostConvention("paper-macs"))
    assert halved.header[7:] == ("GMACs/img", "GMACs vs base") and as_run.header[7] == "GFLOPs/img"
    assert [row[7] / 2 for row in as_run.rows] == [row[7] for row in halved.rows]
    assert "the input shape each image ran" in halved.note and "GMACs" in halved.note

    at_size = CostConvention("paper-macs", (800, 1333), {"saver": 4.0, "base": 3000.0})
    table = benchmark_table([pair], (0.25,), (0.01,), at_size)
    costs = {(row[0], row[1]): row[7] for row in table.rows}
    assert costs[("saver", "static")] == 2.0 and costs[("base", "static")] == 1500.0
    assert costs[("saver -> base", "t = 0.25")] == (4.0 + 0.5 * 3000.0) / 2  # Eq. 1 at exit ratio 0.5
    assert "1333x800" in table.note
    with pytest.raises(ValueError, match="no GFLOPs at 1333x800 given for base"):
        benchmark_table([pair], (0.25,), (0.01,), CostConvention("paper-macs", (800, 1333), {"saver": 4.0}))


@pytest.mark.parametrize("flags, message", [
    (["--flops-size", "1333x800"], "--flops-size and --gflops-at-size go together"),
    (["--flops-size", "1333"], "expected WIDTHxHEIGHT in pixels such as 1333x800, got '1333'"),
    (["--gflops-at-size", "base"], "expected NAME=GFLOPS, got 'base'"),
    (["--flops-convention", "macs"], "invalid choice: 'macs'"),
])
def test_table_refuses_a_half_given_cost_size_in_one_error_line(flags, message, tmp_path, capsys):
    from tinysaver_det.cli import main

    try:
        code = main(["table", "--runs", str(tmp_path), *flags])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and message in err.strip().splitlines()[-1]


def test_the_torch_stand_in_for_deformable_attention_computes_what_mmcv_computes_on_the_cpu():
    """Fake tensors cannot run mmcv's CUDA kernel; counting uses the torch version instead."""
    pytest.importorskip("mmdet")
    from mmcv.ops import multi_scale_deform_attn

    from tinysaver_det.adapters.mmdet import _deformable_attention_in_torch

    torch.manual_seed(0)
    shapes = torch.tensor([[4, 6], [2, 3]])
    value = torch.rand(1, 30, 2, 8)
    locations, weights = torch.rand(1, 5, 2, 2, 3, 2), torch.rand(1, 5, 2, 2, 3)
    kernel = multi_scale_deform_attn.MultiScaleDeformableAttnFunction
    with _deformable_attention_in_torch():
        stand_in = multi_scale_deform_attn.MultiScaleDeformableAttnFunction
        output = stand_in.apply(value, shapes, torch.tensor([0, 24]), locations, weights, 64)
    assert multi_scale_deform_attn.MultiScaleDeformableAttnFunction is kernel and stand_in is not kernel
    assert torch.equal(output, multi_scale_deform_attn.multi_scale_deformable_attn_pytorch(value, shapes, locations, weights))


class _ReadsAValue(torch.nn.Module):
    """Sizes its work by a value computed from the input: fake tensors have no values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        repeats = int((x.sum() >= 0).item()) + 1
        return [self.conv(x) for _ in range(repeats)]


def test_a_model_fake_tensors_cannot_run_is_counted_on_a_real_forward_with_a_warning():
    from torch._subclasses.fake_tensor import DataDependentOutputException

    from tinysaver_det.flops import count_flops_running_if_needed

    model = _ReadsAValue()
    forward = lambda: model(torch.zeros(1, 3, 8, 8))  # noqa: E731
    with pytest.raises(DataDependentOutputException):
        count_flops_without_running(forward, model)
    with pytest.warns(UserWarning, match="toy: fake tensors cannot run its forward"):
        count = count_flops_running_if_needed(forward, model, "toy")
    assert count == count_flops(forward) and count.gflops > 0
