"""``post-evaluator``: train the feature post-evaluator and compare it with the mean rule, the output router and the oracle."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import add_cache_options, positive_int_argument

DESCRIPTION = """\
Train the feature post-evaluator (the saver's own features -> the base's per-image AP gain) on a
calibration split, save it as a router file, and compare it honestly on several random
calibration / held-out splits with the paper's mean rule, the output-feature router and the oracle:
AP at the cost of each static model of the cache, GFLOPs to reach each one's AP, curve mean AP, and the share
of the mean-to-oracle gap closed (mean ± std over splits; every router's own cost included).

Needs the saver's cached predictions WITH features (``predict-coco --features``). On the demo ladder::

    python -m tinysaver_det predict-coco --weights demo:pico --features --out runs/demo/pico_predictions.jsonl
    python -m tinysaver_det predict-coco --weights demo:n --out runs/demo/n_predictions.jsonl
    python -m tinysaver_det predict-coco --weights demo:s --out runs/demo/s_predictions.jsonl
    python -m tinysaver_det post-evaluator          # saver pico, base s, 5 random splits

Writes OUT/routers.csv (router, split, budget, ap, gap_closed), OUT/summary.csv, OUT/eq5.csv,
OUT/selection.csv and OUT/features_router.json (trained on the --split/--seed calibration half;
use it with ``--confidence OUT/features_router.json``).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cache_options(parser, pair=True)
    parser.add_argument("--splits", type=positive_int_argument, default=5,
                        help="random calibration/held-out splits of the comparison (permutation seeds F..F+N-1)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="F, the first permutation seed (fresh seeds give splits unseen while designing)")
    parser.add_argument("--no-ablation", action="store_true",
                        help="skip the ablations: the same regression forced onto the output statistics alone "
                             "(features[outputs]), the saver-internal blocks alone (features[candidates+pooled]) "
                             "and every block (features[all])")
    parser.add_argument("--out", default="runs/post_evaluator", help="folder for the router file and the CSV tables")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tinysaver_det.cli.options import cache_pair
    from tinysaver_det.core.tables import to_markdown, write_csv
    from tinysaver_det.detection.cache import load_splits
    from tinysaver_det.detection.feature_router import fit_feature_router, gain_target
    from tinysaver_det.detection.studies.post_evaluator_comparison import (
        budget_table,
        compare_split,
        cv_choice_table,
        eq5_table,
        split_label,
        summary_table,
    )

    ann, models, saver, base = cache_pair(args)
    out = Path(args.out)
    ablations = {} if args.no_ablation else {"features[outputs]": ("outputs",),
                                             "features[candidates+pooled]": ("candidates", "pooled"),
                                             "features[all]": ("outputs", "candidates", "pooled")}

    calibration, _ = load_splits(ann, models, args.split, args.seed)
    gain = gain_target(calibration.per_image_ap(saver), calibration.per_image_ap(base))
    router = fit_feature_router(calibration.detections(saver), gain,
                                info={"saver": saver, "base": base, "split": split_label(args.split, args.seed)})
    router_path = router.save(out / "features_router.json")

    outcomes = []
    for k, seed in enumerate(range(args.first_seed, args.first_seed + args.splits)):
        cal, held = load_splits(ann, models, "permutation", seed)
        outcomes.append(compare_split(cal, held, saver, base, split_label("permutation", seed), ablations))
        print(f"split {k + 1}/{args.splits} done", flush=True)
    tables = {"summary": summary_table(outcomes), "routers": budget_table(outcomes),
              "eq5": eq5_table(outcomes), "selection": cv_choice_table(outcomes)}
    print(f"\n# Post-evaluator, {saver} -> {base}: {args.splits} random splits, held-out halves\n")
    for name in ("summary", "selection", "eq5"):
        print(to_markdown(tables[name]), "\n")
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
    print(f"features router ({'+'.join(router.blocks)}, trained on {split_label(args.split, args.seed)}): "
          f"{router_path}; tables: {out}/*.csv")
    return 0
