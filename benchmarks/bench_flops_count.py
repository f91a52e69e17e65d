"""Seconds to count one new input shape: on fake tensors (what the package does) and on a real forward
(the reference), with both counts, for an mmdet base's ``predict``.

    python benchmarks/bench_flops_count.py                                  # DINO-4scale R-50, random weights
    python benchmarks/bench_flops_count.py --config configs/tinysaver_yolov8n_rtmdet-l_coco.py --shapes 640x640
    PYTHONPATH=mmdetection python benchmarks/bench_flops_count.py \\
        --config configs/tinysaver_yolov8n_codino-swin-l_coco.py --shapes 1914x1280   # Co-DINO (needs the checkout)

The config is a TinySaver config (its ``model.base`` is counted) or a base detector's. The uncounted list
says which way :class:`~tinysaver_det.adapters.mmdet.MMDetFlops` took (``predict_by_feat ...``: way 2), and a
warning says when it fell back to a real forward (way 3).
"""

from __future__ import annotations

import argparse
from time import perf_counter

from tinysaver_det.cli.table import size_argument


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tinysaver_yolov8n_dino-4scale-r50_coco.py")
    parser.add_argument("--shapes", type=size_argument, nargs="+", default=[(800, 1333)], metavar="WxH")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import tinysaver_det.mmdet  # noqa: F401  (registers the plug-in)
    from tinysaver_det.adapters.mmdet import MMDetFlops, is_cascade_config

    init_default_scope("mmdet")
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model.base if is_cascade_config(cfg) else cfg.model).eval().to(args.device)
    fake, real = MMDetFlops(model), MMDetFlops(model, running=True)
    for shape in args.shapes:
        start = perf_counter()
        counted = fake(shape)
        middle = perf_counter()
        reference = real(shape)
        end = perf_counter()
        print(f"{shape[1]}x{shape[0]}: {counted:.2f} GFLOPs in {middle - start:.1f} s without running; "
              f"{reference:.2f} GFLOPs in {end - middle:.1f} s on a real forward")
    print("uncounted:", ", ".join(fake.uncounted_ops))


if __name__ == "__main__":
    main()
