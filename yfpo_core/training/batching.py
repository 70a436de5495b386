"""Preference pairs as token batches: ``[chosen_1..chosen_B, rejected_1..rejected_B]``, right-padded.

As in TRL's ``DataCollatorForPreference``, the chosen and rejected sequences of a batch go through the
model together and are split with ``chunk(2)``. Every sequence is ``prompt + response + end-of-response``;
``response_mask`` marks the response tokens (what the DPO log-probabilities sum over and what the unit
activation score pools over).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int

from yfpo_core.errors import YfpoError
from yfpo_core.scoring.logprobs import right_pad
from yfpo_core.models.base import LoadedModel


@dataclass
class PairBatch:
    """One training batch of ``n_pairs`` pairs.

    Attributes:
        pair_ids: The pairs, in order.
        tokens: ``[2 * n_pairs, T]``: chosen rows first, then rejected rows.
        response_mask: ``[2 * n_pairs, T]``: 1 on response tokens.
    """

    pair_ids: list[str]
    tokens: Int[torch.Tensor, "rows T"]
    response_mask: Int[torch.Tensor, "rows T"]

    @property
    def n_pairs(self) -> int:
        return len(self.pair_ids)

    def to(self, device: str | torch.device) -> PairBatch:
        return PairBatch(self.pair_ids, self.tokens.to(device), self.response_mask.to(device))


def divergent_mask(tokens: Int[torch.Tensor, "rows T"], response_mask: Int[torch.Tensor, "rows T"]
                   ) -> Int[torch.Tensor, "rows T"]:
    """Response positions from the first one where a pair's chosen and rejected rows differ, for both rows.

    Why: a pair that corrupts only the final answer shares most of its response; the units' mean over all
    response tokens is then almost the same for both rows, and the neuron margin vanishes. Pooling over
    where the responses part tells the units' reaction to the difference. Rows are aligned from the start
    (same prompt, right padding); a pair with identical responses keeps its whole response.
    """
    n = tokens.shape[0] // 2
    chosen, rejected = tokens[:n], tokens[n:]
    in_response = response_mask[:n].bool() | response_mask[n:].bool()
    differs = ((chosen != rejected) | (response_mask[:n] != response_mask[n:])) & in_response
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand(n, -1)
    big = tokens.shape[1]
    first = torch.where(differs, positions, big)
    first = first.min(dim=1).values  # [n]; ``big`` when the responses are identical
    start = torch.where(first == big, torch.zeros_like(first), first)
    after = (positions >= start[:, None]).repeat(2, 1)
    return response_mask * after.to(response_mask.dtype)


class BatchError(YfpoError, ValueError):
    """A pair does not fit ``max_length`` (a ``ValueError`` too, for callers that caught that before)."""


def encode_pair_rows(model: LoadedModel, question: str, responses: Sequence[str], max_length: int
                     ) -> list[tuple[list[int], int]]:
    """Token ids of ``prompt + response + end`` for each response, and where the response starts.

    Responses longer than ``max_length`` in total are cut on the right (the prompt is kept whole)."""
    fmt = model.prompt_format
    prompt = model.encode_prompt(fmt.prompt(question))
    if len(prompt) >= max_length:
        raise BatchError(f"a prompt of {len(prompt)} tokens leaves no room for the response within {max_length} "
                         "tokens (max_length, capped by the model's context): raise max_length or shorten it")
    rows = []
    for response in responses:
        ids = prompt + model.encode(response + fmt.end_of_response)
        rows.append((ids[:max_length], len(prompt)))
    return rows


def collate_pairs(model: LoadedModel, pairs: Sequence, max_length: int = 384) -> PairBatch:
    """Build a :class:`PairBatch` from preference pairs (objects with ``id``, ``question``, ``chosen``,
    ``rejected``)."""
    chosen = [encode_pair_rows(model, p.question, [p.chosen], max_length)[0] for p in pairs]
    rejected = [encode_pair_rows(model, p.question, [p.rejected], max_length)[0] for p in pairs]
    rows = chosen + rejected
    for ids, start in rows:
        if len(ids) <= start:
            raise BatchError(f"a response is empty after truncation to {max_length} tokens: raise max_length")
    tokens, mask = right_pad([ids for ids, _ in rows], model.pad_token_id)
    response = torch.zeros_like(mask)
    for row, (ids, start) in enumerate(rows):
        response[row, start: len(ids)] = 1
    return PairBatch([p.id for p in pairs], tokens, response)


def make_batches(model: LoadedModel, pairs: Sequence, batch_pairs: int, max_length: int = 384) -> list[PairBatch]:
    """Consecutive batches of ``batch_pairs`` pairs (the last one may be smaller)."""
    return [collate_pairs(model, pairs[i: i + batch_pairs], max_length) for i in range(0, len(pairs), batch_pairs)]
