"""Preference pairs as token batches (yfpo_core.training.batching)."""

from __future__ import annotations

import torch


def test_divergent_mask_pools_from_where_the_responses_part():
    from yfpo_core.training.batching import divergent_mask

    # Two pairs; prompt = first 2 tokens; pair 0 differs at position 4, pair 1 has identical responses,
    # the rejected row of pair 0 is one token shorter (padding 0 at the end).
    tokens = torch.tensor([[9, 9, 5, 6, 7, 8], [9, 9, 5, 5, 5, 5],
                           [9, 9, 5, 6, 3, 0], [9, 9, 5, 5, 5, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1],
                         [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    assert divergent_mask(tokens, mask).tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1],
                                                     [0, 0, 0, 0, 1, 0], [0, 0, 1, 1, 1, 1]]
