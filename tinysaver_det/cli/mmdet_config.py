"""``test-mmdet``: test a TinySaver mmdet config with mmengine's Runner (COCO metrics, exit ratio, GFLOPs, routing)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Test a TinySaver mmdet config with mmengine's Runner (COCO metrics, exit ratio, GFLOPs, routing).

One process:

    python -m tinysaver_det test-mmdet configs/tinysaver_yolov8n_rtmdet-l_coco.py --checkpoint rtmdet_l.pth

Two processes on one machine (GPUs, or CPU with the gloo backend):

    torchrun --standalone --nproc_per_node 2 tools/test_mmdet.py CONFIG --launcher pytorch

Writes ``<work-dir>/routing.json`` (per image: image_id, confidence, exited, saver/base GFLOPs) and
``<work-dir>/metrics.json``, next to mmengine's logs.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmengine.config import DictAction

    from tinysaver_det.cli.options import device_argument

    parser.add_argument("config", help="TinySaver config file (configs/tinysaver_*.py)")
    parser.add_argument("--checkpoint", help="the base detector's checkpoint (e.g. official mmdet weights)")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' under torchrun (default: none, one process)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config settings, e.g. model.threshold=0.3 test_dataloader.dataset.data_root=...")
    parser.add_argument("--work-dir", help="logs, routing.json and metrics.json (default: work_dirs/<config name>)")
    parser.add_argument("--device", type=device_argument,
                        help="where the saver and the base run: cpu, cuda, cuda:N, N (one process only; default: "
                             "this process's GPU if any, else the CPU); one this machine lacks is refused")
    parser.add_argument("--half", action="store_true",
                        help="fp16 inference of the saver (needs --device naming a GPU: refused on the CPU)")


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.mmdet.evaluate_config import run_test

    run_test(args.config, args.checkpoint, args.launcher, args.cfg_options, args.work_dir, args.device, args.half)
    return 0
