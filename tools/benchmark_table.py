"""Table 4-style benchmark: AP against GFLOPs for several saver/base pairs and the static models.

Each pair is a run directory of ``tools/eval_coco.py --full`` (same image set for all):

    python tools/benchmark_table.py --runs runs/p_s runs/n_s --thresholds 0.25 0.34 --out runs/table

Writes table.md, table.csv and ap_vs_gflops.png (every pair's cascade curve, static models as points).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinysaver_det.core.sweep import default_thresholds
from tinysaver_det.core.tables import to_markdown, write_csv
from tinysaver_det.detection.benchmark import DEFAULT_MAX_DROPS, PairSweep, benchmark_table
from tinysaver_det.detection.run_dir import RUN_JSON
from tinysaver_det.detection.sweep import inputs_from_run, sweep_cascade
from tinysaver_det.io import atomic_write_text
from tinysaver_det.plots import plot_performance_vs_cost
from tinysaver_det.errors import exit_code_of


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run directories written with --full")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.25], help="operating points to list")
    parser.add_argument("--max-drops", type=float, nargs="+", default=list(DEFAULT_MAX_DROPS),
                        help="allowed AP drops vs the base, absolute (0.01 = one point)")
    parser.add_argument("--out", default="runs/benchmark_table")
    return parser.parse_args(argv)


def pair_from_run(run_dir: str, thresholds) -> PairSweep:
    """Sweep one run directory over the default grid plus ``thresholds``."""
    described = json.loads((Path(run_dir) / RUN_JSON).read_text())
    grid = sorted(set(default_thresholds().tolist()) | set(thresholds))
    sweep = sweep_cascade(inputs_from_run(run_dir), grid, described["min_score"], described["confidence"])
    return PairSweep(described["saver"]["name"], described["base"]["name"], sweep)


def main(argv=None) -> int:
    args = parse_args(argv)
    pairs = [pair_from_run(run, args.thresholds) for run in args.runs]
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


if __name__ == "__main__":
    sys.exit(exit_code_of(main))
