"""``multistage-run``: run a real K-stage cascade (cheapest model first) on a COCO-format dataset."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import (
    add_confidence_options,
    add_dataset_options,
    add_nms_option,
    add_run_options,
    dataset_paths,
    interrupted,
    positive_int_argument,
    threshold_argument,
)
from tinysaver_det.detection.cache import SPLITS

DESCRIPTION = """\
Run a real K-stage cascade (cheapest model first) on a COCO-format dataset and print its COCO numbers.

An image stops at the first stage whose confidence reaches that stage's threshold; the last stage
answers the rest. One threshold per stage but the last. On the demo ladder, on the held-out half::

    python -m tinysaver_det multistage-run --weights demo:pico demo:n demo:s --t 0.211 0.066 --part held-out

(``pick --models pico n s`` picks such thresholds on the calibration half and
prints the simulated held-out numbers this real run can be compared with.)

--out gets run.json (every stage's settings and sha256, the thresholds, the dataset), records.jsonl,
detections.jsonl, results.json, errors.json, summary.json and summary.md. A directory holding a run
is refused; a killed run continues with the same command plus --resume (other settings refused),
--overwrite replaces it.

Under torchrun the images are split across the processes in whole batches, as for eval
(docs/distributed.md); a sharded run resumes with the same number of processes:

    torchrun --standalone --nproc_per_node 2 -m tinysaver_det multistage-run --weights demo:pico demo:n demo:s \
        --t 0.211 0.066 --out runs/multi_2p
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", required=True,
                        help="the stages' weights, cheapest first (paths, official names, or demo:pico/n/s)")
    parser.add_argument("--t", type=threshold_argument, nargs="+", required=True, help="one threshold per stage but the last")
    add_confidence_options(parser, per_stage=True)
    add_dataset_options(parser)
    parser.add_argument("--part", choices=("all", "calibration", "held-out"), default="all",
                        help="run on all images (default) or one half of --split (of the --limit images)")
    parser.add_argument("--split", choices=SPLITS, default="parity", help="split behind --part (default parity)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --split permutation")
    parser.add_argument("--imgsz", type=positive_int_argument, help="inference size for every model; default: each model's own")
    add_nms_option(parser)
    add_run_options(parser, out="runs/multistage_run", resume=True)


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.adapters import check_imgsz
    from tinysaver_det.build import build_stages, exit_policies
    from tinysaver_det.detection.cache import split_image_ids
    from tinysaver_det.detection.cascade import MultiStageCascade
    from tinysaver_det.detection.dataset import CocoDataset
    from tinysaver_det.detection.runner import evaluate_multistage
    from tinysaver_det.distributed import rank_device, run_job
    from tinysaver_det.errors import TinySaverInputError
    from tinysaver_det.lock import RunLock

    # The exit rules need only the options: check them before the dataset is read and the K models are
    # built, so that a wrong --confidence count fails at once instead of after every model has loaded.
    confidences = args.confidence * len(args.t) if len(args.confidence) == 1 else args.confidence
    if len(confidences) != len(args.t):
        raise TinySaverInputError(f"--confidence: {len(confidences)} given for {len(args.t)} thresholds (one per "
                                  "stage but the last, or one for all)")
    if len(args.t) != len(args.weights) - 1:
        raise TinySaverInputError(f"--t: {len(args.t)} given for {len(args.weights)} --weights; give one per stage "
                                  "but the last (a cascade needs at least 2 models)")
    rules = exit_policies(len(args.t), t=list(args.t), confidence=confidences, min_score=args.min_score)
    for weights in args.weights:  # --imgsz is for every model here: an mmdet one cannot take it
        check_imgsz(weights, args.imgsz)
    try:
        with run_job(args.device, RunLock(args.out)) as context:
            dataset = CocoDataset(*dataset_paths(args), limit=args.limit)
            if args.part != "all":
                calibration, held_out = split_image_ids(dataset.image_ids, args.split, args.seed)
                dataset = dataset.subset(calibration if args.part == "calibration" else held_out)
            stages, rules = build_stages(args.weights, rules, category_ids_by_name=dataset.category_ids_by_name,
                                         device=rank_device(args.device, context), half=args.half, imgsz=args.imgsz,
                                         nms=args.nms)
            cascade = MultiStageCascade(stages, rules)
            summary = evaluate_multistage(cascade, dataset, args.out, args.batch, progress=not args.quiet,
                                          resume=args.resume, overwrite=args.overwrite, context=context)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (handled alike by the command line)
        return interrupted(args.out)
    if context.is_main:  # under torchrun every rank has the summary; one prints it
        print(summary.to_markdown())
    return 0
