"""Sweep the exit threshold of a detection cascade from cached predictions, exactly and fast.

From a run directory of ``tools/eval_coco.py --full``:

    python tools/sweep.py --records runs/eval_coco --out runs/sweep

From two standard COCO results jsons (the saver's confidence comes from its own json, 0.05 rule):

    python tools/sweep.py --ann instances_val2017.json --saver-json S.json --base-json B.json \
        --saver-gflops 8.7 --base-gflops 257.8 --out runs/sweep

Writes sweep.csv (t, exit_ratio, AP, AP50, AP75, APs, APm, APl, gflops), sweep.md and three PNGs
(AP vs GFLOPs, exit ratio vs t, subset AP of saver and base vs exit ratio with r_match), and
prints r_match and dC_tr.
"""

from __future__ import annotations

import argparse
import os
import sys

from tinysaver_det.core.policy import CONFIDENCE_FUNCTIONS, DEFAULT_MIN_SCORE
from tinysaver_det.core.router import confidence_argument
from tinysaver_det.core.tables import Table, to_markdown, write_csv
from tinysaver_det.detection.sweep import (
    SWEEP_COLUMNS,
    inputs_from_results,
    inputs_from_run,
    sweep_cascade,
    sweep_rows_table,
)
from tinysaver_det.flops import FLOPS_CONVENTION
from tinysaver_det.io import atomic_write_text
from tinysaver_det.plots import plot_exit_ratio, plot_performance_vs_cost, plot_subset_performance
from tinysaver_det.errors import exit_code_of


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", help="run directory written by tools/eval_coco.py --full")
    parser.add_argument("--ann", help="COCO annotation json (with --records, default: the run's own)")
    parser.add_argument("--saver-json", help="saver's COCO results json")
    parser.add_argument("--base-json", help="base's COCO results json")
    parser.add_argument("--saver-gflops", type=float, help="saver GFLOPs per image (with --saver-json)")
    parser.add_argument("--base-gflops", type=float, help="base GFLOPs per image (with --base-json)")
    parser.add_argument("--thresholds", type=float, nargs="+",
                        help="thresholds (default 0..1 step 0.01 plus 0.25, 0.26, 0.34, 0.37, 0.69)")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
    parser.add_argument("--confidence", type=confidence_argument, default="mean",
                        help=f"one of {', '.join(sorted(CONFIDENCE_FUNCTIONS))} (default mean) or a router file (.json)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes scoring thresholds and r_match's exit sets (default: the machine's cores; "
                             "results do not depend on it)")
    parser.add_argument("--out", default="runs/sweep")
    args = parser.parse_args(argv)
    json_inputs = (args.saver_json, args.base_json, args.saver_gflops, args.base_gflops)
    if bool(args.records) == any(value is not None for value in json_inputs):
        parser.error("give either --records or --saver-json/--base-json/--saver-gflops/--base-gflops")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if not args.records and (any(value is None for value in json_inputs) or not args.ann):
        parser.error("--ann, --saver-json, --base-json, --saver-gflops and --base-gflops go together")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.records:
        inputs = inputs_from_run(args.records, args.ann)
    else:
        inputs = inputs_from_results(args.ann, args.saver_json, args.base_json, args.saver_gflops, args.base_gflops)
    result = sweep_cascade(inputs, args.thresholds, args.min_score, args.confidence, workers=args.workers)
    note = f"{len(inputs.image_ids)} images; GFLOPs per image, {FLOPS_CONVENTION}."
    table = Table(list(SWEEP_COLUMNS), sweep_rows_table(result), note)
    write_csv(table, f"{args.out}/sweep.csv")
    markdown = to_markdown(table)
    atomic_write_text(f"{args.out}/sweep.md", markdown + "\n")
    statics = {"saver alone": (result.saver_gflops, result.saver["AP"]), "base alone": (result.base_gflops, result.base["AP"])}
    plot_performance_vs_cost({"cascade": result.rows}, statics, f"{args.out}/ap_vs_gflops.png", note=note)
    plot_exit_ratio(result.rows, f"{args.out}/exit_ratio.png")
    plot_subset_performance(result.r_match, f"{args.out}/subset_ap.png")
    print(markdown)
    print(f"saver alone: AP {result.saver['AP']:.4f} at {result.saver_gflops:.3f} GFLOPs/img; "
          f"base alone: AP {result.base['AP']:.4f} at {result.base_gflops:.3f} GFLOPs/img")
    print(f"r_match = {result.r_match.r_match:.4f} (t = {result.r_match.threshold}), searched "
          f"{result.r_match.search}; dC_tr = C_S/C_B - r_match = {result.delta_cost_tr:.4f}")
    print(f"wrote {args.out}/sweep.csv, sweep.md, ap_vs_gflops.png, exit_ratio.png, subset_ap.png")
    return 0


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
