"""``sweep``: sweep the exit threshold of a detection cascade from cached predictions, exactly and fast."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import add_confidence_options, add_workers_option, positive_number_argument, threshold_argument

DESCRIPTION = """\
Sweep the exit threshold of a detection cascade from cached predictions, exactly and fast.

From a run directory of `eval --full`:

    python -m tinysaver_det sweep --records runs/eval_coco --out runs/sweep

From two standard COCO results jsons (the saver's confidence comes from its own json, 0.05 rule):

    python -m tinysaver_det sweep --ann instances_val2017.json --saver-json S.json --base-json B.json \\
        --saver-gflops 8.7 --base-gflops 257.8 --out runs/sweep

Writes sweep.csv (t, exit_ratio, AP, AP50, AP75, APs, APm, APl, gflops), sweep.md and three PNGs
(AP vs GFLOPs, exit ratio vs t, subset AP of saver and base vs exit ratio with r_match), and
prints r_match and dC_tr. Runs no model: imports neither torch nor a detection framework.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", help="run directory written by eval --full")
    parser.add_argument("--ann", help="COCO annotation json (with --records, default: the run's own)")
    parser.add_argument("--saver-json", help="saver's COCO results json")
    parser.add_argument("--base-json", help="base's COCO results json")
    parser.add_argument("--saver-gflops", type=positive_number_argument, help="saver GFLOPs per image (with --saver-json)")
    parser.add_argument("--base-gflops", type=positive_number_argument, help="base GFLOPs per image (with --base-json)")
    parser.add_argument("--thresholds", type=threshold_argument, nargs="+",
                        help="thresholds (default 0..1 step 0.01 plus 0.25, 0.26, 0.34, 0.37, 0.69)")
    add_confidence_options(parser)
    parser.add_argument("--allow-partial", action="store_true",
                        help="with --records: accept a run that did not finish (every output then says it is partial)")
    add_workers_option(parser)
    parser.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")


#: The thresholds whose rows ``sweep`` prints (nearest on the grid), besides r_match's; the file has every row.
SCREEN_THRESHOLDS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    json_inputs = (args.saver_json, args.base_json, args.saver_gflops, args.base_gflops)
    if bool(args.records) == any(value is not None for value in json_inputs):
        parser.error("give either --records or --saver-json/--base-json/--saver-gflops/--base-gflops")
    if not args.records and (any(value is None for value in json_inputs) or not args.ann):
        parser.error("--ann, --saver-json, --base-json, --saver-gflops and --base-gflops go together")


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.core.cost import FLOPS_CONVENTION
    from tinysaver_det.core.policy import ExitPolicy
    from tinysaver_det.core.tables import Table, select_rows, to_markdown, write_csv
    from tinysaver_det.detection.cache import cache_from_results, cache_from_run
    from tinysaver_det.detection.studies.thresholds import SWEEP_COLUMNS, sweep_cascade, sweep_rows_table
    from tinysaver_det.io import atomic_write_text
    from tinysaver_det.plots import plot_exit_ratio, plot_performance_vs_cost, plot_subset_performance

    if args.records:
        cache = cache_from_run(args.records, args.ann, allow_partial=args.allow_partial)
    else:
        cache = cache_from_results(args.ann, args.saver_json, args.base_json, args.saver_gflops, args.base_gflops)
    rule = ExitPolicy(confidence=args.confidence, min_score=args.min_score)
    result = sweep_cascade(cache, args.thresholds, rule, workers=args.workers)
    note = f"{cache.n_images} images; GFLOPs per image, {FLOPS_CONVENTION}."
    if cache.notes:
        note = f"{note} NOTE: {'; '.join(cache.notes)}."
    table = Table(list(SWEEP_COLUMNS), sweep_rows_table(result), note)
    write_csv(table, f"{args.out}/sweep.csv")
    markdown = to_markdown(table)
    atomic_write_text(f"{args.out}/sweep.md", markdown + "\n")
    statics = {"saver alone": (result.saver_gflops, result.saver["AP"]), "base alone": (result.base_gflops, result.base["AP"])}
    plot_performance_vs_cost({"cascade": result.rows}, statics, f"{args.out}/ap_vs_gflops.png", note=note)
    plot_exit_ratio(result.rows, f"{args.out}/exit_ratio.png")
    plot_subset_performance(result.r_match, f"{args.out}/subset_ap.png")
    thresholds = [row.threshold for row in result.rows]
    shown = {min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - t)) for t in SCREEN_THRESHOLDS}
    shown |= {i for i, t in enumerate(thresholds) if t == result.r_match.threshold}
    print(to_markdown(select_rows(table, shown, f"{len(shown)} of {len(table.rows)} thresholds; all in {args.out}/"
                                                "sweep.md, sweep.csv. GFLOPs = 2 * MACs at the shapes run.")))
    for line in cache.notes:
        print(f"note: {line}")
    print(f"saver alone: AP {result.saver['AP']:.4f} at {result.saver_gflops:.3f} GFLOPs/img; "
          f"base alone: AP {result.base['AP']:.4f} at {result.base_gflops:.3f} GFLOPs/img")
    print(f"r_match = {result.r_match.r_match:.4f} (t = {result.r_match.threshold}), searched "
          f"{result.r_match.search}; dC_tr = C_S/C_B - r_match = {result.delta_cost_tr:.4f}")
    print(f"wrote {args.out}/sweep.csv, sweep.md, ap_vs_gflops.png, exit_ratio.png, subset_ap.png")
    return 0
