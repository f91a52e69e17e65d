"""Which process of a ``torchrun`` job this is, and the process group around a sharded run.

``torchrun`` starts one process per rank and tells each who it is through environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, and the rendezvous address). :func:`process_group` reads
them, starts ``torch.distributed`` (gloo for a CPU device, nccl for a CUDA one) and yields a
:class:`DistContext`: the rank, the world size, and the few collectives a sharded run needs (a
barrier, gathering small objects such as error messages, broadcasting the summary). The data itself
travels through files in the run directory, not through the process group, so that a killed rank
loses nothing it committed (``../shared/STYLE.md`` section 6).

A process started without ``torchrun`` (or with one rank) is rank 0 of 1: no process group is
started and torch is never imported, so this module costs nothing to a one-process run and keeps
the library framework-lazy.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Mapping

from tinysaver_det.errors import EveryRankInputError, TinySaverInputError
from tinysaver_det.lock import RunLock

#: How long a collective waits for the slowest rank. A sharded run meets at a barrier after every
#: rank's shard, and shards can take hours longer than each other (more images routed to the base,
#: a slower node); a rank that dies does not make the others wait this long, because torchrun ends
#: the whole job when one of its processes fails.
DEFAULT_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class DistContext:
    """This process's place in a job; the default is the one process of a plain run.

    Attributes:
        rank: 0 .. world_size - 1 (``RANK``); rank 0 merges the shards.
        world_size: number of processes (``WORLD_SIZE``).
        local_rank: index on this node (``LOCAL_RANK``): the GPU a CUDA rank uses.
        backend: ``"gloo"`` or ``"nccl"`` when a process group is up, else None.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank reaches this point (nothing to wait for in one process)."""
        if self.backend is not None:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable, small), in rank order, on every rank."""
        if self.backend is None:
            return [obj]
        import torch.distributed as dist

        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), on every rank."""
        if self.backend is None:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def raise_if_any(self, error: BaseException | None) -> None:
        """Raise on every rank when any rank had an input error; a collective, so every rank calls it.

        A rank that raised alone would leave the others waiting at the next collective; here all
        ranks stop together, each with one :class:`TinySaverInputError` naming every failing rank.
        """
        if self.backend is None:  # no process group: this process knows its own error only
            if error is not None and not self.sharded:
                raise error  # one process: the error as it was raised, type and all
            if error is not None:
                raise TinySaverInputError(f"rank {self.rank}: {error}")
            return
        messages = self.gather(None if error is None else str(error))
        failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
        if failed:  # every rank raises this same message; rank 0 prints it
            raise EveryRankInputError("; ".join(f"rank {rank}: {message}" for rank, message in failed),
                                      printed_here=self.is_main)


SINGLE_PROCESS = DistContext()


def environment_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """The integer torchrun put in variable ``name`` of ``environ`` (default ``os.environ``), or ``default``.

    Raises:
        TinySaverInputError: the variable is set but not an integer.
    """
    text = (os.environ if environ is None else environ).get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise TinySaverInputError(f"environment variable {name} must be an integer, got {text!r}") from None


def environment_context(environ: Mapping[str, str] | None = None) -> DistContext:
    """Rank, world size and local rank as ``torchrun`` sets them in ``environ`` (default ``os.environ``;
    rank 0 of 1 without torchrun); no backend yet.

    Raises:
        TinySaverInputError: the variables are not integers, or the rank is outside the world.
    """
    world_size = environment_int("WORLD_SIZE", 1, environ)
    rank = environment_int("RANK", 0, environ)
    local_rank = environment_int("LOCAL_RANK", 0, environ)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise TinySaverInputError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}"
        )
    return DistContext(rank, world_size, local_rank)


def is_cuda_device(device: str | None) -> bool:
    """Whether a ``--device`` string names a CUDA device (``"0"``, ``"cuda"``, ``"cuda:1"``, ``"0,1"``).

    >>> [is_cuda_device(d) for d in ("cpu", "0", "cuda:1", "mps", None)]
    [False, True, True, False, False]
    """
    if device is None:
        return False
    text = str(device).strip().lower()
    return text.startswith("cuda") or text.replace(",", "").isdigit()


def backend_for(device: str | None) -> str:
    """The process-group backend for a device: nccl for CUDA, gloo otherwise (CPU).

    >>> backend_for("cpu"), backend_for("cuda:0")
    ('gloo', 'nccl')
    """
    return "nccl" if is_cuda_device(device) else "gloo"


def rank_device(device: str | None, context: DistContext) -> str | None:
    """The device this rank runs its models on.

    In one process ``device`` is used as given. Under torchrun a CUDA device means "this rank's
    GPU": rank ``LOCAL_RANK`` of a node uses ``cuda:LOCAL_RANK``, as DDP does; a CPU device stays.

    >>> rank_device("0", DistContext(rank=3, world_size=4, local_rank=1, backend="nccl"))
    'cuda:1'
    >>> rank_device("cpu", DistContext(rank=1, world_size=2, local_rank=1, backend="gloo"))
    'cpu'
    """
    if context.sharded and is_cuda_device(device):
        return f"cuda:{context.local_rank}"
    return device


@contextmanager
def process_group(device: str | None = "cpu", timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[DistContext]:
    """This process's :class:`DistContext`, with ``torch.distributed`` started for the block when
    ``torchrun`` runs more than one process, and destroyed after it.

    A process group that the caller started already is used as it is and left up.

    Args:
        device: the models' device (``--device``): CUDA gives nccl (and each rank its
            ``LOCAL_RANK`` GPU), anything else gloo.
        timeout: how long a collective waits for the slowest rank (:data:`DEFAULT_TIMEOUT`).

    Raises:
        TinySaverInputError: an inconsistent torchrun environment, or a CUDA device without CUDA.
    """
    context = environment_context()
    if not context.sharded:
        yield context
        return
    import torch
    import torch.distributed as dist

    backend = backend_for(device)
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise TinySaverInputError(f"--device {device} asks for CUDA, but torch sees no GPU on this node")
        if context.local_rank >= torch.cuda.device_count():
            raise TinySaverInputError(
                f"rank {context.rank} (LOCAL_RANK {context.local_rank}) needs cuda:{context.local_rank}, but this node "
                f"has {torch.cuda.device_count()} GPU(s): start at most that many processes per node "
                "(torchrun --nproc_per_node), one per GPU"
            )
        torch.cuda.set_device(context.local_rank)
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group(backend=backend, timeout=timeout)
    context = DistContext(context.rank, context.world_size, context.local_rank, dist.get_backend())
    try:
        yield context
        if started_here:
            # Every rank leaves together: a rank that tore its group down while another still finished the
            # last collective was aborted by gloo ("terminate called without an active exception").
            dist.barrier()
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()


@contextmanager
def run_job(device: str | None, lock: RunLock) -> Iterator[DistContext]:
    """:func:`process_group` for a tool that writes one run, with rank 0 (the one process of a plain
    run) holding the run's ``lock`` for the whole block: a second writer is refused at once, before
    any model loads (the other ranks lock their shards in the runner).

    Raises:
        TinySaverInputError: as :func:`process_group`.
        RunLockedError: another process writes the run.
    """
    with process_group(device) as context, lock if context.is_main else nullcontext():
        yield context


def refuse_several_processes(what: str, why: str) -> None:
    """Refuse to run ``what`` under a ``torchrun`` job of several processes, because ``why`` (it has no
    shards to cut).

    Raises:
        EveryRankInputError: on every rank, printed by rank 0 only: one line that says to run one process.
    """
    context = environment_context()
    if context.sharded:
        raise EveryRankInputError(
            f"{what} runs in one process here ({why}), but this is a torchrun job of {context.world_size} "
            "processes: run it without torchrun",
            printed_here=context.is_main,
        )
