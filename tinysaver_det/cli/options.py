"""The option groups shared by the subcommands, each defined once, and the ``argparse`` types that check
values early (a wrong value is a usage error naming the option: ``error: argument --t: ...``, exit 2).

Groups:

* :func:`add_dataset_options`: ``--images --ann [--limit]`` (default: the demo val split);
* :func:`add_detector_options`: ``--saver --base --imgsz --nms`` (default: demo pico and s);
* :func:`add_nms_option`: ``--nms validator|predictor``, the NMS of the Ultralytics models;
* :func:`add_confidence_options`: ``--confidence --min-score`` (the exit rule's confidence);
* :func:`add_run_options`: ``--batch --device --half --out [--resume --overwrite] --quiet`` (every
  subcommand that runs a model; :func:`tinysaver_det.cli.main` refuses a missing ``--device`` first);
* :func:`add_cache_options`: ``--ann --model --split --seed --cost [--saver --base]``, the cached
  predictions of the offline studies (:mod:`tinysaver_det.detection.cache`), read with
  :func:`cache_inputs` (and :func:`cache_pair` for the saver and base among them);
* :func:`resume_command`, :func:`interrupted`: the command line that resumes an interrupted run.

Nothing here imports a framework: the offline subcommands build their parsers from it.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Mapping, Sequence

from tinysaver_det import assets
from tinysaver_det.core.policy import CONFIDENCE_FUNCTIONS, DEFAULT_MIN_SCORE, validate_threshold
from tinysaver_det.detection.cache import COST_UNITS, SPLITS
from tinysaver_det.detection.router_files import resolve_router
from tinysaver_det.detection.nms_mode import DEFAULT_NMS, NMS_MODES
from tinysaver_det.distributed import environment_context, environment_int
from tinysaver_det.errors import TinySaverInputError

#: Where ``predict-coco`` writes the demo ladder's records by default (see its docstring).
DEMO_RECORDS = "runs/demo"


def threshold_argument(text: str) -> float:
    """argparse type of ``--t``: a number >= 0 (above 1: nothing exits), NaN refused."""
    try:
        return validate_threshold(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def positive_number_argument(text: str) -> float:
    """argparse type of a cost or a budget (GFLOPs, ms): a finite number > 0.

    >>> positive_number_argument("8.7")
    8.7
    """
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def nonnegative_number_argument(text: str) -> float:
    """argparse type of an allowed drop or a strength: a finite number >= 0."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def device_argument(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``mps``, a GPU index (``0``, ``0,1``) or ``cuda[:N]``.

    A device this machine does not have is refused here, before a model loads or a file is written
    (:func:`tinysaver_det.timing.check_device`, which ``TinySaver`` uses too; torch is imported only
    for a device other than the CPU).

    >>> device_argument("cpu")
    'cpu'
    """
    from tinysaver_det.timing import check_device

    try:
        check_device(text)
    except TinySaverInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def fraction_argument(text: str) -> float:
    """argparse type of a score in [0, 1].

    >>> fraction_argument("0.05")
    0.05
    """
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def positive_int_argument(text: str) -> int:
    """argparse type of a count >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def levels_argument(text: str) -> int:
    """argparse type of a ``--levels`` count of cut points: 0 (the command's default, named in its help) or >= 2.

    >>> levels_argument("0"), levels_argument("21")
    (0, 21)
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value != 0 and value < 2:
        raise argparse.ArgumentTypeError(f"must be 0 or an integer >= 2, got {text!r}")
    return value


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers``: processes that score a sweep's selections (the results do not depend on it)."""
    parser.add_argument("--workers", type=positive_int_argument, default=os.cpu_count() or 1,
                        help="processes scoring thresholds and r_match's exit sets (default: the machine's "
                             "cores; the results do not depend on it)")


def confidence_argument(text: str) -> str:
    """argparse type of a ``--confidence`` option: a registered name or a router file, checked early.

    >>> confidence_argument("entropy")
    'entropy'
    """
    try:
        resolve_router(text)
    except (ValueError, FileNotFoundError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_dataset_options(parser: argparse.ArgumentParser, limit: bool = True) -> None:
    """``--images``, ``--ann`` and (with ``limit``) ``--limit``."""
    parser.add_argument("--images", help="image folder; default: demo val images")
    parser.add_argument("--ann", help="COCO annotation json; default: demo val annotations")
    if limit:
        parser.add_argument("--limit", type=positive_int_argument, help="evaluate only the first N images (by id)")


def dataset_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The annotation file and image folder named by :func:`add_dataset_options` (demo val split by default)."""
    return (Path(args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS)),
            Path(args.images or assets.asset_path(assets.DEMO_IMAGES)))


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """``--saver``, ``--base``, ``--imgsz`` and ``--nms``."""
    parser.add_argument("--saver", help="saver weights (.pt/.yaml or official name); default: demo pico")
    parser.add_argument("--base", help="base weights, or an mmdet config (.py); default: demo s")
    parser.add_argument("--imgsz", type=positive_int_argument,
                        help="inference size of the Ultralytics models; default: each model's own "
                             "(an mmdet base's comes from its config's test pipeline)")
    add_nms_option(parser)


def add_nms_option(parser: argparse.ArgumentParser) -> None:
    """``--nms``: which Ultralytics NMS makes the YOLO models' boxes (:mod:`tinysaver_det.detection.nms_mode`).

    Its value is None when not given, so that an mmdet model (which has no such mode) is not handed one.
    """
    parser.add_argument("--nms", choices=NMS_MODES, default=None,
                        help=f"NMS of the Ultralytics models: {NMS_MODES[0]} (default {DEFAULT_NMS}: as Ultralytics' "
                             "val runs it, a box kept once per class above conf, Ultralytics' own mAP) or "
                             f"{NMS_MODES[1]} (as YOLO.predict runs it, one label per box)")


def add_confidence_options(parser: argparse.ArgumentParser, per_stage: bool = False) -> None:
    """``--confidence`` (one, or with ``per_stage`` one per exiting stage) and ``--min-score``."""
    names = ", ".join(sorted(CONFIDENCE_FUNCTIONS))
    if per_stage:
        parser.add_argument("--confidence", nargs="+", type=confidence_argument, default=["mean"],
                            help=f"one confidence for every exiting stage, or one per exiting stage: one of {names} "
                                 "(default: mean, the paper's) or a router file (.json)")
    else:
        parser.add_argument("--confidence", type=confidence_argument, default="mean",
                            help=f"image confidence: one of {names} (default: mean, the paper's) or a router file "
                                 "(.json, e.g. from the routers subcommand)")
    parser.add_argument("--min-score", type=fraction_argument, default=DEFAULT_MIN_SCORE,
                        help=f"score floor of the confidence (default {DEFAULT_MIN_SCORE:g})")


def add_operating_point_option(parser: argparse.ArgumentParser) -> None:
    """``--op FILE``: an ``operating_point.json`` (``pick``) giving the saver, base, t and confidence."""
    parser.add_argument("--op", metavar="FILE",
                        help="operating_point.json written by `pick`: saver, base, t, confidence, min score "
                             "(weights and router files are checked against their recorded sha256)")


def check_operating_point(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """With ``--op``, the options it gives must not be given too (usage error naming them)."""
    if not getattr(args, "op", None):
        return
    given = [f"--{name.replace('_', '-')}" for name in ("saver", "base", "t", "imgsz", "nms", "base_checkpoint")
             if getattr(args, name, None) is not None]
    given += [flag for flag, value, default in (("--confidence", args.confidence, "mean"),
                                                ("--min-score", args.min_score, DEFAULT_MIN_SCORE)) if value != default]
    if given:
        parser.error(f"--op gives the saver, base, t and confidence; drop {', '.join(given)}")


def check_run_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options of :func:`add_run_options` that do not go together (usage error): ``--half`` on the CPU, and
    ``--resume`` with ``--overwrite`` (the library's one message for it)."""
    from tinysaver_det.adapters import check_half
    from tinysaver_det.detection.run_directory import RESUME_AND_OVERWRITE

    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        parser.error(f"--resume and --overwrite: {RESUME_AND_OVERWRITE}")
    if hasattr(args, "half"):
        try:
            check_half(args.half, args.device)
        except TinySaverInputError as error:
            parser.error(str(error))


def add_run_options(
    parser: argparse.ArgumentParser, out: str | None, resume: bool = False, out_help: str = "run directory"
) -> None:
    """``--batch``, ``--device``, ``--half``, ``--out`` (default ``out``; required when None), ``--quiet`` and, with
    ``resume``, ``--resume`` / ``--overwrite`` (not both: :func:`check_run_options`)."""
    parser.add_argument("--batch", type=positive_int_argument, default=32, help="images per batch (default 32)")
    parser.add_argument("--device", type=device_argument, default="cpu",
                        help="torch device: cpu (default), cuda, cuda:N, N, mps; one this machine lacks is refused")
    parser.add_argument("--half", action="store_true", help="fp16 inference of the Ultralytics models (needs a GPU: refused with --device cpu)")
    if out is None:
        parser.add_argument("--out", required=True, help=out_help)
    else:
        parser.add_argument("--out", default=out, help=f"{out_help} (default {out})")
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in --out where it stopped (same settings required); "
                                 "starts one when --out holds none; not with --overwrite")
        parser.add_argument("--overwrite", action="store_true", help="replace the run in --out; not with --resume")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_model_specs(specs: Sequence[str] | None, default_names: Sequence[str] = ("pico", "n", "s"),
                      default_dir: str | os.PathLike = DEMO_RECORDS) -> dict[str, Path]:
    """``["name=path.jsonl", ...]`` -> ``{name: path}`` in the given order; None -> the demo ladder's records.

    >>> parse_model_specs(["tiny=a.jsonl", "big=b.jsonl"])
    {'tiny': PosixPath('a.jsonl'), 'big': PosixPath('b.jsonl')}
    >>> list(parse_model_specs(None))
    ['pico', 'n', 's']
    """
    if not specs:
        return {name: Path(default_dir) / f"{name}_predictions.jsonl" for name in default_names}
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise TinySaverInputError(f"a model is given as NAME=PREDICTIONS.jsonl, got {spec!r}")
        if name in models:
            raise TinySaverInputError(f"model {name!r} is given twice")
        models[name] = Path(path)
    return models


def add_cache_options(
    parser: argparse.ArgumentParser, cost_help: str = "cost: counted GFLOPs (default) or measured latency (ms per image)",
    pair: bool = False,
) -> None:
    """The dataset, models, split and cost options of the offline studies over cached predictions.

    ``pair=True`` adds ``--saver --base``: two of the cached models by name (default: the first and the
    last), read with :func:`cache_pair`. Not :func:`add_detector_options`, where they name weights files.
    """
    parser.add_argument("--ann", help="COCO annotation json; default: demo val annotations")
    parser.add_argument("--model", action="append", metavar="NAME=PREDICTIONS.jsonl",
                        help=f"a model's cached predictions, cheapest first (repeat); default: {DEMO_RECORDS} "
                             "pico, n, s")
    parser.add_argument("--split", choices=SPLITS, default="parity",
                        help="calibration/held-out split: parity (odd ids calibrate; default) or a seeded permutation")
    parser.add_argument("--seed", type=int, default=0, help="seed of --split permutation")
    parser.add_argument("--cost", choices=sorted(COST_UNITS), default="gflops", help=cost_help)
    if pair:
        parser.add_argument("--saver", help="saver model name (default: the first model)")
        parser.add_argument("--base", help="base model name (default: the last model)")


def chosen_model(value: str | None, default: str | None, names: Sequence[str], option: str) -> str | None:
    """The model an option such as ``--saver`` names (``default`` when not given), which must be one of ``names``.

    Raises:
        TinySaverInputError: naming the option, its value and the models given.
    """
    if value is not None and value not in names:
        raise TinySaverInputError(f"{option} {value!r} is none of the models given with --model: {list(names)}")
    return default if value is None else value


def cache_inputs(args: argparse.Namespace) -> tuple[Path, dict[str, Path]]:
    """The annotation file and ``{name: predictions file}`` named by :func:`add_cache_options`."""
    return Path(args.ann or assets.asset_path(assets.DEMO_ANNOTATIONS)), parse_model_specs(args.model)


def cache_pair(args: argparse.Namespace) -> tuple[Path, dict[str, Path], str, str]:
    """:func:`cache_inputs` and the saver and base named by ``add_cache_options(pair=True)``.

    Returns:
        ``(ann, models, saver, base)``; the saver defaults to the first model, the base to the last.

    Raises:
        TinySaverInputError: a ``--saver`` or ``--base`` that is none of the models (:func:`chosen_model`).
    """
    ann, models = cache_inputs(args)
    names = list(models)
    saver = chosen_model(args.saver, names[0], names, "--saver")
    base = chosen_model(args.base, names[-1], names, "--base")
    return ann, models, saver, base


def resume_command(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The command line of this process with ``--resume`` (and without ``--overwrite``), to paste.

    Under torchrun (``WORLD_SIZE`` > 1 in ``environ``, default ``os.environ``) it is a torchrun
    command with the job's number of processes per node (and nodes): a sharded run resumes only with
    the number of processes that cut its shards.

    >>> resume_command(["tools/eval_coco.py", "--t", "0.3", "--overwrite"], environ={})
    'python tools/eval_coco.py --t 0.3 --resume'
    >>> resume_command(["/x/tinysaver_det/__main__.py", "eval"], environ={"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    'torchrun --standalone --nproc_per_node 2 -m tinysaver_det eval --resume'
    """
    argv = list(sys.argv if argv is None else argv)
    module = argv[0].endswith("__main__.py")
    rest = [a for a in argv[1:] if a != "--overwrite"]
    tail = [*map(shlex.quote, rest), *([] if "--resume" in rest else ["--resume"])]
    world = environment_context(environ).world_size
    if world <= 1:
        return " ".join(["python -m tinysaver_det" if module else f"python {argv[0]}", *tail])
    per_node = environment_int("LOCAL_WORLD_SIZE", 0, environ)
    nodes = world // per_node if per_node > 0 else None
    if nodes == 1:
        launcher = f"torchrun --standalone --nproc_per_node {per_node}"
    else:  # several nodes: the rendezvous flags are torchrun's own, not visible to a worker
        launcher = (f"torchrun --nnodes {nodes or '<nodes>'} --nproc_per_node {per_node or '<processes>'} "
                    "<the job's rendezvous flags>")
    return " ".join([launcher, "-m tinysaver_det" if module else argv[0], *tail])


def interrupted(out) -> int:
    """Say where a run stopped by Ctrl-C or SIGTERM left its finished batches and how to resume it; the exit code."""
    if environment_context().is_main:  # under torchrun every rank is stopped; rank 0 says how to go on
        print(f"\ninterrupted: the finished batches are in {out}; continue with:\n  {resume_command()}",
              file=sys.stderr)
    return 130
