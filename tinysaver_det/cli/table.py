"""``table``: a Table 4-style benchmark of several saver/base pairs and the static models, AP against GFLOPs."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import add_workers_option, nonnegative_number_argument, threshold_argument
from tinysaver_det.detection.studies.benchmark_table import BENCHMARK_MAX_DROPS

DESCRIPTION = """\
Table 4-style benchmark: AP against GFLOPs for several saver/base pairs and the static models.

Each pair is a run directory of `eval --full` (same image set for all):

    python -m tinysaver_det table --runs runs/p_s runs/n_s --thresholds 0.25 0.34 --out runs/table

Writes table.md, table.csv and ap_vs_gflops.png (every pair's cascade curve, static models as points).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, help="run directories written with --full")
    parser.add_argument("--thresholds", type=threshold_argument, nargs="+", default=[0.25], help="operating points to list")
    parser.add_argument("--max-drops", type=nonnegative_number_argument, nargs="+", default=list(BENCHMARK_MAX_DROPS),
                        help="allowed AP drops vs the base, absolute (0.01 = one point)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept runs that did not finish (the table then says they are partial)")
    add_workers_option(parser)
    parser.add_argument("--out", default="runs/benchmark_table", help="output folder (default runs/benchmark_table)")


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.core.tables import to_markdown, write_csv
    from tinysaver_det.detection.studies.benchmark_table import benchmark_table, pair_from_run
    from tinysaver_det.io import atomic_write_text
    from tinysaver_det.plots import plot_performance_vs_cost

    from tinysaver_det.detection.run_inputs import check_same_inputs, check_same_nms_mode, read_run_inputs, run_nms_modes

    runs = [read_run_inputs(run) for run in args.runs]
    for run in runs:
        run.check_finished(args.allow_partial)
    check_same_inputs(runs)  # one table, one image set and one annotation file
    check_same_nms_mode({name: mode for run in args.runs for name, mode in run_nms_modes(run).items()})  # one NMS
    pairs = [pair_from_run(run, args.thresholds, args.allow_partial, workers=args.workers) for run in args.runs]
    table = benchmark_table(pairs, args.thresholds, args.max_drops)
    markdown = to_markdown(table, digits=4)
    atomic_write_text(f"{args.out}/table.md", markdown + "\n")
    write_csv(table, f"{args.out}/table.csv")
    statics = {row[0]: (row[7], row[4]) for row in table.rows if row[1] == "static"}
    plot_performance_vs_cost({p.name: p.sweep.rows for p in pairs}, statics, f"{args.out}/ap_vs_gflops.png",
                             note=table.note)
    print(markdown)
    print(f"wrote {args.out}/table.md, table.csv, ap_vs_gflops.png")
    return 0
