"""``table``: a Table 4-style benchmark of several saver/base pairs and the static models, AP against GFLOPs."""

from __future__ import annotations

import argparse

from tinysaver_det.cli.options import (
    add_workers_option,
    nonnegative_number_argument,
    positive_number_argument,
    threshold_argument,
)
from tinysaver_det.core.cost import FLOPS_CONVENTIONS
from tinysaver_det.detection.studies.benchmark_table import BENCHMARK_MAX_DROPS


def size_argument(text: str) -> tuple[int, int]:
    """argparse type of ``--flops-size``: ``WxH`` (width first, as papers write 1333x800) -> ``(H, W)``.

    >>> size_argument("1333x800")
    (800, 1333)
    """
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels such as 1333x800, got {text!r}")
    return int(height), int(width)


def model_gflops_argument(text: str) -> tuple[str, float]:
    """argparse type of ``--gflops-at-size``: ``NAME=GFLOPS``.

    >>> model_gflops_argument("yolov8n.pt=8.7")
    ('yolov8n.pt', 8.7)
    """
    name, sep, value = text.rpartition("=")
    if not (sep and name):
        raise argparse.ArgumentTypeError(f"expected NAME=GFLOPS, got {text!r}")
    return name, positive_number_argument(value)

DESCRIPTION = """\
Table 4-style benchmark: AP against GFLOPs for several saver/base pairs and the static models.

Each pair is a run directory of `eval --full` (same image set for all):

    python -m tinysaver_det table --runs runs/p_s runs/n_s --thresholds 0.25 0.34 --out runs/table

Writes table.md, table.csv and ap_vs_gflops.png (every pair's cascade curve, static models as points).

Costs are GFLOPs (FLOPs = 2 * MACs) per image at the input shape each image ran. To set the table
beside a paper's (TinySaver's Table 4 lists GMACs at one input size, e.g. 1333x800):

    python -m tinysaver_det table --runs runs/n_codino --flops-convention paper-macs \
        --flops-size 1333x800 --gflops-at-size yolov8n.pt=G_S --gflops-at-size codino=G_B

(G_S, G_B: `--gflops-at-size NAME=GFLOPS`, each model's GFLOPs of one image at that size, e.g. from
`MMDetFlops(model)((800, 1333))`; a cascade then costs C_S + (1 - exit ratio) * C_B.)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, help="run directories written with --full")
    parser.add_argument("--thresholds", type=threshold_argument, nargs="+", default=[0.25], help="thresholds to list (rows labelled t = ...)")
    parser.add_argument("--max-drops", type=nonnegative_number_argument, nargs="+", default=list(BENCHMARK_MAX_DROPS),
                        help="allowed AP drops vs the base, absolute (0.01 = one point)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept runs that did not finish (the table then says they are partial)")
    parser.add_argument("--flops-convention", choices=FLOPS_CONVENTIONS, default="flops",
                        help="flops: GFLOPs = 2 * GMACs (default); paper-macs: GMACs, as detection papers list them")
    parser.add_argument("--flops-size", type=size_argument, metavar="WxH",
                        help="cost every image at this input size (e.g. 1333x800), with --gflops-at-size "
                             "(default: the shape each image ran)")
    parser.add_argument("--gflops-at-size", type=model_gflops_argument, action="append", default=[], metavar="NAME=GFLOPS",
                        help="a model's GFLOPs of one image at --flops-size (one per model of the table)")
    add_workers_option(parser)
    parser.add_argument("--out", default="runs/benchmark_table", help="output folder (default runs/benchmark_table)")


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.core.tables import to_markdown, write_csv
    from tinysaver_det.detection.studies.benchmark_table import CostConvention, benchmark_table, pair_from_run
    from tinysaver_det.errors import TinySaverInputError
    from tinysaver_det.io import atomic_write_text
    from tinysaver_det.plots import plot_performance_vs_cost

    from tinysaver_det.detection.run_inputs import check_same_inputs, check_same_nms_mode, read_run_inputs, run_nms_modes

    if (args.flops_size is None) != (not args.gflops_at_size):
        raise TinySaverInputError("--flops-size and --gflops-at-size go together: the GFLOPs of each model at that size")
    runs = [read_run_inputs(run) for run in args.runs]
    for run in runs:
        run.check_finished(args.allow_partial)
    check_same_inputs(runs)  # one table, one image set and one annotation file
    check_same_nms_mode({name: mode for run in args.runs for name, mode in run_nms_modes(run).items()})  # one NMS
    pairs = [pair_from_run(run, args.thresholds, args.allow_partial, workers=args.workers) for run in args.runs]
    convention = CostConvention(args.flops_convention, args.flops_size,
                                dict(args.gflops_at_size) if args.flops_size else None)
    missing = sorted({name for pair in pairs for name in (pair.saver, pair.base)} - set(convention.gflops_at_size or {}))
    if args.flops_size and missing:
        raise TinySaverInputError(f"--gflops-at-size names no GFLOPs for {', '.join(missing)} (the runs' model names)")
    table = benchmark_table(pairs, args.thresholds, args.max_drops, convention)
    markdown = to_markdown(table, digits=4)
    atomic_write_text(f"{args.out}/table.md", markdown + "\n")
    write_csv(table, f"{args.out}/table.csv")
    statics = {row[0]: (row[7], row[4]) for row in table.rows if row[1] == "static"}
    plot_performance_vs_cost({p.name: convention.curve(p) for p in pairs}, statics, f"{args.out}/ap_vs_gflops.png",
                             cost_label=f"{convention.unit} / image", note=table.note)
    print(markdown)
    print(f"wrote {args.out}/table.md, table.csv, ap_vs_gflops.png")
    return 0
