"""``predict-coco``: cache one detector's per-image predictions on a COCO-format dataset."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import (
    add_dataset_options,
    add_nms_option,
    add_run_options,
    dataset_paths,
    interrupted,
    positive_int_argument,
)

DESCRIPTION = """\
Cache one detector's per-image predictions on a COCO-format dataset (for sweeps, routers, the picker).

Writes one json-lines file in the run-directory format (``saver_predictions.jsonl`` rows: xyxy
detections, per-image GFLOPs and model seconds at the batch size used). With no dataset flag it
runs on the demo val split. The demo ladder's three records:

    python -m tinysaver_det predict-coco --weights demo:pico --features --out runs/demo/pico_predictions.jsonl
    python -m tinysaver_det predict-coco --weights demo:n --out runs/demo/n_predictions.jsonl
    python -m tinysaver_det predict-coco --weights demo:s --out runs/demo/s_predictions.jsonl

What produced the file is written beside it first (runs/demo/s_predictions.run.json: the model's
settings and sha256, the annotations' sha256, the batch size). An existing file is refused; a killed
run continues with the same command plus --resume (other settings refused), --overwrite replaces it.

Under torchrun the images are split across the processes in whole batches, as for eval
(docs/distributed.md): each rank writes its shard under runs/demo/shards/rank-<r>-of-<N>/ and rank 0
merges them into the one file; a sharded run resumes with the same number of processes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="weights (.pt/.yaml, an official name) or demo:pico / demo:n / demo:s")
    add_dataset_options(parser)
    parser.add_argument("--imgsz", type=positive_int_argument, help="inference size; default: the model's own")
    add_nms_option(parser)
    parser.add_argument("--features", action="store_true",
                        help="also cache the saver's own features from the same forward pass (pooled neck maps, "
                             "candidate statistics; Ultralytics only), the input of a `features` post-evaluator")
    add_run_options(parser, out=None, resume=True, out_help="the predictions file to write (*.jsonl)")


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.adapters import create_detector
    from tinysaver_det.detection.dataset import CocoDataset
    from tinysaver_det.detection.runner import predict_dataset
    from tinysaver_det.distributed import rank_device, run_job
    from tinysaver_det.io import read_jsonl
    from tinysaver_det.lock import RunLock

    try:
        with run_job(args.device, RunLock.for_file(args.out)) as context:
            dataset = CocoDataset(*dataset_paths(args), limit=args.limit)
            detector = create_detector(args.weights, dataset.category_ids_by_name, imgsz=args.imgsz,
                                       device=rank_device(args.device, context), half=args.half,
                                       features=args.features or None, nms=args.nms)
            path = predict_dataset(detector, dataset, args.out, batch_size=args.batch, progress=not args.quiet,
                                   resume=args.resume, overwrite=args.overwrite, context=context)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (handled alike by the command line)
        return interrupted(args.out)
    if not context.is_main:  # under torchrun rank 0 reports the merged file
        return 0
    print(f"wrote {len(dataset)} images' predictions of {detector.name} to {path}")
    skipped = sum(1 for row in read_jsonl(path) if row.get("status", "ok") != "ok")
    if skipped:
        print(f"note: {skipped} images could not be read: their rows have no detection, and their status and error")
    return 0
