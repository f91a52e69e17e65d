"""``eval``: run a TinySaver detection cascade on a COCO-format dataset and print its COCO numbers
(in one process, or sharded over the processes of a ``torchrun`` job)."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext

from tinysaver_det.cli.options import (
    add_confidence_options,
    add_dataset_options,
    add_detector_options,
    add_operating_point_option,
    add_run_options,
    check_operating_point,
    dataset_paths,
    interrupted,
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

Under torchrun the images are split across the processes in whole batches (gloo on CPU, nccl with a
CUDA --device); each rank writes its shard under --out/shards/ and rank 0 merges them and evaluates
(docs/distributed.md). A sharded run resumes with the same number of processes:

    torchrun --standalone --nproc_per_node 4 -m tinysaver_det eval --t 0.25 --out runs/4p
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_detector_options(parser)
    parser.add_argument("--base-checkpoint", help="checkpoint of an mmdet --base (without it: random weights)")
    add_dataset_options(parser)
    parser.add_argument("--t", type=threshold_argument,
                        help="exit threshold >= 0 (default 0.25); above 1 no image exits")
    add_operating_point_option(parser)
    add_confidence_options(parser)
    add_run_options(parser, out="runs/eval_coco", resume=True)
    parser.add_argument("--full", action="store_true",
                        help="also run the base on exited images: saver-alone and base-alone rows, sweepable records")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from tinysaver_det.adapters import is_mmdet_config

    check_operating_point(parser, args)
    if args.base_checkpoint and not (args.base and is_mmdet_config(args.base)):
        parser.error("--base-checkpoint needs an mmdet config (.py) as --base; a YOLO's weights are the --base file")


def run(args: argparse.Namespace) -> int:
    """Build the dataset, both detectors and the cascade from ``args``, run it, print the table."""
    from tinysaver_det import assets
    from tinysaver_det.build import build_cascade
    from tinysaver_det.detection.dataset import CocoDataset
    from tinysaver_det.detection.runner import evaluate_cascade
    from tinysaver_det.distributed import process_group, rank_device
    from tinysaver_det.lock import RunLock

    t = 0.25 if args.t is None else args.t
    if t > 1:
        print(f"note: --t {t:g} > 1: no image can exit (confidences are in [0, 1]); every image goes to the base",
              file=sys.stderr)
    try:
        # Rank 0 (the one process of a plain run) locks the run directory before the models load, so that a
        # second writer is refused at once; under torchrun the other ranks lock their shard folders in the runner.
        with process_group(args.device) as context, RunLock(args.out) if context.is_main else nullcontext():
            dataset = CocoDataset(*dataset_paths(args), limit=args.limit)
            device = rank_device(args.device, context)
            if args.op:
                cascade = build_cascade(operating_point=args.op, category_ids_by_name=dataset.category_ids_by_name,
                                        device=device, half=args.half, run_base_on_all=args.full)
            else:
                base = args.base or assets.asset_path(assets.DEMO_BASE)
                cascade = build_cascade(
                    [args.saver or assets.asset_path(assets.DEMO_SAVER),
                     (base, args.base_checkpoint) if args.base_checkpoint else base],
                    t=t, confidence=args.confidence, min_score=args.min_score,
                    category_ids_by_name=dataset.category_ids_by_name, device=device, half=args.half,
                    imgsz=args.imgsz, nms=args.nms, run_base_on_all=args.full)
            summary = evaluate_cascade(cascade, dataset, args.out, batch_size=args.batch, progress=not args.quiet,
                                       resume=args.resume, overwrite=args.overwrite, context=context)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (handled alike by the command line)
        return interrupted(args.out)
    if context.is_main:  # under torchrun every rank has the summary; one prints it
        processes = f", {context.world_size} processes" if context.sharded else ""
        print(f"\nTinySaver: saver {summary.saver} -> base {summary.base}   (outputs in {args.out}{processes})\n")
        print(summary.screen())
    return 0
