"""``tinysaver predict``: the cascade on any images or video, one json row per image or frame."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Run a saver -> base cascade on any images or video (no dataset needed) and write one row per
image or frame to OUT/predictions.jsonl, a summary.json and, with --save, the images drawn by Ultralytics.

    tinysaver predict --source photos/ --saver demo:pico --base demo:s --t 0.25 --out runs/predict
    tinysaver predict --source clip.mp4 --saver yolov8n.pt --base yolov8x.pt --t 0.3 --save --out runs/clip
    tinysaver predict --source photos/ --op runs/pick/operating_point.json --out runs/predict

--source takes what Ultralytics' predict takes: an image, a folder, a glob, a .txt list of paths, a
video, a webcam index, a stream URL. --conf only filters the boxes written: the routing always sees
the saver's boxes at the evaluation settings (conf 0.001), so it does not depend on --conf. A folder
run that was stopped continues with --resume (an unfinished video is redone whole).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tinysaver_det.cli.options import (
        add_confidence_options,
        add_operating_point_option,
        add_detector_options,
        add_run_options,
        fraction_argument,
        positive_int_argument,
        threshold_argument,
    )

    parser.add_argument("--source", required=True,
                        help="image, folder, glob, .txt list, video, webcam index or stream URL")
    add_detector_options(parser)
    parser.add_argument("--t", type=threshold_argument, help="exit threshold >= 0 (default 0.25 without --op)")
    add_operating_point_option(parser)
    add_confidence_options(parser)
    parser.add_argument("--conf", type=fraction_argument, default=0.25,
                        help="leave out boxes scoring below it from the output (default 0.25); routing ignores it")
    parser.add_argument("--vid-stride", type=positive_int_argument, default=1,
                        help="take every n-th video frame (rows keep the source's frame numbers: n, 2n, ...)")
    parser.add_argument("--save", action="store_true",
                        help="also draw the results to OUT/annotated: each image as an image, each video as one video")
    add_run_options(parser, None, resume=True, out_help="output folder")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from tinysaver_det.cli.options import check_operating_point

    check_operating_point(parser, args)


def build_cascade(args: argparse.Namespace, device: str | None):
    """The TinySaver named by ``--op`` or by ``--saver/--base/--t`` (defaults: demo pico -> s, 0.25), on ``device``."""
    from tinysaver_det.api import TinySaver
    from tinysaver_det.detection.nms_mode import DEFAULT_NMS

    if args.op:
        return TinySaver.from_operating_point(args.op, device=device, half=args.half)
    return TinySaver(args.saver or "demo:pico", args.base or "demo:s", 0.25 if args.t is None else args.t,
                     confidence=args.confidence, min_score=args.min_score, device=device, half=args.half,
                     imgsz=args.imgsz, nms=args.nms or DEFAULT_NMS)


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.distributed import rank_device, run_job
    from tinysaver_det.lock import RunLock
    from tinysaver_det.predict_run import refuse_unshardable_source, run_predictions

    refuse_unshardable_source(args.source)  # before any model loads
    try:
        with run_job(args.device, RunLock(args.out)) as context:
            cascade = build_cascade(args, rank_device(args.device, context))
            summary = run_predictions(cascade, args.source, args.out, conf=args.conf, batch=args.batch,
                                      vid_stride=args.vid_stride, save=args.save, resume=args.resume,
                                      overwrite=args.overwrite, progress=not args.quiet, context=context)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished rows are in {args.out}; add --resume to continue", file=sys.stderr)
        return 130
    if not context.is_main:  # under torchrun every rank has the summary; one prints it
        return 0
    ms = summary["ms_per_image"]
    if not summary["images"]:
        print(f"no image could be read ({summary['unreadable']} unreadable) -> {args.out}/predictions.jsonl")
        return 0
    print(f"{summary['images']} images ({summary['unreadable']} unreadable): exit ratio {summary['exit_ratio']:.3f}, "
          f"{summary['gflops_per_image']:.3f} GFLOPs/img, saver {ms['saver']:.1f} + base {ms['base']:.1f} ms/img "
          f"-> {args.out}/predictions.jsonl")
    return 0
