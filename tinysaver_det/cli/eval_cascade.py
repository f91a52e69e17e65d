"""``eval``: run a TinySaver detection cascade on a COCO-format dataset and print its COCO numbers."""

from __future__ import annotations

import argparse
import sys

from tinysaver_det.cli.options import (
    add_confidence_options,
    add_dataset_options,
    add_detector_options,
    add_run_options,
    dataset_paths,
    threshold_argument,
)

DESCRIPTION = """\
Run a TinySaver detection cascade on a COCO-format dataset and print its COCO numbers.

With no flag it runs the embedded default (demo saver pico, demo base s, demo val split):

    python -m tinysaver_det eval --t 0.25          (or: python tools/eval_coco.py --t 0.25)

On real COCO with official weights:

    python -m tinysaver_det eval --saver yolov8n.pt --base yolov8x.pt \\
        --images /data/coco/val2017 --ann /data/coco/annotations/instances_val2017.json --t 0.25

With an mmdet base (a .py --base is an mmdet detector config):

    python -m tinysaver_det eval --saver yolov8n.pt --base rtmdet_l_8xb32-300e_coco.py \\
        --base-checkpoint rtmdet_l_8xb32-300e_coco_20220719_112030-5a0be7c4.pth ...

A killed run continues where it stopped with the same command plus --resume (safe to pass always:
with no run in --out it starts one). A wrong input ends with "error: <message>" and exit code 2.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_detector_options(parser)
    parser.add_argument("--base-checkpoint", help="checkpoint of an mmdet --base (without it: random weights)")
    add_dataset_options(parser)
    parser.add_argument("--t", type=threshold_argument, default=0.25,
                        help="exit threshold >= 0 (default 0.25); above 1 no image exits")
    add_confidence_options(parser)
    add_run_options(parser, out="runs/eval_coco", resume=True)
    parser.add_argument("--full", action="store_true",
                        help="also run the base on exited images: saver-alone and base-alone rows, sweepable records")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from tinysaver_det.adapters import is_mmdet_config

    if args.base_checkpoint and not (args.base and is_mmdet_config(args.base)):
        parser.error("--base-checkpoint needs an mmdet config (.py) as --base; a YOLO's weights are the --base file")


def run(args: argparse.Namespace) -> int:
    """Build the dataset, both detectors and the cascade from ``args``, run it, print the table."""
    from tinysaver_det import assets
    from tinysaver_det.adapters import create_detector, is_mmdet_config
    from tinysaver_det.core.policy import ExitPolicy
    from tinysaver_det.detection.cascade import Cascade
    from tinysaver_det.detection.dataset import CocoDataset
    from tinysaver_det.detection.post_evaluator import router_needs_saver_features
    from tinysaver_det.detection.runner import evaluate_cascade
    from tinysaver_det.errors import TinySaverInputError

    if args.t > 1:
        print(f"note: --t {args.t:g} > 1: no image can exit (confidences are in [0, 1]); every image goes to the base",
              file=sys.stderr)
    try:
        dataset = CocoDataset(*dataset_paths(args), limit=args.limit)
        saver_weights = args.saver or assets.asset_path(assets.DEMO_SAVER)
        features = router_needs_saver_features(args.confidence)
        if features and is_mmdet_config(saver_weights):
            raise TinySaverInputError(f"--confidence {args.confidence} reads a YOLO saver's own features; "
                                      f"the mmdet saver {saver_weights} captures none")
        saver = create_detector(saver_weights, dataset.category_ids_by_name, imgsz=args.imgsz, device=args.device,
                                features=features or None)
        base_weights = args.base or assets.asset_path(assets.DEMO_BASE)
        base_options = dict(checkpoint=args.base_checkpoint) if is_mmdet_config(base_weights) else dict(imgsz=args.imgsz)
        base = create_detector(base_weights, dataset.category_ids_by_name, device=args.device, **base_options)
        rule = ExitPolicy(args.t, args.confidence, args.min_score)
        cascade = Cascade(saver, base, rule, run_base_on_all=args.full)
        summary = evaluate_cascade(cascade, dataset, args.out, batch_size=args.batch, progress=not args.quiet,
                                   resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished batches are in {args.out}; add --resume to continue", file=sys.stderr)
        return 130
    print(f"\nTinySaver: saver {summary.saver} -> base {summary.base}   (outputs in {args.out})\n")
    print(summary.to_markdown())
    return 0
