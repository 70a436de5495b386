"""Data-parallel runs of ``yfpo locate``, ``ablate``, ``eval``, ``index build`` and ``faithfulness`` under
``torchrun`` / ``accelerate launch``.

The heavy commands are a *map* over problems (attribution, ranking, generation: each problem on its own;
the index: each text) followed by a *reduce* (means, top-k, accuracies; the index merges per-process
statistics, see :mod:`yfpo_core.analysis.index_state`). Only the map is spread: each process takes the problems
``i`` with ``i % world == rank`` (deterministic, and round-robin keeps long and short problems mixed), the
per-problem results travel to rank 0 with ``torch.distributed.gather_object``, and rank 0 runs the same
reduce as one process on the same list in the same order. That is why N processes give one process's
answer: only the per-problem values can differ, and only where batching groups problems differently.

Objects travel over a ``gloo`` group even when the compute group is NCCL: pickled per-problem tensors
then never pass through GPU memory.

**Failures.** A process that fails must not leave the others waiting in a collective forever. Every
exchange starts with a status round (:meth:`Distributed.exchange`, an ``all_gather_object``); a process
whose work raised calls the same round from :func:`launched` with its error instead of its value, so the
rounds pair up, every process learns that (and where) something failed, and all raise
:class:`RankFailure`. Rank 0 prints the one ``yfpo: error:`` line; nothing is written, because outputs
are written by rank 0 only after the last gather succeeded (and atomically, see :mod:`yfpo_core.atomic`).
A process killed outright (``kill -9``, out of memory) is handled by the launcher: ``torchrun`` stops the
others when one worker exits.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from yfpo_core.errors import YfpoError, user_message

T = TypeVar("T")


class RankFailure(YfpoError):
    """Some process of a distributed run failed; raised on every process so that all of them stop.

    ``quiet`` is true on every process but rank 0, which alone prints the message.
    """

    def __init__(self, message: str, quiet: bool) -> None:
        super().__init__(message)
        self.quiet = quiet


@dataclass(frozen=True)
class Distributed:
    """This process's place in a run: its rank, how many processes there are, and its device.

    One process is ``Distributed(rank=0, world=1)``: every method then works without ``torch.distributed``,
    so the commands have a single code path.
    """

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    group: Any = None  # the gloo group objects travel over (``None`` in one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> list[int]:
        """The indices of ``n`` items this process works on: ``rank, rank + world, ...``."""
        return list(range(self.rank, n, self.world))

    def shard_by_cost(self, costs: Sequence[float]) -> list[int]:
        """The indices this process works on when items cost unequal work (``costs[i]``: any proxy, e.g. a
        problem's length), ascending.

        Why: a data-parallel step lasts as long as its slowest process, and dealing items round-robin left
        one process 13% more held-out tokens than the other on the default faithfulness run. Items are dealt
        costliest first (ties: the earlier item), each to the process with the least work so far; ties go to
        the higher rank, since rank 0 also reduces and writes. Every process computes the same deal from the
        same costs."""
        if self.world == 1:
            return list(range(len(costs)))
        loads, mine = [0.0] * self.world, []
        for i in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
            rank = min(range(self.world), key=lambda r: (loads[r], -r))
            loads[rank] += costs[i]
            if rank == self.rank:
                mine.append(i)
        return sorted(mine)

    def exchange(self, value: T) -> list[T]:
        """Every process's ``value``, in rank order, on every process; :class:`RankFailure` if any process
        sent an error instead (see :func:`launched`). Use it for small things (counts, sums, flags)."""
        if self.world == 1:
            return [value]
        return [v for _, v in self._round((None, value))]

    def gather(self, indices: Sequence[int], values: Sequence[T]) -> list[T] | None:
        """Per-item ``values`` of this process's ``indices``, merged back into item order on rank 0.

        Returns the full list on rank 0 and ``None`` on the other ranks (they hold their part only)."""
        if len(indices) != len(values):
            raise ValueError(f"{len(values)} values for {len(indices)} indices")
        if self.world == 1:
            return [values[order] for order in sorted(range(len(indices)), key=lambda j: indices[j])]
        self.exchange(None)  # the status round: nobody enters the gather unless everyone got here
        import torch.distributed as dist

        parts: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(list(zip(indices, values, strict=True)), parts, dst=0, group=self.group)
        if not self.is_main:
            return None
        merged = sorted((pair for part in parts for pair in part), key=lambda pair: pair[0])
        return [value for _, value in merged]

    def map(self, items: Sequence[Any], work: Callable[[list[Any]], list[T]]) -> list[T] | None:
        """``work`` on this process's share of ``items`` (a list in, one result per item out), gathered in
        item order on rank 0 (``None`` elsewhere)."""
        mine = self.shard(len(items))
        results = work([items[i] for i in mine]) if mine else []  # more processes than items: nothing to do
        return self.gather(mine, results)

    def _round(self, payload: tuple[str | None, Any]) -> list[tuple[str | None, Any]]:
        import torch.distributed as dist

        received: list[Any] = [None] * self.world
        dist.all_gather_object(received, payload, group=self.group)
        failed = [(rank, error) for rank, (error, _) in enumerate(received) if error is not None]
        if failed:
            rank, error = failed[0]
            others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise RankFailure(f"rank {rank} of {self.world} processes failed{others}: {error}; no output was written",
                              quiet=not self.is_main)
        return received


def world_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``, set by ``torchrun`` and ``accelerate
    launch``); 1 when run directly."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def resolve_device(device: str, local_rank: int, world: int) -> str:
    """``cuda`` means this process's own GPU (``cuda:<LOCAL_RANK>``) when there are several processes."""
    if device == "cuda" and world > 1:
        return f"cuda:{local_rank}"
    return device


def describe(exc: BaseException) -> str:
    """A failure in words: the user message when it has one, else the exception's type and text (a bug;
    its traceback is printed by the process where it happened)."""
    message = user_message(exc)
    if message is not None:
        return message
    return f"{type(exc).__name__}: {exc} (a bug: the traceback is printed above)"


@contextmanager
def launched(device: str = "cpu", announce: Callable[[str], None] | None = None,
             timeout_minutes: float = 120.0) -> Iterator[Distributed]:
    """Join the launcher's process group for the duration of a command (one process: no group at all).

    On leaving, every process reports success or its error in one last status round, so a process that
    failed after the other ones finished their collectives still stops them, and all of them raise the
    same :class:`RankFailure`. Rank 0 passes its message to ``announce`` (the CLI prints its error line)
    while the others wait at a barrier: a launcher stops the remaining processes as soon as one exits, so
    without the wait rank 0 could be stopped before it has said anything. The group is destroyed on the
    way out. ``timeout_minutes`` bounds a wait in a collective: long, because a process that finishes its
    share early waits there for the slowest one (a process that dies is caught sooner, by the launcher).
    """
    world = world_size()
    if world == 1:
        yield Distributed(device=device)
        return
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device, local_rank, world)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    state = Distributed(rank=rank, world=world, device=device, group=group)
    try:
        try:
            try:
                yield state
            except RankFailure:
                raise  # every process already knows
            except Exception as exc:  # noqa: BLE001 - reported to all processes, then raised as RankFailure
                if user_message(exc) is None:
                    traceback.print_exc(file=sys.stderr)
                state._round((f"{describe(exc)}", None))
                raise AssertionError("unreachable: the status round raises") from exc  # pragma: no cover
            state._round((None, None))  # the closing round: did anyone fail after the last gather?
        except RankFailure as failure:
            if state.is_main and announce is not None:
                announce(user_message(failure) or str(failure))
                sys.stderr.flush()
            failure.quiet = announce is not None or not state.is_main
            dist.barrier(group=group)
            raise
    finally:
        dist.destroy_process_group()
