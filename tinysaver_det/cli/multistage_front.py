"""``multistage-front``: do cascades of more than two stages beat the best two-stage cascade?"""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import add_cache_options, confidence_argument, positive_int_argument, positive_number_argument

DESCRIPTION = """\
Do cascades of more than two stages beat the best two-stage cascade? Pareto fronts, table and PNG.

Every chain of the ladder (models kept cheapest first) is simulated from cached predictions on a
grid of thresholds (``--levels`` exit ratios per stage, gridded on the calibration split): all
2-stage chains and the longer ones (pico -> n -> s on the demo ladder). The calibration Pareto
front of the single models and 2-stage chains is compared with the front that also has the longer
chains, at a set of budgets; the held-out columns apply the same thresholds to the other half.

    python -m tinysaver_det multistage-front                      # demo ladder, GFLOPs
    python -m tinysaver_det multistage-front --cost latency       # measured ms per image instead
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cache_options(parser)
    parser.add_argument("--confidence", type=confidence_argument, default="mean",
                        help="confidence of every exiting stage: a registered name or a router .json (default mean)")
    parser.add_argument("--levels", type=positive_int_argument, default=21, help="exit-ratio levels per stage (default 21: steps of 5%%)")
    parser.add_argument("--budgets", type=positive_number_argument, nargs="+",
                        help="budgets of the table (default: 6 between the cheapest and the costliest model)")
    parser.add_argument("--out", default="runs/multistage", help="folder for fronts.png and the CSV tables")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from tinysaver_det.cli.options import cache_inputs
    from tinysaver_det.core.policy import ExitPolicy
    from tinysaver_det.core.tables import to_markdown, write_csv
    from tinysaver_det.detection.cache import COST_UNITS, load_splits
    from tinysaver_det.detection.studies.depths import compare_depths, depth_table, front_table
    from tinysaver_det.plots import plot_depths

    unit = COST_UNITS[args.cost]
    calibration, held_out = load_splits(*cache_inputs(args), args.split, args.seed)
    study = compare_depths(calibration, held_out, ExitPolicy(confidence=args.confidence), unit, args.levels)
    costs = [row.costs[unit] for row, _ in study.static]
    budgets = args.budgets or np.linspace(min(costs), max(costs), 7)[1:].round(3).tolist()
    out = Path(args.out)
    tables = {
        "depths": depth_table(study, budgets),
        "two_stage_front": front_table(study.two_stage_front, unit),
        "deep_front": front_table(study.deep_front, unit),
    }
    png = plot_depths(study, out / "fronts.png")
    print(f"# {' -> '.join(calibration.names)}: best 2-stage front vs the front with deeper chains "
          f"(confidence {args.confidence}; calibration {calibration.n_images} / held-out {held_out.n_images} images)\n")
    print(to_markdown(tables["depths"]), "\n")
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
    print(f"figure: {png}; fronts point by point: {out}/two_stage_front.csv, {out}/deep_front.csv")
    return 0
