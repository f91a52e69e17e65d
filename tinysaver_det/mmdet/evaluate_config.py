"""Test a TinySaver config with mmengine's ``Runner.test``, in one process or under ``torchrun``.

What this adds to mmdet's own ``tools/test.py`` (which also runs these configs):

- ``checkpoint`` is the *base's* checkpoint (official mmdet weights), loaded into ``model.base``;
- the per-image routing goes to ``<work_dir>/routing.json`` and the metrics, with the FLOPs
  convention and the ops the counter leaves out, to ``<work_dir>/metrics.json``;
- the distributed launcher also works on CPU machines (gloo backend);
- ``device`` puts the saver and the base on one device in a one-process run, and ``half`` runs the
  saver in fp16.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from tinysaver_det.adapters import check_half
from tinysaver_det.adapters.mmdet import is_cascade_config
from tinysaver_det.core.cost import convention_note
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import atomic_write_json

ROUTING_FILE = "routing.json"
METRICS_FILE = "metrics.json"


def _route_to(evaluator, out_file: str) -> None:
    """Point every TinySaverRouting metric of ``evaluator`` (a dict or a list) that has no ``out_file`` at ``out_file``."""
    for metric in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
        if metric.get("type") in ("TinySaverRouting", "mmdet.TinySaverRouting") and metric.get("out_file") is None:
            metric["out_file"] = out_file


def _start_cpu_process_group(cfg: Config) -> None:
    """Start the gloo process group for a CPU-only machine and keep DDP off device ids.

    mmengine's launcher calls ``torch.cuda.set_device``, which fails without a GPU, and wraps the model
    with ``device_ids=[LOCAL_RANK]``, which DDP rejects for a CPU module. The Runner reuses a process
    group that is already up, and a ``model_wrapper_cfg`` with ``device_ids=None`` keeps DDP on CPU.
    """
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = dict(type="MMDistributedDataParallel", broadcast_buffers=False)
    wrapper.update(cfg.get("model_wrapper_cfg") or {})
    wrapper["device_ids"] = None
    cfg.model_wrapper_cfg = wrapper


def load_config(path: str | Path) -> Config:
    """``Config.fromfile``, with the ways a config file is wrong as input errors naming it: missing,
    not Python, or naming an environment variable that is not set (``$MMDET_CHECKOUT`` of the official
    Co-DINO variant)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        return Config.fromfile(str(path))
    except KeyError as error:  # mmengine's message for an unset {{$VAR}} without a default
        if "os.environ" not in str(error):
            raise
        raise TinySaverInputError(f"config {path}: {error.args[0]}") from None
    except SyntaxError as error:
        raise TinySaverInputError(f"config {path} is not valid Python: {error}") from None


def place_models(cfg: Config, device: str | None, half: bool, launcher: str) -> str | None:
    """Set the saver's device and precision in ``cfg`` and return the torch device of the base.

    Args:
        cfg: a TinySaver config; ``cfg.model.saver`` gets ``device`` (as given: Ultralytics reads
            ``0`` as a GPU) and ``half``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or a GPU index ``N``; None: mmengine's rule (this
            process's GPU if any, else the CPU) for both models.
        half: fp16 inference of the saver (the base runs as its config says).
        launcher: under ``'pytorch'`` each process takes the GPU of its rank, so ``device`` is refused.

    Returns:
        The torch device string for the base (``cuda:N`` for an index), or None for mmengine's rule.

    Raises:
        TinySaverInputError: ``half`` on the CPU, or ``device`` under a launcher.
    """
    check_half(half, device)
    if device is None:
        return None
    if launcher != "none":
        raise TinySaverInputError(
            f"--device {device} with --launcher {launcher}: each process uses the GPU of its rank (LOCAL_RANK), "
            "or the CPU on a machine without one; drop --device"
        )
    saver = cfg.model.get("saver") or {}
    saver.update(device=device, **({"half": True} if half else {}))
    cfg.model.saver = saver
    return f"cuda:{device}" if str(device).isdigit() else str(device)


def run_test(
    config: str | Path | Config,
    checkpoint: str | Path | None = None,
    launcher: str = "none",
    cfg_options: dict | None = None,
    work_dir: str | Path | None = None,
    device: str | None = None,
    half: bool = False,
) -> dict:
    """Run ``Runner.test`` on a TinySaver config and return its metrics (on every rank).

    Args:
        config: a config file, or an ``mmengine.Config`` already loaded.
        checkpoint: the base detector's checkpoint, set as ``model.base_checkpoint``.
        launcher: ``'none'`` (one process) or ``'pytorch'`` (under ``torchrun``).
        cfg_options: overrides merged into the config (``--cfg-options`` keys).
        work_dir: default: the config's ``work_dir``, else ``./work_dirs/<config name>``.
        device: where both models run in a one-process run (see :func:`place_models`); None:
            this process's GPU if any, else the CPU.
        half: fp16 inference of the saver (needs a GPU ``device``).

    Returns:
        The metrics of every evaluator metric (``coco/bbox_mAP``..., ``tinysaver/exit_ratio``...).
    """
    if launcher not in ("none", "pytorch"):
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}")
    cfg = load_config(config) if isinstance(config, (str, Path)) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not is_cascade_config(cfg):
        model = cfg.get("model")
        given = f"model type is {model.get('type')!r}" if isinstance(model, dict) else "no model dict"
        raise TinySaverInputError(f"{config}: {given}, not TinySaverDetector: test-mmdet runs a TinySaver cascade config")
    name = Path(cfg.filename).stem if cfg.filename else "tinysaver"
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or Path("work_dirs") / name)
    cfg.launcher = launcher
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"base checkpoint not found: {checkpoint}")
        cfg.model.base_checkpoint = str(checkpoint)
    _route_to(cfg.test_evaluator, os.path.join(cfg.work_dir, ROUTING_FILE))
    if launcher != "none" and not torch.cuda.is_available():
        _start_cpu_process_group(cfg)

    base_device = place_models(cfg, device, half, launcher)

    runner = Runner.from_cfg(cfg)
    if base_device is not None:  # the Runner put the model on its own choice of device
        runner.model.to(base_device)
    metrics = runner.test()
    if is_main_process():
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        atomic_write_json(
            Path(cfg.work_dir) / METRICS_FILE,
            {"metrics": metrics, "flops_convention": convention_note("flops"), "uncounted_ops": model.uncounted_ops},
            indent=2,
        )
    return metrics
