import pytest
import torch
from ultralytics import YOLO

from tinysaver_det.flops import FLOPS_CONVENTION, count_flops

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
