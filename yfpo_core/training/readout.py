"""The neuron score A(x, y) of a unit set: which activations, standardised how, counted with which sign.

A :class:`UnitReadout` turns the unit activations of a batch (``[rows, T, u]``, read inside the policy's
graph) into one score per row. Three choices decide whether the margin ``A(y_w) - A(y_l)`` can act as a
lever at all (measured in the README's "The experiment"):

* **Where** (``pooling``): a pair that corrupts only the final answer shares every token up to it, so the
  mean over the whole response hardly differs between the two rows; ``diverge`` averages from the first
  token where the rows differ.
* **Scale** (``standardize``): each unit's activation is standardised with the base model's mean and
  standard deviation over the training responses, so a few large units do not dominate.
* **Direction** (``sign``): averaging units whose effects on the answer have opposite signs cancels the
  margin. Each unit counts with the sign of its effect on the target:

  - ``pairs`` (default): the sign of ``d log pi(y_w | x) / d a_u`` summed over the pooled positions of the
    chosen responses of the training pairs, under the base model (:func:`unit_directions`). Needs nothing
    from the set, so imported sets work, and it measures the effect in the very setting the term trains in.
  - ``set``: the per-unit ``direction`` (+1/-1) stored in the neuron set; units without one fall back to
    ``pairs`` (with a warning).
  - ``score``: the sign of the unit's attribution score (relevance sign: the sign of activation x gradient).
  - ``none``: every unit counts +1 (the paper's plain average).

With the sign, "more margin" means "more of what raises the chosen answer's log-prob" for every unit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from yfpo_core.training.batching import PairBatch, divergent_mask
from yfpo_core.training.losses import activation_score



def pooling_mask(batch: PairBatch, pooling: str) -> tuple[Int[torch.Tensor, "rows T"], str]:
    """The token mask a pooling reads and the plain pooling applied over it (``diverge`` = mean over the
    positions from where the pair's responses differ)."""
    if pooling == "diverge":
        return divergent_mask(batch.tokens, batch.response_mask), "mean"
    return batch.response_mask, pooling


@dataclass
class UnitReadout:
    """Per-unit statistics and signs, and the pooling: everything that turns activations into A(x, y).

    Attributes:
        mean, std: ``[u]`` base-model statistics over response tokens (used when ``standardize``).
        signs: ``[u]`` +1/-1 per unit (all +1 for ``sign = none``).
        pooling: One of :data:`yfpo_core.training.config.POOLINGS`.
        standardize: Whether to standardise.
    """

    mean: Float[torch.Tensor, "u"]
    std: Float[torch.Tensor, "u"]
    signs: Float[torch.Tensor, "u"]
    pooling: str = "diverge"
    standardize: bool = True

    def score(self, acts: Float[torch.Tensor, "rows T u"], batch: PairBatch) -> Float[torch.Tensor, "rows"]:
        """A(x, y) of every row of ``batch`` (zeros when the set is empty)."""
        if acts.shape[-1] == 0:
            return torch.zeros(acts.shape[0], device=acts.device)
        mask, pooling = pooling_mask(batch, self.pooling)
        return activation_score(acts, mask, pooling,  # type: ignore[arg-type]
                                mean=self.mean.to(acts.device) if self.standardize else None,
                                std=self.std.to(acts.device) if self.standardize else None,
                                signs=self.signs.to(acts.device))

    def margin(self, acts: Float[torch.Tensor, "rows T u"], batch: PairBatch) -> Float[torch.Tensor, "pairs"]:
        """``A(x, y_w) - A(x, y_l)`` per pair (rows are chosen first, then rejected)."""
        chosen, rejected = self.score(acts, batch).chunk(2)
        return chosen - rejected


def response_statistics(acts: Sequence[torch.Tensor], batches: Sequence[PairBatch], n_units: int,
                        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (clamped at 1e-6) of each unit over every response token."""
    if n_units == 0:
        return torch.zeros(0, device=device), torch.ones(0, device=device)
    values = torch.cat([a[b.response_mask.bool()] for a, b in zip(acts, batches, strict=True)])
    if values.shape[0] < 2:
        return values.mean(0), torch.ones(n_units, device=values.device)
    return values.mean(0), values.std(0).clamp_min(1e-6)


def signs_from_gradient(gradient_sum: Float[torch.Tensor, "u"]) -> Float[torch.Tensor, "u"]:
    """+1 where the summed gradient is >= 0, -1 where it is negative (a unit with no effect counts +1)."""
    return torch.where(gradient_sum < 0, -1.0, 1.0).to(torch.float32)


def signs_from_scores(scores: Sequence[float | None] | None, n_units: int) -> Float[torch.Tensor, "u"]:
    """The sign of each unit's attribution score (+1 for a missing or zero score)."""
    if scores is None:
        return torch.ones(n_units)
    return torch.tensor([-1.0 if s is not None and s < 0 else 1.0 for s in scores])


def unit_directions(unit_gradients: Callable[[int], Float[torch.Tensor, "rows T u"]],
                    batches: Sequence[PairBatch], pooling: str) -> Float[torch.Tensor, "u"]:
    """Sum over the training batches of ``d sum_pairs log pi(y_w | x) / d a_u`` at the pooled positions of
    the chosen rows; its signs are the units' directions (:func:`signs_from_gradient`).

    Args:
        unit_gradients: ``i -> [rows, T, u]``, the gradient of the chosen rows' summed log-probs of batch ``i``
            with respect to each unit's activation at each position (for an SAE feature: the gradient at its
            hook projected on the feature's decoder direction).
        batches: The training batches.
        pooling: The readout's pooling (the positions the margin reads).
    """
    total: torch.Tensor | None = None
    for i, batch in enumerate(batches):
        grad = unit_gradients(i)
        n = batch.n_pairs
        mask, _ = pooling_mask(batch, pooling)
        summed = (grad[:n] * mask[:n, :, None].to(grad.dtype)).sum((0, 1)).detach().cpu()
        total = summed if total is None else total + summed
    return total if total is not None else torch.zeros(0)


def stored_directions(entries: Mapping[str, int | float | None], labels: Sequence[str]) -> list[float | None]:
    """The set's per-unit ``direction`` values in the order of ``labels`` (None where a unit has none)."""
    out: list[float | None] = []
    for label in labels:
        value = entries.get(label)
        out.append(None if value is None else (-1.0 if float(value) < 0 else 1.0))
    return out
