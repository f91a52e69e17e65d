"""The sweep at COCO scale: ~5,000 images and ~1M detections per model, against faster-coco-eval.

Data: the 500-image COCO val2017 subset of the shared assets, replicated ``--images / 500`` times
under new image and annotation ids (the k-th copy adds ``k * 10**6`` to image ids, ``k * 10**12``
to annotation ids). Two models'
results jsons are synthesized from it, as YOLO validation at conf 0.001 and max_det 300 writes them
(boxes rounded to 3 decimals, scores to 5). The profile, per image, for model ``m`` in (saver, base):

- true boxes: each non-crowd object is found with probability ``recall`` (saver 0.55, base 0.8),
  its box jittered by N(0, ``jitter``) of its size (saver 0.10, base 0.05) in centre and log-size,
  score Beta(``true_beta``) (saver (2, 2.5), base (4, 2)), category wrong with probability 0.05;
- shifted boxes: 3 per found object, moved by 30-80 % of its size (IoU mostly below 0.5, some above),
  score 0.3 x the true score x U(0, 1) (the low-score duplicates NMS keeps at conf 0.001);
- false boxes: uniform boxes of 1-40 % of the image side with a random category and score
  0.001 + Exponential(0.01), capped at 0.3, filling the image up to ``max_det`` = 300 detections.
  About 300 detections per image, most of them below 0.05, as YOLO's long tail.

Stages, each in its own subprocess (time measured inside it, imports excluded; peak memory is the
subprocess's ``VmHWM``):

- ``fce``: faster-coco-eval ``COCO`` + ``loadRes`` + ``COCOeval_faster`` evaluate/accumulate/summarize
  of the saver json (what a user runs once per threshold);
- ``single``: tinysaver's single evaluation of the saver json: read the annotation file, load and
  check the results json, match, accumulate, summarize;
- ``sweep``: ``detection.studies.thresholds.sweep_cascade`` end to end from both jsons: load, check,
  evaluate both, 101 thresholds plus the paper's five, r_match, the csv/md tables; then the three
  plots, timed apart (their time is not in the sweep's).

Exactness: the sweep's rows at three thresholds against faster-coco-eval on the merged results json,
and (pycocotools being ~10x slower) a sweep of the first ``--pycoco-images`` images against
pycocotools at three thresholds. All 12 stats, the largest |difference| printed.

Run from the repository root, one benchmark at a time on a shared machine:

    nice -n 10 python -m benchmarks.bench_sweep_scale              # ~5,000 images
    python -m benchmarks.bench_sweep_scale --images 500 --pycoco-images 200   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinysaver_det.assets import COCO_ANNOTATIONS, asset_path

PROFILES = {
    "saver": {"recall": 0.55, "jitter": 0.10, "true_beta": (2.0, 2.5), "seed": 1},
    "base": {"recall": 0.80, "jitter": 0.05, "true_beta": (4.0, 2.0), "seed": 2},
}
MAX_DET = 300
SHIFTED_PER_OBJECT = 3
COPY_STRIDE = 10**6  # image ids; annotation ids (COCO's crowd ids reach 9e11) move by 10**12
ANNOTATION_STRIDE = 10**12
STAGES = ("fce", "single", "sweep")


def replicate_annotations(data: dict, n_images: int) -> dict:
    """The subset's images and annotations copied under new ids until there are ``n_images`` images."""
    images = sorted(data["images"], key=lambda image: image["id"])
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    out_images, out_anns = [], []
    for k in range(n_images):
        source = images[k % len(images)]
        offset = (k // len(images)) * COPY_STRIDE
        out_images.append({**source, "id": source["id"] + offset})
        out_anns.extend(
            {**ann, "id": ann["id"] + (k // len(images)) * ANNOTATION_STRIDE, "image_id": ann["image_id"] + offset}
            for ann in by_image.get(source["id"], [])
        )
    return {**data, "images": out_images, "annotations": out_anns}


def synthesize_results(data: dict, profile: dict) -> list[dict]:
    """One model's results list (see the module docstring for the profile)."""
    rng = np.random.default_rng(profile["seed"])
    categories = np.array(sorted(c["id"] for c in data["categories"]))
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    results = []
    for image in data["images"]:
        width, height = image.get("width", 640), image.get("height", 480)
        anns = by_image.get(image["id"], [])
        boxes = np.array([ann["bbox"] for ann in anns], dtype=np.float64).reshape(-1, 4)
        cats = np.array([ann["category_id"] for ann in anns], dtype=np.int64)
        found = rng.random(len(anns)) < profile["recall"]
        boxes, cats = boxes[found], cats[found]
        n = len(boxes)
        centre = boxes[:, :2] + boxes[:, 2:] / 2 + rng.normal(0, profile["jitter"], (n, 2)) * boxes[:, 2:]
        size = np.maximum(boxes[:, 2:] * np.exp(rng.normal(0, profile["jitter"], (n, 2))), 1.0)
        true_boxes = np.column_stack([centre - size / 2, size])
        wrong = rng.random(n) < 0.05
        cats = np.where(wrong, rng.choice(categories, n), cats)
        true_scores = rng.beta(*profile["true_beta"], n)
        # shifted copies: the same object, moved by 30-80 % of its size in a random direction
        shift = rng.uniform(0.3, 0.8, (n * SHIFTED_PER_OBJECT, 1)) * rng.choice([-1, 1], (n * SHIFTED_PER_OBJECT, 2))
        repeated = np.repeat(true_boxes, SHIFTED_PER_OBJECT, axis=0)
        shifted_boxes = np.column_stack([repeated[:, :2] + shift * repeated[:, 2:], repeated[:, 2:]])
        shifted_scores = 0.3 * np.repeat(true_scores, SHIFTED_PER_OBJECT) * rng.random(len(repeated))
        shifted_cats = np.repeat(cats, SHIFTED_PER_OBJECT)
        n_false = max(MAX_DET - n - len(shifted_boxes), 0)
        side = rng.uniform(0.01, 0.4, (n_false, 2)) * [width, height]
        corner = rng.random((n_false, 2)) * np.maximum([width, height] - side, 1)
        false_boxes = np.column_stack([corner, side])
        false_scores = np.minimum(0.001 + rng.exponential(0.01, n_false), 0.3)
        false_cats = rng.choice(categories, n_false)
        all_boxes = np.concatenate([true_boxes, shifted_boxes, false_boxes])[:MAX_DET]
        all_scores = np.concatenate([true_scores, shifted_scores, false_scores])[:MAX_DET]
        all_cats = np.concatenate([cats, shifted_cats, false_cats])[:MAX_DET]
        order = np.argsort(-all_scores, kind="stable")  # YOLO writes each image's boxes by score
        for box, score, cat in zip(all_boxes[order].round(3).tolist(), all_scores[order].round(5).tolist(),
                                   all_cats[order].tolist()):
            results.append({"image_id": image["id"], "category_id": cat, "bbox": box, "score": score})
    return results


def write_inputs(folder: Path, n_images: int) -> dict:
    """The replicated annotation file and both results jsons; returns their paths and sizes."""
    with open(asset_path(COCO_ANNOTATIONS), encoding="utf-8") as handle:
        data = replicate_annotations(json.load(handle), n_images)
    paths = {"ann": folder / "instances.json"}
    paths["ann"].write_text(json.dumps(data))
    counts = {"images": len(data["images"]), "annotations": len(data["annotations"])}
    for name, profile in PROFILES.items():
        results = synthesize_results(data, profile)
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(results))
        counts[name] = len(results)
    return {"paths": {k: str(v) for k, v in paths.items()}, "counts": counts}


def _quiet_fce_eval(ann: str, results) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
        evaluation = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats[:12], dtype=np.float64)


def _quiet_pycocotools_eval(data: dict, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats, dtype=np.float64)


def single_evaluation(ann: str, results: str) -> list[float]:
    """tinysaver's evaluation of one results json: the 12 stats."""
    from tinysaver_det.detection.cache import evaluate_results_json

    return list(evaluate_results_json(ann, results).values())


def run_stage(stage: str, paths: dict, workers: int | None) -> dict:
    """Run one stage in this process; returns its seconds and what it computed."""
    start = time.perf_counter()
    out: dict = {}
    if stage == "fce":
        out["stats"] = _quiet_fce_eval(paths["ann"], paths["saver"]).tolist()
    elif stage == "single":
        out["stats"] = single_evaluation(paths["ann"], paths["saver"])
    elif stage == "sweep":
        from tinysaver_det.core.tables import Table, to_markdown, write_csv
        from tinysaver_det.detection.cache import cache_from_results
        from tinysaver_det.detection.studies.thresholds import SWEEP_COLUMNS, sweep_cascade, sweep_rows_table
        from tinysaver_det.plots import plot_exit_ratio, plot_performance_vs_cost, plot_subset_performance

        cache = cache_from_results(paths["ann"], paths["saver"], paths["base"], 8.7, 257.8)
        result = sweep_cascade(cache, workers=workers or os.cpu_count() or 1)
        table = Table(list(SWEEP_COLUMNS), sweep_rows_table(result), "bench")
        folder = Path(paths["out"])
        write_csv(table, folder / "sweep.csv")
        (folder / "sweep.md").write_text(to_markdown(table) + "\n")
        out["seconds"] = time.perf_counter() - start
        out["rows"] = [[row.threshold, *row.metrics.values()] for row in result.rows]
        out["r_match"] = [result.r_match.r_match, result.r_match.threshold, result.r_match.search]
        plots_start = time.perf_counter()
        statics = {"saver alone": (result.saver_gflops, result.saver["AP"]),
                   "base alone": (result.base_gflops, result.base["AP"])}
        plot_performance_vs_cost({"cascade": result.rows}, statics, folder / "ap_vs_gflops.png")
        plot_exit_ratio(result.rows, folder / "exit_ratio.png")
        plot_subset_performance(result.r_match, folder / "subset_ap.png")
        out["plot_seconds"] = time.perf_counter() - plots_start
        out["peak_mb"] = peak_memory_mb()
        return out
    out["seconds"] = time.perf_counter() - start
    out["peak_mb"] = peak_memory_mb()
    return out


def peak_memory_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the process's own address space;
    ``ru_maxrss`` would also count the parent's memory at the time of the fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_subprocess(stage: str, paths: dict, workers: int | None) -> dict:
    """Run a stage in a fresh interpreter so that its peak memory is its own."""
    command = [sys.executable, "-m", "benchmarks.bench_sweep_scale", "--stage", stage,
               "--paths", json.dumps(paths)]
    if workers is not None:
        command += ["--workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"stage {stage} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def merged_results(results: dict, exits: dict[int, bool]) -> list[dict]:
    """The results list of the cascade at one threshold: each image's entries from the model it exits to."""
    return [dict(e) for e in results["saver"] if exits[e["image_id"]]] + [
        dict(e) for e in results["base"] if not exits[e["image_id"]]
    ]


def image_exits(paths: dict, threshold: float) -> dict[int, bool]:
    """Which images exit at the saver at ``threshold`` (the sweep's own rule: mean score >= 0.05)."""
    from tinysaver_det.core.policy import ExitPolicy, image_confidence
    from tinysaver_det.detection.coco.results_json import load_results_columns

    data = json.loads(Path(paths["ann"]).read_text())
    image_ids = sorted(image["id"] for image in data["images"])
    columns = load_results_columns(paths["saver"], image_ids, [c["id"] for c in data["categories"]])
    detections = columns.by_image(image_ids)
    conf = np.array([image_confidence(detections[i].scores) for i in image_ids])
    return dict(zip(image_ids, ExitPolicy(threshold).exits(conf).tolist()))


def restrict(paths: dict, n_images: int, folder: Path) -> dict:
    """The first ``n_images`` images of the inputs (annotations and both results jsons)."""
    data = json.loads(Path(paths["ann"]).read_text())
    keep = {image["id"] for image in sorted(data["images"], key=lambda i: i["id"])[:n_images]}
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    folder.mkdir(parents=True, exist_ok=True)
    out = {"ann": str(folder / "instances.json"), "out": str(folder)}
    Path(out["ann"]).write_text(json.dumps(data))
    for name in ("saver", "base"):
        out[name] = str(folder / f"{name}.json")
        Path(out[name]).write_text(json.dumps([e for e in json.loads(Path(paths[name]).read_text())
                                               if e["image_id"] in keep]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images to synthesize (default 5000)")
    parser.add_argument("--pycoco-images", type=int, default=500,
                        help="images of the pycocotools comparison (default 500; pycocotools is slow)")
    parser.add_argument("--workers", type=int, default=None, help="the sweep's --workers (default: the machine's cores)")
    parser.add_argument("--folder", help="where to write the synthesized inputs (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the inputs already in --folder (written by an earlier run with the same --images)")
    parser.add_argument("--no-checks", action="store_true",
                        help="time only: skip the comparisons with faster-coco-eval and pycocotools")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(run_stage(args.stage, json.loads(args.paths), args.workers)))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        made_file = folder / "made.json"
        if args.reuse and made_file.is_file():
            made = json.loads(made_file.read_text())
        else:
            made = write_inputs(folder, args.images)
            made_file.write_text(json.dumps(made))
        paths = {**made["paths"], "out": str(folder)}
        counts = made["counts"]
        print(f"data: {counts['images']} images, {counts['annotations']} annotations; detections: "
              f"saver {counts['saver']}, base {counts['base']}; profiles {PROFILES}")
        figures = {}
        labels = {"fce": "faster-coco-eval, one evaluation of the saver json",
                  "single": "tinysaver, one evaluation of the saver json",
                  "sweep": "tinysaver sweep end to end (2 jsons, 106 thresholds, exact r_match, tables)"}
        for stage in STAGES:
            figures[stage] = figure = in_subprocess(stage, paths, args.workers)
            ratio = figure["seconds"] / figures["fce"]["seconds"]
            print(f"{labels[stage]}: {figure['seconds']:.2f} s ({ratio:.2f}x faster-coco-eval), "
                  f"peak {figure['peak_mb']:.0f} MB", flush=True)
        fce = figures["fce"]["seconds"]
        print(f"tinysaver sweep plots (timed apart, same process): {figures['sweep']['plot_seconds']:.2f} s")
        print(f"r_match: {figures['sweep']['r_match']}")

        single_difference = float(np.abs(np.array(figures["single"]["stats"]) - figures["fce"]["stats"]).max())
        if args.no_checks:
            print(f"max |difference| vs faster-coco-eval, single evaluation: {single_difference:.3g}")
            return 0
        rows = np.array(figures["sweep"]["rows"])
        checked = [rows[i] for i in np.linspace(0, len(rows) - 1, 5).round().astype(int)[1:4]]
        fce_difference = 0.0
        results = {name: json.loads(Path(paths[name]).read_text()) for name in ("saver", "base")}
        for row in checked:
            merged = merged_results(results, image_exits(paths, row[0]))
            fce_difference = max(fce_difference, float(np.abs(row[1:] - _quiet_fce_eval(paths["ann"], merged)).max()))
        print(f"max |difference| vs faster-coco-eval: single evaluation {single_difference:.3g}; "
              f"sweep at t = {[float(r[0]) for r in checked]} {fce_difference:.3g}")

        small = restrict(paths, args.pycoco_images, folder / "pycoco")
        small_rows = np.array(run_stage("sweep", small, args.workers)["rows"])
        small_data = json.loads(Path(small["ann"]).read_text())
        picked = [small_rows[i] for i in np.linspace(0, len(small_rows) - 1, 5).round().astype(int)[1:4]]
        pycoco_difference = 0.0
        small_results = {name: json.loads(Path(small[name]).read_text()) for name in ("saver", "base")}
        for row in picked:
            merged = merged_results(small_results, image_exits(small, row[0]))
            pycoco_difference = max(pycoco_difference,
                                    float(np.abs(row[1:] - _quiet_pycocotools_eval(small_data, merged)).max()))
        print(f"max |difference| vs pycocotools (first {args.pycoco_images} images, "
              f"t = {[float(r[0]) for r in picked]}, 12 stats): {pycoco_difference:.3g}")
        sweep_ratio = figures["sweep"]["seconds"] / fce
        single_ratio = figures["single"]["seconds"] / fce
        peak = max(figures["single"]["peak_mb"], figures["sweep"]["peak_mb"])
        print(f"targets: sweep {sweep_ratio:.2f}x (<= 2), single {single_ratio:.2f}x (<= 0.5), "
              f"peak {peak:.0f} MB (<= 1536), exactness {max(fce_difference, pycoco_difference):.3g} (<= 1e-9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
