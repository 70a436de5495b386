"""Reference work computed per batch when a step first needs it, rather than all before step 1.

Why: a run that reads no units (DPO without a probe set, the Train page's first run) needs, for batch ``i``,
only that batch's frozen prefix and reference log-probs, and nothing that spans every batch (unit
statistics and signs do; runs with units still compute them up front). Computing the whole reference before
the first step made a first run on the default model wait about a minute of forward passes over all pairs
before it wrote anything; lazily, step ``i`` pays for batch ``i`` once, and every later epoch reuses it.

A late reference must still be the *base* model's: the trainable weights as they were before the first step
are kept (the last blocks only, a few tens of MB) and swapped in for the reference pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

import torch

from yfpo_core.progress import ProgressCallback, phase, report
from yfpo_core.training.readout import UnitReadout, response_statistics
from yfpo_core.training.shared_cache import digest, shared

T = TypeVar("T")


class PerBatch(Sequence[T], Generic[T]):
    """``n`` values, each computed by ``compute(i)`` on its first access and then kept."""

    def __init__(self, n: int, compute: Callable[[int], T]) -> None:
        self._compute = compute
        self._values: list[T | None] = [None] * n
        self._known = [False] * n

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not self._known[i]:
            self._values[i] = self._compute(i)
            self._known[i] = True
        return self._values[i]  # type: ignore[return-value]

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(len(self)))

    @property
    def computed(self) -> int:
        """How many values have been computed so far."""
        return sum(self._known)


@torch.no_grad()
def reference_work(trainer: Any, progress: ProgressCallback | None = None
                   ) -> tuple[UnitReadout, Sequence[torch.Tensor], Sequence[torch.Tensor]]:
    """The readout, the reference log-probs and the reference activation scores of every batch of ``trainer``
    (a :class:`~yfpo_core.training.trainer.YFPOTrainer` whose policy is still the base model)."""
    t, n = trainer, len(trainer.batches)
    if not t.layout.units and not t.probe_layout.units:
        return _lazy(t, progress)
    prefix = phase(progress, "frozen prefix", n)
    for i in range(n):
        t.prefix_for(i)
        report(prefix, i + 1, n)
    reference = phase(progress, "reference log-probs", n)

    def compute() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        passes = []  # (log-probs, unit activations) of each batch
        for i in range(n):
            passes.append(tuple(x.detach() for x in t.policy_pass(i)))
            report(reference, i + 1, n)
        return [p[0] for p in passes], [p[1] for p in passes]

    key = ("reference", t.base_fingerprint, t.start_layer,
           t.units_key(t.layout.groups_from(0) if t.layout.units else ()),
           digest(*[x for b in t.batches for x in (b.tokens, b.response_mask)]))
    ref_logps, ref_acts = shared(key, compute)
    report(reference, n, n)  # also when an earlier run's identical work answered from the shared cache
    mean, std = response_statistics(ref_acts, t.batches, len(t.layout.units), t.device)
    readout = UnitReadout(mean, std, t.unit_signs(t.layout), t.config.pooling, t.config.standardize)
    return readout, ref_logps, [readout.score(a, b) for a, b in zip(ref_acts, t.batches, strict=True)]


def _lazy(t: Any, progress: ProgressCallback | None
          ) -> tuple[UnitReadout, PerBatch[torch.Tensor], PerBatch[torch.Tensor]]:
    n = len(t.batches)
    report(phase(progress, "reference log-probs", n), 0, n, "computed per batch as the steps reach it")
    readout = UnitReadout(*response_statistics([], [], 0, t.device), torch.ones(0), t.config.pooling,
                          t.config.standardize)
    base = [p.detach().clone() for _, p, _ in t.params]  # the trainable weights before any step

    @torch.no_grad()
    def base_logps(i: int) -> torch.Tensor:
        trained = [p.data for _, p, _ in t.params]
        try:
            for (_, p, _), value in zip(t.params, base, strict=True):
                p.data = value
            return t.policy_pass(i)[0].detach()
        finally:
            for (_, p, _), value in zip(t.params, trained, strict=True):
                p.data = value

    def logps(i: int) -> torch.Tensor:
        b = t.batches[i]
        key = ("reference-batch", t.base_fingerprint, t.start_layer, digest(b.tokens, b.response_mask))
        return shared(key, lambda: base_logps(i))

    scores = PerBatch(n, lambda i: torch.zeros(t.batches[i].tokens.shape[0], device=t.device))
    return readout, PerBatch(n, logps), scores
