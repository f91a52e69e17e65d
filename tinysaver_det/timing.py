"""Honest model timing and device checks, shared by every adapter.

On CUDA a model call returns as soon as its kernels are queued; a ``perf_counter`` around it
measures the queueing, not the work. :class:`ModelClock` therefore synchronises the device before
and after each call, and keeps the one-time set-up (building a predictor, moving weights to the
device, cuDNN autotuning, lazy allocations) out of the time with a warm-up before the first call.

torch is imported only when already loaded (an adapter loaded it), so this module stays importable
without any framework.
"""

from __future__ import annotations

import re
import sys
from time import perf_counter
from typing import Callable, TypeVar

from tinysaver_det.errors import TinySaverInputError

T = TypeVar("T")


def cuda_in_use() -> bool:
    """Whether this process has initialised CUDA (then a timing must synchronise)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def synchronize() -> None:
    """Wait for every queued CUDA kernel (nothing to do when CUDA is not in use)."""
    if cuda_in_use():
        sys.modules["torch"].cuda.synchronize()


class ModelClock:
    """Times one model's calls: device synchronised around each, never the one-time set-up.

    The first call is preceded by ``warmup()`` when the caller gives one (a cheap call that pays for
    lazy set-up: Ultralytics builds its predictor and moves the model to the device on its first
    predict). Without one, a first call that ran on CUDA is run again and only the second is timed.

    >>> clock = ModelClock()
    >>> result, seconds = clock.time(lambda: 41 + 1)
    >>> result, seconds >= 0
    (42, True)
    """

    def __init__(self) -> None:
        self.warm = False

    def time(self, call: Callable[[], T], warmup: Callable[[], object] | None = None) -> tuple[T, float]:
        """Run ``call()`` and return its result and the seconds it took, synchronised."""
        if not self.warm:
            self.warm = True
            if warmup is not None:
                warmup()
            else:
                result, seconds = self._timed(call)
                if not cuda_in_use():
                    return result, seconds
        return self._timed(call)

    @staticmethod
    def _timed(call: Callable[[], T]) -> tuple[T, float]:
        synchronize()
        start = perf_counter()
        result = call()
        synchronize()
        return result, perf_counter() - start


def default_device() -> str:
    """``cuda:0`` when this machine has a CUDA device, else ``cpu`` (Ultralytics' own default)."""
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


_CUDA_DEVICE = re.compile(r"^(?:cuda:)?(\d+(?:,\d+)*)$|^cuda$")


def check_device(device: str | int | None) -> str:
    """The torch device string for ``device``, or a :class:`TinySaverInputError` if this machine lacks it.

    Accepts what Ultralytics and mmdet accept: ``cpu``, ``cuda``, ``cuda:N``, a bare GPU index ``N``
    (or ``N,M``), ``mps``; ``None`` means ``cpu``. Checked before any model is built or any file
    written, so a run on a missing GPU stops at once with one line.

    >>> check_device(None), check_device("cpu")
    ('cpu', 'cpu')
    >>> check_device("tpu")
    Traceback (most recent call last):
    ...
    tinysaver_det.errors.TinySaverInputError: device 'tpu': not a device (cpu, cuda, cuda:N, N, mps)
    """
    text = "cpu" if device is None else str(device).strip().lower()
    if text == "cpu":
        return text
    match = _CUDA_DEVICE.match(text)
    if text != "mps" and match is None:
        raise TinySaverInputError(f"device {device!r}: not a device (cpu, cuda, cuda:N, N, mps)")
    import torch

    if text == "mps":
        if not torch.backends.mps.is_available():
            raise TinySaverInputError(f"device {device!r}: this machine has no MPS device; use --device cpu")
        return text
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    indices = [0] if match.group(1) is None else [int(i) for i in match.group(1).split(",")]
    missing = [i for i in indices if i >= count]
    if missing:
        have = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise TinySaverInputError(f"device {device!r}: this machine has {have}; use --device cpu")
    return text
