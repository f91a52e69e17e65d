"""``pick``: pick a cascade's threshold(s) for a target on a calibration split; report them on held-out data."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinysaver_det.cli.options import (
    add_cache_options,
    confidence_argument,
    levels_argument,
    nonnegative_number_argument,
    positive_int_argument,
    positive_number_argument,
)

DESCRIPTION = """\
Pick a cascade's threshold(s) for a target on a calibration split; report what they give on held-out data.

Targets (repeat each flag for several; all are printed in one table):
    --max-drop 0.01      the cheapest point whose AP is at most 1 point below the last model alone
                         (cheapest in the --cost unit)
    --gflops 2.0         the best AP at no more than 2.0 GFLOPs per image
    --latency-ms 40      the best AP at no more than 40 ms per image (measured model time, see below)

The chain is given with --models (cheapest first, >= 2; default: the first and the last model of the
ladder, the paper's saver -> base). One threshold per stage but the last is chosen on a grid of
--levels exit ratios per stage of the calibration split; the last model alone is also a candidate.
The same thresholds are then applied to the held-out split: the table shows both, the gap, and
whether the target still holds there. Latency is the model milliseconds per image recorded when the
predictions were cached (batch time / batch size, on that machine and batch size).

Each target's pick is written to OUT/operating_point_<kind>_<value>_<unit>.json (the first target's also
to OUT/operating_point.json), from the settings recorded beside each predictions file (no model is
loaded); a K-model chain's file has every stage (tinysaver_det.build.build_cascade(operating_point=...)).

    python -m tinysaver_det pick                                   # demo pico -> s, default targets
    python -m tinysaver_det pick --models pico n s --max-drop 0.02 --gflops 1.5 --latency-ms 40
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cache_options(parser, cost_help="the cost a --max-drop target minimises: gflops (default) or latency")
    parser.add_argument("--models", nargs="+", help="the chain to tune, cheapest first (default: first and last model)")
    parser.add_argument("--confidence", type=confidence_argument, default="mean",
                        help="a registered confidence name or a router .json (default mean)")
    parser.add_argument("--levels", type=levels_argument,
                        help="exit-ratio levels per stage (default or 0: 101 for 2 stages, 21 for more)")
    parser.add_argument("--max-drop", type=nonnegative_number_argument, action="append", default=[], help="largest AP drop vs the last model")
    parser.add_argument("--gflops", type=positive_number_argument, action="append", default=[], help="GFLOPs budget per image")
    parser.add_argument("--latency-ms", type=positive_number_argument, action="append", default=[], help="latency budget, ms per image")
    parser.add_argument("--weights", action="append", metavar="NAME=WEIGHTS",
                        help="how an operating point names a model's weights (repeat; a path, an official or a demo "
                             "name, checked against the sha256 its predictions recorded); default: the weights "
                             "path recorded beside its predictions")
    parser.add_argument("--bootstrap", type=positive_int_argument, default=200,
                        help="resamples of the held-out images for the operating point's intervals (default 200)")
    parser.add_argument("--out", default="runs/pick_threshold",
                        help="folder for picks.csv and the operating point files (one per target)")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from tinysaver_det.cli.options import cache_inputs

    names = list(cache_inputs(args)[1])
    chain = args.models or [names[0], names[-1]]
    if any(m not in names for m in chain) or len(chain) < 2:
        parser.error(f"--models needs >= 2 of {names}, got {chain}")


def run(args: argparse.Namespace) -> int:
    from tinysaver_det.cli.options import cache_inputs
    from tinysaver_det.core.picker import Target
    from tinysaver_det.core.tables import to_markdown, write_csv
    from tinysaver_det.detection.cache import COST_UNITS, load_splits
    from tinysaver_det.detection.studies.depths import UNITS
    from tinysaver_det.detection.studies.operating_points import pick_operating_points, picker_table

    ann, predictions = cache_inputs(args)
    names = list(predictions)
    chain = args.models or [names[0], names[-1]]
    calibration, held_out = load_splits(ann, {m: predictions[m] for m in chain}, args.split, args.seed)

    targets = [Target("max_drop", d, COST_UNITS[args.cost]) for d in args.max_drop]
    targets += [Target("budget", b, "GFLOPs") for b in args.gflops]
    targets += [Target("budget", b, "ms") for b in args.latency_ms]
    if not targets:  # defaults: two AP drops and half of the last model's cost in each unit
        last = chain[-1]
        targets = [Target("max_drop", d, COST_UNITS[args.cost]) for d in (0.01, 0.05)] + [
            Target("budget", round(float(calibration.cost(last, u).mean()) / 2, 3 if u == "GFLOPs" else 1), u)
            for u in UNITS
        ]
    levels = args.levels or (101 if len(chain) == 2 else 21)
    points = pick_operating_points(calibration, held_out, chain, targets, args.confidence, levels)
    table = picker_table(points)
    print(f"# Operating points of {' -> '.join(chain)} (confidence {args.confidence}): picked on calibration "
          f"({calibration.n_images} images), checked on held-out ({held_out.n_images}, {args.split} split)\n")
    print(to_markdown(table))
    path = write_csv(table, Path(args.out) / "picks.csv")
    print(f"\nwrote {path}")
    _write_operating_points(args, ann, chain, predictions, points, calibration, held_out)
    return 0


def _weights_of(args: argparse.Namespace) -> dict[str, str]:
    """``--weights NAME=WEIGHTS`` as ``{name: weights}``."""
    from tinysaver_det.errors import TinySaverInputError

    weights = {}
    for spec in args.weights or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise TinySaverInputError(f"--weights is given as NAME=WEIGHTS, got {spec!r}")
        weights[name] = path
    return weights


def operating_point_names(points) -> list[str]:
    """The file of each target's pick: ``operating_point.json`` for the first target (where a single pick
    has always been written), then ``operating_point_<kind>_<value>_<unit>.json`` for every target.

    >>> from tinysaver_det.core.picker import Target
    >>> from types import SimpleNamespace
    >>> operating_point_names([SimpleNamespace(target=Target("max_drop", 0.01, "GFLOPs")),
    ...                        SimpleNamespace(target=Target("budget", 40.0, "ms"))])
    ['operating_point_max_drop_0.01_GFLOPs.json', 'operating_point_budget_40_ms.json']
    """
    return [f"operating_point_{p.target.kind}_{p.target.value:g}_{p.target.unit}.json" for p in points]


def _model_entries(args, chain, predictions) -> list[dict] | None:
    """Each chain model's operating-point entry, from the settings recorded beside its predictions
    (:func:`~tinysaver_det.detection.run_inputs.prediction_provenance`); no model is loaded. None, with a
    note, when a predictions file records no model. ``--weights NAME=WEIGHTS`` names the file to deploy
    (checked against the recorded sha256); without it, the recorded weights path is written."""
    from tinysaver_det.adapters import is_mmdet_config, resolve_weights
    from tinysaver_det.detection.run_inputs import prediction_provenance, provenance_file
    from tinysaver_det.operating_point import check_sha256, model_entry

    given = _weights_of(args)
    entries = []
    for k, name in enumerate(chain):
        settings = (prediction_provenance(predictions[name]) or {}).get("model")
        if not isinstance(settings, dict) or not settings.get("weights"):
            print(f"note: no operating point: {provenance_file(predictions[name])} records no model for {name}")
            return None
        weights = given.get(name, settings["weights"])
        local = Path(str(resolve_weights(weights)))
        if name in given and local.is_file():  # the file to deploy must be the one that made the predictions
            recorded = settings.get("config_sha256") if is_mmdet_config(local) else settings.get("sha256")
            check_sha256(local, recorded, f"--weights {name}")
        entries.append(model_entry(weights, settings, **({"class_map": {}} if k == 0 else {})))
    return entries


def _write_operating_points(args, ann, chain, predictions, points, calibration, held_out) -> None:
    """One operating point file per target (:func:`operating_point_names`), the first also as
    ``operating_point.json``; a target whose pick is the last model alone gets none."""
    from tinysaver_det.core.policy import ExitPolicy
    from tinysaver_det.detection.studies.deployment import operating_point_file
    from tinysaver_det.operating_point import FILE_NAME

    entries = _model_entries(args, chain, predictions)
    if entries is None:
        return
    out = Path(args.out)
    for index, (point, name) in enumerate(zip(points, operating_point_names(points))):
        op = operating_point_file(point, calibration, held_out, tuple(chain), entries, ann,
                                  ExitPolicy(confidence=args.confidence),
                                  split=args.split, replicates=args.bootstrap, seed=args.seed)
        if op is None:
            reason = (f"the pick is {chain[-1]} alone" if point.calibration is None or not point.calibration.thresholds
                      else "a stage of the pick never answers (t = inf): pick again without it in --models")
            print(f"note: no {name}: for {point.target.label} {reason}")
            continue
        paths = [op.write(out / name)] + ([op.write(out / FILE_NAME)] if index == 0 else [])
        interval = op.held_out["bootstrap"]
        thresholds = ", ".join(f"{t:.6g}" for t in op.stage_thresholds)
        print(f"wrote {', '.join(map(str, paths))}: t = {thresholds} for {point.target.label}; held-out AP "
              f"{op.held_out['AP']:.4f} [{interval['AP'][0]:.4f}, {interval['AP'][1]:.4f}], GFLOPs/img "
              f"{op.held_out['gflops_per_image']:.3f} [{interval['gflops_per_image'][0]:.3f}, "
              f"{interval['gflops_per_image'][1]:.3f}] ({interval['level']:.0%} bootstrap over {held_out.n_images} "
              f"held-out images, {interval['replicates']} resamples)")
