"""One FLOPs counter for every model the cascade runs, at the input shape actually run.

Convention: FLOPs = 2 * MACs (a multiply-add counts as two), as Ultralytics and most detection
papers report GFLOPs. Counting is done by ``torch.utils.flop_counter.FlopCounterMode``, which
counts matrix products and convolutions (``aten.convolution``, ``mm``, ``addmm``, ``bmm``,
attention kernels, ...). Every other aten op that runs is listed by name in
:attr:`FlopCount.uncounted_ops` (elementwise activations, additions, pooling, upsampling, NMS
inside a model, ...), so a table can say what its numbers leave out instead of ignoring it
silently. Ops that only move or reshape data are not listed: they do no arithmetic.

Counting does not run the model: :func:`count_flops_without_running` runs the forward on fake tensors
(``torch._subclasses.FakeTensorMode``: shapes and dtypes propagate, no arithmetic and no memory for
activations), so a new input shape costs a fraction of a second instead of a forward pass (minutes
for Co-DINO at 1280x1914 on a CPU). The count is the same as on real tensors: the counter reads only
shapes. Tensors that hold input *shapes* (DETR-style ``spatial_shapes``) keep their values, so the
code that sizes its work by them runs as it does for real. :func:`count_flops` is the reference
that runs the forward on real tensors.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator

import torch
import torch._subclasses.fake_tensor as fake_tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from tinysaver_det.core.cost import FLOPS_CONVENTION  # noqa: E402,F401  (re-exported: the counting lives here)

# aten ops that do no arithmetic: layout, copies, creation, indexing. Not worth listing as uncounted.
_NO_ARITHMETIC = {
    "alias", "as_strided", "device", "cat", "clone", "contiguous", "copy_", "detach", "empty", "empty_like",
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


#: Tensors of at most this many elements computed only from constants keep their values under fake
#: tensors: enough for the per-level ``(h, w)`` shape tables of multi-scale detectors, far too few for
#: any activation.
_SHAPE_TABLE_NUMEL = 64


def _shape_as_constant(tensor: torch.Tensor) -> torch.Tensor:
    """``torch._shape_as_tensor`` from the shape alone (the original reads the tensor's storage, which a
    fake tensor has not); built with ``torch.tensor``, so fake mode keeps it as a constant."""
    return torch.tensor(list(tensor.shape))


def _small_constants(model: torch.nn.Module) -> list[torch.Tensor]:
    """The model's small tensors that are not weights (buffers and plain attributes such as strides):
    fake mode keeps their values, as it does for the tensors code builds from Python numbers."""
    found = [buffer for buffer in model.buffers() if buffer.numel() <= _SHAPE_TABLE_NUMEL]
    for module in model.modules():
        found += [value for value in vars(module).values()
                  if type(value) is torch.Tensor and value.numel() <= _SHAPE_TABLE_NUMEL]
    return found


@contextmanager
def _fake_tensors(model: torch.nn.Module) -> Iterator[None]:
    """Run the block on fake tensors, with the model's real weights seen as fake, and leave ``model``
    as it was: a module that caches tensors in Python attributes during its forward (Ultralytics'
    detect head caches its anchors per shape) would otherwise keep fake ones."""
    saved = [(module, dict(module.__dict__)) for module in model.modules()]
    shape_as_tensor, constant_numel = torch._shape_as_tensor, fake_tensor.CONSTANT_NUMEL_LIMIT
    torch._shape_as_tensor, fake_tensor.CONSTANT_NUMEL_LIMIT = _shape_as_constant, _SHAPE_TABLE_NUMEL
    try:
        with fake_tensor.FakeTensorMode(allow_non_fake_inputs=True) as mode:
            # e.g. the strides a detect head reads with .item(); the converter remembers each fake
            # tensor only while it is alive, hence the list.
            constants = [mode.fake_tensor_converter.from_real_tensor(mode, tensor, make_constant=True)
                         for tensor in _small_constants(model)]
            yield
            del constants
    finally:
        torch._shape_as_tensor, fake_tensor.CONSTANT_NUMEL_LIMIT = shape_as_tensor, constant_numel
        for module, attributes in saved:
            module.__dict__.clear()
            module.__dict__.update(attributes)


def _count(forward: Callable[[], object], fake_model: torch.nn.Module | None) -> FlopCount:
    counter = FlopCounterMode(display=False)
    recorder = _OpRecorder()
    with torch.no_grad():
        if fake_model is None:
            with counter, recorder:
                forward()
        else:
            with _fake_tensors(fake_model), counter, recorder:
                forward()
    counted = {op.__name__ for op in counter.flop_registry}
    uncounted = sorted(op for op in recorder.ops if op not in counted and op.rstrip("_") not in _NO_ARITHMETIC)
    return FlopCount(counter.get_total_flops() / 1e9, tuple(uncounted))


def count_flops_without_running(forward: Callable[[], object], model: torch.nn.Module) -> FlopCount:
    """Count the FLOPs of calling ``forward()`` once, without running ``model`` (fake tensors).

    Args:
        forward: a zero-argument callable that makes its input (one image; under fake tensors it is
            fake too) and runs ``model`` on it.
        model: the module ``forward`` runs: its weights are read as fake tensors, and its modules'
            Python attributes are restored afterwards.

    Returns:
        The counted GFLOPs and the names of the ops that ran but were not counted.

    Raises:
        Whatever the forward raises on fake tensors: an op whose output shape depends on values
        (``nonzero``, boolean masks), ``.item()`` on a computed tensor, a compiled extension that reads
        memory (mmcv's NMS). Callers count a part that runs, or fall back to :func:`count_flops`.

    >>> conv = torch.nn.Conv2d(3, 8, 3, bias=False)
    >>> count = count_flops_without_running(lambda: conv(torch.zeros(1, 3, 10, 10)), conv)
    >>> round(count.gflops * 1e9)  # 2 * (8*8 outputs * 8 channels) * (3*3*3 MACs each)
    27648
    """
    return _count(forward, model)


def count_flops_running_if_needed(forward: Callable[[], object], model: torch.nn.Module, name: str) -> FlopCount:
    """:func:`count_flops_without_running`, or, for a model that fake tensors cannot run (a custom op,
    a value read with ``.item()``), :func:`count_flops` with a warning naming ``name``: the same count,
    at the cost of a forward pass.
    """
    try:
        return count_flops_without_running(forward, model)
    except Exception as error:  # any op fake tensors cannot run (see count_flops_without_running)
        warnings.warn(f"{name}: fake tensors cannot run its forward ({type(error).__name__}); its GFLOPs are "
                      "counted on a real forward", stacklevel=2)
    return count_flops(forward)


def count_flops(forward: Callable[[], object]) -> FlopCount:
    """Count the FLOPs of calling ``forward()`` once on real tensors (no gradients): the reference that
    :func:`count_flops_without_running` is tested against, and the fallback for a model that fake
    tensors cannot run.

    >>> conv = torch.nn.Conv2d(3, 8, 3, bias=False)
    >>> round(count_flops(lambda: conv(torch.zeros(1, 3, 10, 10))).gflops * 1e9)
    27648
    """
    return _count(forward, None)


class FlopsCache:
    """Per-image FLOPs of one model, counted once per input shape.

    Letterboxed and rectangular batches give different input shapes per batch; the count for each
    shape is made on first use by ``count_for_shape(shape)`` (:func:`count_flops_without_running` of
    one image at that shape, usually).

    Args:
        count_for_shape: given a shape key, the FLOPs of one image at that shape.
    """

    def __init__(self, count_for_shape: Callable[[Hashable], FlopCount]) -> None:
        self._count_for_shape = count_for_shape
        self._counts: dict[Hashable, FlopCount] = {}

    def __call__(self, shape: Hashable) -> FlopCount:
        if shape not in self._counts:
            self._counts[shape] = self._count_for_shape(shape)
        return self._counts[shape]

    @property
    def uncounted_ops(self) -> tuple[str, ...]:
        """Union of the uncounted op names over every shape counted so far."""
        return tuple(sorted({op for count in self._counts.values() for op in count.uncounted_ops}))
