"""``routers``: rank the cascade's routers on a calibration split and report each on a held-out split."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import add_cache_options, levels_argument, nonnegative_number_argument

DESCRIPTION = """\
Rank the cascade's routers on a calibration split and report each on a held-out split.

Routers: every registered confidence function (mean = the paper's rule, max, topk_mean, high_share,
entropy), the learned post-evaluator (trained here on the calibration split and saved as json),
and the per-image oracle (an upper bound). Prints three tables: the routers (calibration r_match
and curve mean AP with ranks, then the held-out results), the paper's Eq. 5 check for the learned
evaluator, and where each router puts the cascade against a static reference model on all images.

Needs each model's cached predictions (``predict-coco``). On the demo ladder::

    python -m tinysaver_det routers            # saver pico, base s, reference n, runs/demo/*_predictions.jsonl

Elsewhere::

    python -m tinysaver_det routers --ann instances_val2017.json \\
        --model yolov8n=runs/n_predictions.jsonl --model yolov8x=runs/x_predictions.jsonl
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cache_options(parser, pair=True)
    parser.add_argument("--reference", help="static model to compare with (default: the middle one of 3 models)")
    parser.add_argument("--levels", type=levels_argument, default=101,
                        help="cut points per curve (0: every distinct confidence)")
    parser.add_argument("--context-levels", type=levels_argument, default=0,
                        help="cut points of the all-images comparison (0, default: every distinct confidence, exact)")
    parser.add_argument("--l2", type=nonnegative_number_argument, default=1.0, help="ridge strength of the learned router")
    parser.add_argument("--no-context", action="store_true", help="skip the all-images comparison with the reference")
    parser.add_argument("--out", default="runs/compare_routers", help="folder for the router json and CSV tables")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tinysaver_det.cli.options import cache_pair, chosen_model
    from tinysaver_det.core.tables import to_markdown, write_csv
    from tinysaver_det.detection.cache import COST_UNITS, load_cache, load_splits
    from tinysaver_det.detection.studies.router_comparison import (
        compare_routers,
        context_rows,
        context_table,
        evaluator_checks,
        evaluator_table,
        router_table,
    )

    ann, models, saver, base = cache_pair(args)
    names = list(models)
    reference = chosen_model(args.reference, names[1] if len(names) == 3 else None, names, "--reference")
    unit = COST_UNITS[args.cost]
    levels = args.levels or None
    out = Path(args.out)

    calibration, held_out = load_splits(ann, models, args.split, args.seed)
    comparison = compare_routers(calibration, held_out, saver, base, unit, reference=reference, levels=levels,
                                 l2=args.l2)
    router_path = comparison.learned.save(out / "learned_router.json")
    print(f"# Routers, {saver} -> {base}: calibration {calibration.n_images} images, held-out {held_out.n_images} "
          f"({args.split} split)\n")
    tables = {"routers": router_table(comparison), "eq5": evaluator_table(evaluator_checks(comparison), unit)}
    print(to_markdown(tables["routers"]), "\n")
    print(to_markdown(tables["eq5"]), "\n")
    if reference is not None and not args.no_context:
        full = load_cache(ann, models)
        cost, ap, rows = context_rows(full, calibration, held_out, saver, base, reference, unit, l2=args.l2,
                                      levels=args.context_levels or None)
        tables["context"] = context_table(reference, cost, ap, rows, unit)
        print(f"# {saver} -> {base} against {reference} alone, all {full.n_images} images\n")
        print(to_markdown(tables["context"]), "\n")
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
    print(f"learned router: {router_path}; tables: {out}/*.csv")
    return 0
