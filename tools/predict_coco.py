"""Cache one detector's per-image predictions on a COCO-format dataset (for sweeps, routers, the picker).

Writes one json-lines file in the run-directory format (``saver_predictions.jsonl`` rows: xyxy
detections, per-image GFLOPs and model seconds at the batch size used). With no dataset flag it
runs on the demo val split. The demo ladder's three records:

    python tools/predict_coco.py --weights demo:pico --out runs/demo/pico_predictions.jsonl
    python tools/predict_coco.py --weights demo:n --out runs/demo/n_predictions.jsonl
    python tools/predict_coco.py --weights demo:s --out runs/demo/s_predictions.jsonl
"""

from __future__ import annotations

import argparse
import sys

from tinysaver_det import assets
from tinysaver_det.adapters import create_detector
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.run import predict_dataset
from tinysaver_det.errors import exit_code_of


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True,
                        help="weights (.pt/.yaml, an official name) or demo:pico / demo:n / demo:s")
    parser.add_argument("--out", required=True, help="the predictions file to write (*.jsonl)")
    parser.add_argument("--images", help="image folder; default: demo val images")
    parser.add_argument("--ann", help="COCO annotation json; default: demo val annotations")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--imgsz", type=int, help="inference size; default: the model's own")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, 0, cuda:0 ...")
    parser.add_argument("--limit", type=int, help="only the first N images (by id)")
    parser.add_argument("--features", action="store_true",
                        help="also cache the saver's own features (pooled neck maps, candidate statistics; "
                             "Ultralytics only) for a feature post-evaluator")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    dataset = CocoDataset(
        args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS),
        args.images or assets.asset_path(assets.DEMO_IMAGES),
        limit=args.limit,
    )
    weights = assets.demo_weights(args.weights) if args.weights.startswith("demo:") else args.weights
    detector = create_detector(weights, dataset.category_ids_by_name, imgsz=args.imgsz, device=args.device,
                               features=args.features or None)
    path = predict_dataset(detector, dataset, args.out, batch_size=args.batch, progress=not args.quiet)
    print(f"wrote {len(dataset)} images' predictions of {detector.name} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
