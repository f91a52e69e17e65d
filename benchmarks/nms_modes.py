"""The demo ladder in both NMS modes side by side: AP alone, the pico -> s / n -> s cascade at t = 0.25,
r_match and the sweep front (its AUC and the best AP within GFLOPs budgets), from predictions cached with ``predict-coco``.

    for mode in validator predictor; do for m in pico n s; do
        python -m tinysaver_det predict-coco --weights demo:$m --nms $mode --out runs/nms/$mode/${m}_predictions.jsonl
    done; done
    python benchmarks/nms_modes.py --root runs/nms

Besides each mode routed on its own answer, it scores the validator's answers routed on the predictor's
(single-label) confidence: the routing a deployment would have if the router read Ultralytics' usual
boxes while the evaluation scored the validator's (see docs/evaluation.md, "NMS modes").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinysaver_det import assets
from tinysaver_det.core.cascade_model import default_thresholds, sweep
from tinysaver_det.core.selection import r_match
from tinysaver_det.detection.cache import load_cache
from tinysaver_det.detection.router_files import resolve_router

BUDGETS = (1.0, 2.0, 3.0, 4.0)
PAIRS = (("pico", "s"), ("n", "s"))


def pair_row(label: str, metric, confidences: np.ndarray, costs) -> list:
    """AP, exit ratio and GFLOPs at t = 0.25, r_match and the best AP within each budget of one cascade."""
    rows = sweep(confidences, default_thresholds(), metric, *costs)
    at_025 = min(rows, key=lambda row: abs(row.threshold - 0.25))
    matched = r_match(confidences, metric)
    def best(budget: float) -> float:
        return max((row.metrics["AP"] for row in rows if row.cost <= budget), default=float("nan"))

    # front AUC: the mean best AP over 50 budgets from the cheapest point to the base's cost
    grid = np.linspace(min(row.cost for row in rows), float(np.mean(costs[1])), 50)
    return [label, f"{at_025.metrics['AP']:.4f}", f"{at_025.exit_ratio:.3f}", f"{at_025.cost:.3f}",
            f"{matched.r_match:.4f} (t = {matched.threshold})", f"{np.mean([best(b) for b in grid]):.4f}",
            *(f"{best(b):.4f}" for b in BUDGETS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder with validator/ and predictor/ *_predictions.jsonl")
    parser.add_argument("--ann", default=None, help="annotation json; default: the demo's")
    args = parser.parse_args(argv)
    annotations = args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS)
    router = resolve_router("mean", 0.05)
    caches = {mode: load_cache(annotations, {m: Path(args.root) / mode / f"{m}_predictions.jsonl" for m in ("pico", "n", "s")})
              for mode in ("validator", "predictor")}
    print("| mode | model | AP | GFLOPs/img | detections |")
    print("|---|---|---|---|---|")
    for mode, cache in caches.items():
        for name in cache.names:
            boxes = sum(len(d) for d in cache.detections(name))
            print(f"| {mode} | {name} | {cache.model_metrics(name)['AP']:.4f} | {cache.cost(name, 'GFLOPs').mean():.3f} | {boxes} |")
    header = ["cascade", "AP at t = 0.25", "exit ratio", "GFLOPs/img", "r_match", "front AUC"] + [f"best AP <= {b:g} GFLOPs" for b in BUDGETS]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for saver, base in PAIRS:
        for mode, cache in caches.items():
            metric = cache.pair_metric(saver, base)
            costs = (cache.cost(saver, "GFLOPs"), cache.cost(base, "GFLOPs"))
            print("| " + " | ".join(pair_row(f"{saver} -> {base}, {mode}", metric, cache.confidences(saver, router), costs)) + " |")
        validator, predictor = caches["validator"], caches["predictor"]
        costs = (validator.cost(saver, "GFLOPs"), validator.cost(base, "GFLOPs"))
        label = f"{saver} -> {base}, validator answers, predictor's confidence"
        print("| " + " | ".join(pair_row(label, validator.pair_metric(saver, base), predictor.confidences(saver, router),
                                         costs)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
