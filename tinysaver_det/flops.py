"""One FLOPs counter for every model the cascade runs, at the input shape actually run.

Convention: FLOPs = 2 * MACs (a multiply-add counts as two), as Ultralytics and most detection
papers report GFLOPs. Counting is done by ``torch.utils.flop_counter.FlopCounterMode``, which
counts matrix products and convolutions (``aten.convolution``, ``mm``, ``addmm``, ``bmm``,
attention kernels, ...). Every other aten op that runs is listed by name in
:attr:`FlopCount.uncounted_ops` (elementwise activations, additions, pooling, upsampling, NMS
inside a model, ...), so a table can say what its numbers leave out instead of ignoring it
silently. Ops that only move or reshape data are not listed: they do no arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from tinysaver_det.core.cost import FLOPS_CONVENTION  # noqa: E402,F401  (re-exported: the counting lives here)

# aten ops that do no arithmetic: layout, copies, creation, indexing. Not worth listing as uncounted.
_NO_ARITHMETIC = {
    "alias", "as_strided", "cat", "clone", "contiguous", "copy_", "detach", "empty", "empty_like",
    "empty_strided", "expand", "flatten", "full", "full_like", "index_select", "lift_fresh", "new_empty",
    "new_zeros", "new_ones", "ones", "ones_like", "permute", "reshape", "select", "slice", "split",
    "split_with_sizes", "squeeze", "stack", "t", "transpose", "unbind", "unsqueeze", "view", "zeros",
    "zeros_like", "_to_copy", "_unsafe_view", "arange", "chunk", "fill_", "zero_", "gather", "index",
    "_local_scalar_dense", "scalar_tensor", "sym_size", "sym_stride", "sym_numel", "is_same_size",
    "masked_fill", "masked_fill_", "repeat", "meshgrid", "split_copy", "view_copy", "transpose_copy",
    "linspace", "new_full", "nonzero", "topk", "sort", "argsort", "where", "cumsum", "max", "min", "eq", "ne", "lt",
    "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "bitwise_and", "bitwise_or", "any", "all",
}


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass of one image at one input shape.

    Attributes:
        gflops: counted GFLOPs (1e9 FLOPs, FLOPs = 2 * MACs).
        uncounted_ops: names of aten ops that ran with arithmetic but are not counted.
    """

    gflops: float
    uncounted_ops: tuple[str, ...]


class _OpRecorder(TorchDispatchMode):
    """Records the name of every aten op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def count_flops(forward: Callable[[], object]) -> FlopCount:
    """Count the FLOPs of calling ``forward()`` once (no gradients).

    Args:
        forward: a zero-argument callable running the model on its input (one image).

    Returns:
        The counted GFLOPs and the names of the ops that ran but were not counted.

    >>> conv = torch.nn.Conv2d(3, 8, 3, bias=False)
    >>> count = count_flops(lambda: conv(torch.zeros(1, 3, 10, 10)))
    >>> round(count.gflops * 1e9)  # 2 * (8*8 outputs * 8 channels) * (3*3*3 MACs each)
    27648
    """
    counter = FlopCounterMode(display=False)
    recorder = _OpRecorder()
    with torch.no_grad(), counter, recorder:
        forward()
    counted = {op.__name__ for op in counter.flop_registry}
    uncounted = sorted(op for op in recorder.ops if op not in counted and op.rstrip("_") not in _NO_ARITHMETIC)
    return FlopCount(counter.get_total_flops() / 1e9, tuple(uncounted))


class FlopsCache:
    """Per-image FLOPs of one model, counted once per input shape.

    Letterboxed and rectangular batches give different input shapes per batch; the count for each
    shape is computed on first use by running ``forward_for_shape(shape)`` under the counter.

    Args:
        forward_for_shape: given a shape key, returns a zero-argument callable running one image.
    """

    def __init__(self, forward_for_shape: Callable[[Hashable], Callable[[], object]]) -> None:
        self._forward_for_shape = forward_for_shape
        self._counts: dict[Hashable, FlopCount] = {}

    def __call__(self, shape: Hashable) -> FlopCount:
        if shape not in self._counts:
            self._counts[shape] = count_flops(self._forward_for_shape(shape))
        return self._counts[shape]

    @property
    def uncounted_ops(self) -> tuple[str, ...]:
        """Union of the uncounted op names over every shape counted so far."""
        return tuple(sorted({op for count in self._counts.values() for op in count.uncounted_ops}))
