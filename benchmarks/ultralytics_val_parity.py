"""A YOLO model's AP as ``tinysaver`` scores it against the AP of the predictions json that Ultralytics'
own ``val(save_json=True)`` writes, scored by pycocotools (the demo ladder by default).

    python benchmarks/ultralytics_val_parity.py --weights demo:pico demo:n demo:s --out /tmp/parity [--limit 64]

For each model it prints three APs: tinysaver's (validator NMS, the evaluation default), pycocotools on
the validator's json with its default rectangular batching, and with ``rect=False``. The validator's
``rect`` letterboxes each batch to its own shape plus half a stride of padding (256x256 demo images run
at 288x288), so a few boxes move; with ``rect=False`` it runs the very input tensor the predictor runs.
Its json rounds boxes to 3 decimals and scores to 5; ``rounded`` is tinysaver's detections rounded the
same way, which isolates that last difference.

The validator's json names images by file stem (``val_00000``) and classes by index + 1; both are mapped
to the annotation file's ids by file name and class name. Nothing is downloaded (``YOLO_OFFLINE=1``,
``plots=False``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from tinysaver_det import assets  # noqa: E402
from tinysaver_det.adapters import resolve_weights  # noqa: E402
from tinysaver_det.adapters.ultralytics import UltralyticsDetector  # noqa: E402
from tinysaver_det.detection.coco import accumulate, evaluate_images, load_ground_truth, summarize  # noqa: E402
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco  # noqa: E402
from tinysaver_det.detection.dataset import CocoDataset, load_annotation_json, restrict_annotations  # noqa: E402
from tinysaver_det.detection.images import load_image  # noqa: E402
from tinysaver_det.detection.types import Detections  # noqa: E402

SETTINGS = dict(imgsz=256, conf=0.001, iou=0.7, max_det=300)


def yolo_val_folder(dataset: CocoDataset, labels_dir: Path, names: dict, out: Path) -> Path:
    """A YOLO dataset of ``dataset``'s images (links to the files and their YOLO labels) and its data.yaml."""
    images, labels = out / "images", out / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(exist_ok=True)
    for info in dataset.images:
        for source, target in ((dataset.path(info), images / info.file_name),
                               (labels_dir / f"{Path(info.file_name).stem}.txt", labels / f"{Path(info.file_name).stem}.txt")):
            if not target.exists():
                target.symlink_to(Path(source).resolve())
    yaml = out / "data.yaml"
    lines = [f"path: {out}", "train: images", "val: images", "names:"] + [f"  {i}: {n}" for i, n in sorted(names.items())]
    yaml.write_text("\n".join(lines) + "\n")
    return yaml


def validator_results(weights, yaml: Path, out: Path, rect: bool, annotations: dict, names: dict) -> list[dict]:
    """Ultralytics' ``val(save_json=True)`` predictions json, with the annotation file's image and category ids."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=str(yaml), **SETTINGS, save_json=True, plots=False, rect=rect, batch=32,
                                     device="cpu", workers=0, project=str(out), name=f"val_rect{int(rect)}",
                                     exist_ok=True, verbose=False)
    image_ids = {Path(image["file_name"]).stem: image["id"] for image in annotations["images"]}
    category_ids = {category["name"]: category["id"] for category in annotations["categories"]}
    rows = json.loads((Path(metrics.save_dir) / "predictions.json").read_text())
    return [{"image_id": image_ids[str(row["image_id"])], "category_id": category_ids[names[row["category_id"] - 1]],
             "bbox": row["bbox"], "score": row["score"]} for row in rows]


def tinysaver_detections(weights, dataset: CocoDataset, nms: str = "validator", batch: int = 32) -> list[Detections]:
    """The adapter's detections (the ones ``eval`` and ``predict-coco`` score) on every image of ``dataset``."""
    detector = UltralyticsDetector(weights, dataset.category_ids_by_name, imgsz=SETTINGS["imgsz"], nms=nms)
    detections = []
    for start in range(0, len(dataset.images), batch):
        infos = dataset.images[start:start + batch]
        detections += detector.predict([load_image(dataset.path(i)) for i in infos], [i.image_id for i in infos]).detections
    return detections


def rounded_as_validator(detections: list[Detections]) -> list[dict]:
    """COCO results rounded as the validator's json rounds them (bbox xywh to 3 decimals, score to 5)."""
    return [{**row, "bbox": [round(v, 3) for v in row["bbox"]], "score": round(row["score"], 5)}
            for d in detections for row in d.to_coco()]


def parity(weights, out: Path, limit: int | None = None) -> dict[str, float]:
    """The APs compared (see the module docstring) for one model on the demo val split's first ``limit`` images."""
    dataset = CocoDataset(assets.asset_path(assets.DEMO_ANNOTATIONS), assets.asset_path(assets.DEMO_IMAGES), limit=limit)
    annotations = restrict_annotations(load_annotation_json(dataset.annotation_file), [i.image_id for i in dataset.images])
    weights = resolve_weights(weights)
    names = UltralyticsDetector(weights).class_names
    yaml = yolo_val_folder(dataset, Path(assets.asset_path(assets.DEMO_IMAGES)).parent / "labels", names, out / "data")
    ground_truth = out / "instances.json"
    ground_truth.write_text(json.dumps(annotations))
    coco = load_coco(ground_truth)
    detections = tinysaver_detections(weights, dataset)
    return {
        "tinysaver": summarize(accumulate(evaluate_images(load_ground_truth(annotations), detections)))["AP"],
        "rounded": coco_bbox_metrics(coco, rounded_as_validator(detections))["AP"],
        "validator_rect": coco_bbox_metrics(coco, validator_results(weights, yaml, out, True, annotations, names))["AP"],
        "validator_square": coco_bbox_metrics(coco, validator_results(weights, yaml, out, False, annotations, names))["AP"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", default=["demo:pico", "demo:n", "demo:s"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N images by id (default: all 500)")
    args = parser.parse_args(argv)
    print("| model | tinysaver AP | validator json, rect (default) | validator json, rect=False | tinysaver rounded as the json |")
    print("|---|---|---|---|---|")
    for weights in args.weights:
        ap = parity(weights, args.out / Path(str(weights)).name.replace(":", "_"), args.limit)
        print(f"| {weights} | {ap['tinysaver']:.6f} | {ap['validator_rect']:.6f} | {ap['validator_square']:.6f} | "
              f"{ap['rounded']:.6f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
