"""Run a real K-stage cascade (cheapest model first) on a COCO-format dataset and print its COCO numbers.

An image stops at the first stage whose confidence reaches that stage's threshold; the last stage
answers the rest. One threshold per stage but the last. On the demo ladder, on the held-out half::

    python tools/run_multistage.py --weights demo:pico demo:n demo:s --t 0.211 0.066 --part held-out

(``tools/pick_threshold.py --models pico n s`` picks such thresholds on the calibration half and
prints the simulated held-out numbers this real run can be compared with.)
"""

from __future__ import annotations

import argparse
import sys

from tinysaver_det import assets
from tinysaver_det.adapters import create_detector
from tinysaver_det.core.policy import DEFAULT_MIN_SCORE
from tinysaver_det.core.router import confidence_argument
from tinysaver_det.detection.cascade import MultiStageCascade
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.ladder import SPLITS, split_image_ids
from tinysaver_det.detection.run import evaluate_multistage
from tinysaver_det.errors import exit_code_of


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", required=True,
                        help="the stages' weights, cheapest first (paths, official names, or demo:pico/n/s)")
    parser.add_argument("--t", type=float, nargs="+", required=True, help="one threshold per stage but the last")
    parser.add_argument("--confidence", nargs="+", type=confidence_argument, default=["mean"],
                        help="one confidence for every exiting stage, or one per exiting stage (name or router .json)")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE, help="score floor of score confidences")
    parser.add_argument("--images", help="image folder; default: demo val images")
    parser.add_argument("--ann", help="COCO annotation json; default: demo val annotations")
    parser.add_argument("--part", choices=("all", "calibration", "held-out"), default="all",
                        help="run on all images (default) or one half of --split")
    parser.add_argument("--split", choices=SPLITS, default="parity", help="split behind --part (default parity)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --split permutation")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--imgsz", type=int, help="inference size for every model; default: each model's own")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, 0, cuda:0 ...")
    parser.add_argument("--out", default="runs/multistage_run", help="run directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    dataset = CocoDataset(args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS),
                          args.images or assets.asset_path(assets.DEMO_IMAGES))
    if args.part != "all":
        calibration, held_out = split_image_ids(dataset.image_ids, args.split, args.seed)
        dataset = dataset.subset(calibration if args.part == "calibration" else held_out)
    stages = [
        create_detector(assets.demo_weights(w) if w.startswith("demo:") else w, dataset.category_ids_by_name,
                        imgsz=args.imgsz, device=args.device)
        for w in args.weights
    ]
    confidence = args.confidence[0] if len(args.confidence) == 1 else args.confidence
    try:
        cascade = MultiStageCascade(stages, args.t, args.min_score, confidence)
    except ValueError as error:
        parser.error(str(error))
    summary = evaluate_multistage(cascade, dataset, args.out, args.batch, progress=not args.quiet)
    print(summary.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
