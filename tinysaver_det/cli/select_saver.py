"""``select-saver``: choose a saver for a base classifier from saved records, and report its cascade."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

DESCRIPTION = """\
Choose a saver for a base classifier from saved records, and report its cascade (paper Tables 2 and 1).

Every model is given as NAME COST TRAIN TEST: its cost per sample (FLOPs, FLOPs = 2 * MACs, or any
unit shared by all models, see --cost-label) and its records on the training split (used to choose
the saver, lowest dC_tr = C_S/C_B - r_match) and on the test split (used for Table 1). Records are
the authors' npz (confs, preds, label) or plain npz/CSV of probabilities or logits with labels.

Example::

    python -m tinysaver_det select-saver \\
        --base resnet50 8.2e9 base_train.npz base_test.npz \\
        --saver mobilenet 0.6e9 mnv3_train.npz mnv3_test.npz \\
        --saver resnet18 3.6e9 r18_train.npz r18_test.npz --out runs/select_saver
"""

_MODEL_FIELDS = ("NAME", "COST", "TRAIN", "TEST")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", nargs=4, metavar=_MODEL_FIELDS, required=True, help="the base model")
    parser.add_argument(
        "--saver", nargs=4, metavar=_MODEL_FIELDS, action="append", required=True, help="a candidate saver (repeat)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for selection.csv, table1.csv, sweep_*.csv")
    parser.add_argument(
        "--kind", choices=("auto", "probs", "logits"), default="auto", help="plain score files: probabilities or logits"
    )
    parser.add_argument("--cost-label", default="FLOPs", help="unit of the costs, for the table headers")
    parser.add_argument(
        "--cost-note",
        default="Costs per sample; FLOPs = 2 * MACs. C/C_B: cascade cost relative to the base alone.",
        help="line printed under each table",
    )


def _cost(fields: list[str]) -> float:
    """The COST of a NAME COST TRAIN TEST group: finite and > 0 (a cost ratio C_S/C_B needs both)."""
    from tinysaver_det.errors import TinySaverInputError

    name, cost = fields[:2]
    try:
        value = float(cost)
    except ValueError:
        raise TinySaverInputError(f"cost of {name!r} must be a number, got {cost!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise TinySaverInputError(f"cost of {name!r} must be a finite number > 0, got {cost!r}")
    return value


def _model(fields: list[str], kind: str):
    from tinysaver_det.classification import ModelRecords, load_record

    name, _, train, test = fields
    return ModelRecords(name, _cost(fields), load_record(train, kind), load_record(test, kind))


def select(args: argparse.Namespace):
    """Run :func:`~tinysaver_det.classification.study_savers` on the models of ``args``; print markdown, write CSV.

    Returns:
        the :class:`~tinysaver_det.classification.SaverStudy`.
    """
    from tinysaver_det.classification import study_markdown, study_savers, write_study_csv

    for fields in [args.base, *args.saver]:  # every cost before any record file is read
        _cost(fields)
    study = study_savers(_model(args.base, args.kind), [_model(fields, args.kind) for fields in args.saver])
    print(study_markdown(study, args.cost_label, args.cost_note))
    for path in write_study_csv(study, args.out, args.cost_label):
        print(f"wrote {path}")
    return study


def run(args: argparse.Namespace) -> int:
    select(args)
    return 0
