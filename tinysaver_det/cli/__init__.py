"""The command line: ``python -m tinysaver_det <subcommand> [options]`` (``--help`` on each).

One module per subcommand, each with the same four names:

* ``DESCRIPTION``: its ``--help`` text, line breaks kept (its one line in the list is in :data:`SUMMARIES`);
* ``add_arguments(parser)``: its options, the shared groups taken from :mod:`tinysaver_det.cli.options`;
* ``check(parser, args)`` (optional): checks across options, reported with ``parser.error``;
* ``run(args)``: the work, through library functions; returns the exit code.

Only the chosen subcommand's module is imported, so the offline subcommands (sweep, table, pick,
routers, multistage-front, select-saver) load neither torch, cv2, Ultralytics nor mmdet. A wrong
input ends with ``error: <message>`` and exit code 2, without a traceback
(:func:`tinysaver_det.errors.exit_code_of`); a wrong option is argparse's usage error, also exit 2.

``tools/*.py`` are shims that call the same subcommands with the same flags.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from tinysaver_det.errors import exit_code_of
from tinysaver_det.framework_warnings import silence_framework_warnings

#: Subcommand -> module under ``tinysaver_det.cli`` (the table of the command line; add a row to add one).
COMMANDS = {
    "eval": "eval_cascade",
    "predict": "predict",
    "predict-coco": "predict_coco",
    "sweep": "sweep",
    "table": "table",
    "pick": "pick",
    "routers": "routers",
    "post-evaluator": "post_evaluator",
    "multistage-front": "multistage_front",
    "multistage-run": "multistage_run",
    "select-saver": "select_saver",
    "test-mmdet": "mmdet_config",
}

#: One-line help of each subcommand, for the list (kept here so that listing imports no subcommand).
SUMMARIES = {
    "eval": "run a saver -> base cascade on a COCO-format dataset, write the run directory, print COCO numbers",
    "predict": "run the cascade on any images or video (no dataset): predictions.jsonl, summary.json, drawn images",
    "predict-coco": "cache one detector's per-image predictions (for sweeps, routers, the picker)",
    "sweep": "sweep the exit threshold from cached predictions (a --full run or two results jsons)",
    "table": "Table 4-style benchmark of several saver/base pairs from --full run directories",
    "pick": "pick thresholds for a target on a calibration split, check them on held-out data",
    "routers": "compare routers (score functions, learned post-evaluator, oracle) from cached predictions",
    "post-evaluator": "train the saver-feature post-evaluator; compare it over random splits with mean, outputs, oracle",
    "multistage-front": "Pareto fronts of 2-stage against deeper cascades, from cached predictions",
    "multistage-run": "run a real K-stage cascade on a COCO-format dataset",
    "select-saver": "choose a saver for a base classifier from saved records (paper Tables 2 and 1)",
    "test-mmdet": "test a TinySaver mmdet config with mmengine's Runner",
}


def command_module(name: str):
    """The module of subcommand ``name``."""
    return importlib.import_module(f"tinysaver_det.cli.{COMMANDS[name]}")


def _subparser(subparsers, name: str, module=None) -> argparse.ArgumentParser:
    options = dict(help=SUMMARIES[name], allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    if module is not None:
        options["description"] = module.DESCRIPTION
    parser = subparsers.add_parser(name, **options)
    if module is not None:
        module.add_arguments(parser)
    return parser


def build_parser(chosen: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top parser with every subcommand listed; only ``chosen``'s options are built (its module imported)."""
    parser = argparse.ArgumentParser(
        prog="tinysaver", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>", required=True)
    built = {name: _subparser(subparsers, name, command_module(name) if name == chosen else None) for name in COMMANDS}
    return parser, built


def parse_command(name: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the options of subcommand ``name`` alone (``argv`` without the subcommand), with its checks."""
    # Imported here, not at the top: options pulls in the COCO reader and the cache, which ``--help``
    # and the subcommand list do not need (the subcommands import it themselves when they build).
    from tinysaver_det.cli.options import check_run_options

    parser, built = build_parser(name)
    args = parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)])
    check = getattr(command_module(name), "check", None)
    if check is not None:
        check(built[name], args)
    check_run_options(built[name], args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tinysaver_det <subcommand> ...``: parse, run the subcommand, return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    silence_framework_warnings()  # before a subcommand imports a framework
    if not argv or argv[0] not in COMMANDS:
        build_parser()[0].parse_args(argv)  # --help, or the usage error naming the choices
        return 2
    # Parsing runs inside exit_code_of too: a check that reads an input (a --model spec) fails with
    # one error line, and Ctrl-C while the subcommand's modules import ends without a traceback.
    return exit_code_of(lambda: command_module(argv[0]).run(parse_command(argv[0], argv[1:])))


def tool(name: str):
    """``(main, parse_args)`` of subcommand ``name`` for a ``tools/*.py`` shim: ``main(argv)`` returns the exit
    code as the command line does, ``parse_args(argv)`` parses (and checks) that subcommand's options alone."""

    def tool_main(argv: Sequence[str] | None = None) -> int:
        return main([name, *(sys.argv[1:] if argv is None else argv)])

    def tool_parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
        return parse_command(name, argv)

    return tool_main, tool_parse_args
