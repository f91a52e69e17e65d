"""A 101-threshold cascade sweep on the real COCO val2017 subset: cached evaluation vs pycocotools per threshold.

Data: the 500-image COCO val2017 subset of the shared assets (3,842 annotations, 43 crowd, 6 images
without any). Two detectors are simulated from its ground truth by
``tinysaver_det.detection.synthetic.simulate_detections``. The values come from ``SAVER_PROFILE``
(seed 1) and ``BASE_PROFILE`` (seed 2), and the script prints both profiles.

- For each non-crowd object: reported with probability ``recall`` (saver 0.65, base 0.9). Its box
  centre moves by N(0, ``jitter``) times the object's width and height, and its width and height
  are multiplied by exp(N(0, ``jitter``)) (saver 0.12, base 0.04; sizes at least 1 px). The score
  is U(``true_scores``) (saver 0.15-0.85, base 0.4-1.0). With probability ``wrong_category``
  (saver 0.08, base 0.02) it carries a random other listed category. With probability
  ``duplicates`` (saver 0.05, base 0.03) it is reported twice, with the same box and score.
- Each crowd region gets 2 boxes inside it, with its category.
- False positives: Poisson(``false_positives``) boxes per image (saver 3, base 1), also on images
  without objects, each 2-50 % of the image size, placed uniformly, with a random listed category
  and a score U(``false_scores``) (saver 0-0.6, base 0-0.5). 5 % of them carry category 12, which
  the ground truth does not list (the evaluation drops them). Category 89 is listed but has no gt.
- The (image, category) with the most objects gets ``flood`` more boxes (saver 120, base 150),
  jittered copies of its objects scored U(0, 1): more than COCO's 100 detections.
- Scores are rounded to 2 decimals (ties within and across images), and each image's list is shuffled.

The per-image confidence is ``image_confidence`` of the saver's scores (mean of scores >= 0.05).
Thresholds are 0.00, 0.01, ..., 1.00, and an image exits (takes the saver's boxes) when its
confidence is >= t (``ExitPolicy``).

Naive: for each threshold, merge the results list (per image, the chosen model's entries), then run
``loadRes`` and COCOeval ``evaluate``, ``accumulate`` and ``summarize``, with the prints suppressed.
Ours: ``evaluate_images`` for both models, then ``CocoCascadeMetric.routed_many`` over all masks.
Each side loads the ground truth once, outside its timing (``COCO(path)`` / ``load_ground_truth``).
The script prints both times, their ratio, and the largest |difference| over all thresholds and all
12 stats. ``--naive-subset K`` times the naive side on K evenly spaced thresholds only. It then
extrapolates to all thresholds, says so in the output, and compares on those K.

Run from the repository root: ``python -m benchmarks.bench_sweep`` (about 5 minutes, mostly pycocotools).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinysaver_det.assets import COCO_ANNOTATIONS, asset_path
from tinysaver_det.core.policy import ExitPolicy, image_confidence
from tinysaver_det.detection.coco import STAT_KEYS, CocoCascadeMetric, evaluate_images, load_ground_truth
from tinysaver_det.detection.synthetic import BASE_PROFILE, SAVER_PROFILE, simulate_detections


def naive_stats(coco: COCO, per_image: dict, exit_mask: np.ndarray, image_ids: list[int]) -> np.ndarray:
    """pycocotools on the merged results of one threshold (the work a user repeats per threshold)."""
    results = [
        dict(entry)  # loadRes writes into the entries
        for image_id, exits in zip(image_ids, exit_mask)
        for entry in per_image["saver" if exits else "base"][image_id]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-subset", type=int, default=None,
                        help="time pycocotools on this many evenly spaced thresholds and extrapolate")
    args = parser.parse_args(argv)

    path = asset_path(COCO_ANNOTATIONS)
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    detections = {
        "saver": simulate_detections(data, SAVER_PROFILE, seed=1),
        "base": simulate_detections(data, BASE_PROFILE, seed=2),
    }
    ground_truth = load_ground_truth(path)
    image_ids = ground_truth.image_ids.tolist()
    confidence = np.array([image_confidence(detections["saver"][i].scores) for i in image_ids])
    thresholds = np.linspace(0.0, 1.0, 101)
    exit_masks = np.stack([ExitPolicy(t).exits(confidence) for t in thresholds])
    print(f"saver profile: {SAVER_PROFILE}")
    print(f"base profile:  {BASE_PROFILE}")
    print(
        f"data: {len(image_ids)} images, {len(data['annotations'])} annotations; detections: "
        + ", ".join(f"{name} {sum(len(d) for d in dets.values())}" for name, dets in detections.items())
        + f"; exit rate from {exit_masks[0].mean():.3f} (t=0) to {exit_masks[-1].mean():.3f} (t=1)"
    )

    start = time.perf_counter()
    metric = CocoCascadeMetric(evaluate_images(ground_truth, detections["saver"]),
                               evaluate_images(ground_truth, detections["base"]))
    evaluated = time.perf_counter()
    ours = np.array([[stats[key] for key in STAT_KEYS] for stats in metric.routed_many(exit_masks)])
    ours_seconds, sweep_seconds = time.perf_counter() - start, time.perf_counter() - evaluated

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    per_image = {name: {i: d.to_coco() for i, d in dets.items()} for name, dets in detections.items()}
    timed = np.arange(len(thresholds))
    if args.naive_subset:
        timed = np.unique(np.linspace(0, len(thresholds) - 1, args.naive_subset).round().astype(int))
    start = time.perf_counter()
    naive = np.array([naive_stats(coco, per_image, exit_masks[t], image_ids) for t in timed])
    naive_seconds = time.perf_counter() - start
    if len(timed) < len(thresholds):
        print(f"NOTE: pycocotools ran on {len(timed)} of {len(thresholds)} thresholds; its total is extrapolated")
        naive_seconds *= len(thresholds) / len(timed)

    difference = float(np.abs(ours[timed] - naive).max())
    ratio = naive_seconds / ours_seconds
    print(f"naive, pycocotools evaluate+accumulate+summarize per threshold, {len(thresholds)} thresholds: "
          f"{naive_seconds:.1f} s ({naive_seconds / len(thresholds):.3f} s per threshold)")
    print(f"ours, evaluate_images x2 + routed_many, {len(thresholds)} thresholds: {ours_seconds:.3f} s "
          f"(per-image evaluation {ours_seconds - sweep_seconds:.3f} s, sweep {sweep_seconds:.3f} s)")
    print(f"speed ratio: {ratio:.0f}x (required >= 100)")
    print(f"max |difference| over {len(timed)} thresholds x {len(STAT_KEYS)} stats: {difference:.3g} "
          "(required <= 1e-9)")
    return 0 if ratio >= 100 and difference <= 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
