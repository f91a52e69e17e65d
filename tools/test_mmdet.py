"""Test a TinySaver mmdet config with mmengine's Runner (COCO metrics, exit ratio, GFLOPs, routing).

One process:

    python tools/test_mmdet.py configs/tinysaver_yolov8n_rtmdet-l_coco.py --checkpoint rtmdet_l.pth

Two processes on one machine (GPUs, or CPU with the gloo backend):

    torchrun --standalone --nproc_per_node 2 tools/test_mmdet.py CONFIG --launcher pytorch

Writes ``<work-dir>/routing.json`` (per image: image_id, confidence, exited, saver/base GFLOPs) and
``<work-dir>/metrics.json``, next to mmengine's logs.
"""

from __future__ import annotations

import argparse
import sys

from mmengine.config import DictAction

from tinysaver_det.mmdet.runner import run_test
from tinysaver_det.errors import exit_code_of


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="TinySaver config file (configs/tinysaver_*.py)")
    parser.add_argument("--checkpoint", help="the base detector's checkpoint (e.g. official mmdet weights)")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' under torchrun (default: none, one process)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config settings, e.g. model.threshold=0.3 test_dataloader.dataset.data_root=...")
    parser.add_argument("--work-dir", help="logs, routing.json and metrics.json (default: work_dirs/<config name>)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    run_test(args.config, args.checkpoint, args.launcher, args.cfg_options, args.work_dir)
    return 0


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
