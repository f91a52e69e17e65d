"""Run a TinySaver detection cascade on a COCO-format dataset and print its COCO numbers.

With no flag it runs the embedded default (demo saver pico, demo base s, demo val split):

    python tools/eval_coco.py --t 0.25

On real COCO with official weights:

    python tools/eval_coco.py --saver yolov8n.pt --base yolov8x.pt \
        --images /data/coco/val2017 --ann /data/coco/annotations/instances_val2017.json --t 0.25

With an mmdet base (a .py --base is an mmdet detector config):

    python tools/eval_coco.py --saver yolov8n.pt --base rtmdet_l_8xb32-300e_coco.py \
        --base-checkpoint rtmdet_l_8xb32-300e_coco_20220719_112030-5a0be7c4.pth ...

A killed run continues where it stopped with the same command plus --resume (safe to pass always:
with no run in --out it starts one). A wrong input ends with "error: <message>" and exit code 2.

Under torchrun the images are split across the processes (gloo on CPU, nccl with a CUDA --device),
each rank writes its shard under --out/shards/, and rank 0 merges them (docs/distributed.md):

    torchrun --standalone --nproc_per_node 4 tools/eval_coco.py --t 0.25 --out runs/4p
"""

from __future__ import annotations

import argparse
import sys

from tinysaver_det import assets
from tinysaver_det.adapters import create_detector, is_mmdet_config
from tinysaver_det.core.policy import CONFIDENCE_FUNCTIONS, DEFAULT_MIN_SCORE, validate_threshold
from tinysaver_det.core.router import confidence_argument
from tinysaver_det.detection.cascade import Cascade
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.run import evaluate_cascade
from tinysaver_det.distributed import process_group, rank_device
from tinysaver_det.errors import exit_code_of


def _threshold(text: str) -> float:
    """argparse type of --t: a number >= 0 (above 1: nothing exits), NaN refused."""
    try:
        return validate_threshold(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fraction(text: str) -> float:
    """argparse type of a score in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type of a count >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saver", help="saver weights (.pt/.yaml or official name); default: demo pico")
    parser.add_argument("--base", help="base weights, or an mmdet config (.py); default: demo s")
    parser.add_argument("--base-checkpoint", help="checkpoint of an mmdet --base (without it: random weights)")
    parser.add_argument("--images", help="image folder; default: demo val images")
    parser.add_argument("--ann", help="COCO annotation json; default: demo val annotations")
    parser.add_argument("--t", type=_threshold, default=0.25,
                        help="exit threshold >= 0 (default 0.25); above 1 no image exits")
    parser.add_argument("--min-score", type=_fraction, default=DEFAULT_MIN_SCORE, help="score floor of the confidence")
    parser.add_argument("--confidence", type=confidence_argument, default="mean",
                        help=f"image confidence: one of {', '.join(sorted(CONFIDENCE_FUNCTIONS))} (default: mean, the "
                             "paper's) or a router file (.json, e.g. from tools/compare_routers.py)")
    parser.add_argument("--batch", type=_positive_int, default=32, help="images per batch (default 32)")
    parser.add_argument("--imgsz", type=_positive_int,
                        help="inference size of the Ultralytics models; default: each model's own "
                             "(an mmdet base's comes from its config's test pipeline)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, 0, cuda:0 ...")
    parser.add_argument("--out", default="runs/eval_coco", help="run directory (default runs/eval_coco)")
    parser.add_argument("--limit", type=_positive_int, help="evaluate only the first N images (by id)")
    parser.add_argument("--full", action="store_true",
                        help="also run the base on exited images: saver-alone and base-alone rows, sweepable records")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in --out where it stopped (same settings required); "
                               "starts one when --out holds none")
    existing.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.base_checkpoint and not (args.base and is_mmdet_config(args.base)):
        parser.error("--base-checkpoint needs an mmdet config (.py) as --base; a YOLO's weights are the --base file")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.t > 1:
        print(f"note: --t {args.t:g} > 1: no image can exit (confidences are in [0, 1]); every image goes to the base",
              file=sys.stderr)
    try:
        return exit_code_of(evaluate, args)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished batches are in {args.out}; add --resume to continue", file=sys.stderr)
        return 130


def evaluate(args: argparse.Namespace) -> int:
    """Build the dataset, both detectors and the cascade from ``args``, run it, print the table.

    Under ``torchrun`` every rank runs its shard of the images and rank 0 prints the table.
    """
    with process_group(args.device) as context:
        dataset = CocoDataset(
            args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS),
            args.images or assets.asset_path(assets.DEMO_IMAGES),
            limit=args.limit,
        )
        device = rank_device(args.device, context)
        saver = create_detector(args.saver or assets.asset_path(assets.DEMO_SAVER), dataset.category_ids_by_name,
                                imgsz=args.imgsz, device=device)
        base_weights = args.base or assets.asset_path(assets.DEMO_BASE)
        base_options = dict(checkpoint=args.base_checkpoint) if is_mmdet_config(base_weights) else dict(imgsz=args.imgsz)
        base = create_detector(base_weights, dataset.category_ids_by_name, device=device, **base_options)
        cascade = Cascade(saver, base, args.t, min_score=args.min_score, confidence=args.confidence,
                          run_base_on_all=args.full)
        summary = evaluate_cascade(cascade, dataset, args.out, batch_size=args.batch, progress=not args.quiet,
                                   resume=args.resume, overwrite=args.overwrite, context=context)
    if context.is_main:
        processes = f", {context.world_size} processes" if context.sharded else ""
        print(f"\nTinySaver: saver {summary.saver} -> base {summary.base}   (outputs in {args.out}{processes})\n")
        print(summary.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
