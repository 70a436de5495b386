"""How units are read into the neuron term (yfpo_core.training.readout): the direction-aware margin, signs and
unit directions, by hand."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.training.batching import PairBatch
from yfpo_core.training.readout import UnitReadout, signs_from_gradient, signs_from_scores, unit_directions

T = torch.tensor


def _batch() -> PairBatch:
    # one pair: rows [chosen, rejected]; prompt token 0, responses at 1..3; they differ from position 2
    tokens = T([[5, 1, 2, 3], [5, 1, 9, 3]])
    mask = T([[0, 1, 1, 1], [0, 1, 1, 1]])
    return PairBatch(["p"], tokens, mask)


def test_direction_aware_margin_by_hand():
    """Two units pushing the answer in opposite directions: unsigned, their margins cancel; with the sign
    of their effect, they add."""
    acts = torch.zeros(2, 4, 2)
    # unit 0 (helps the answer, sign +1): 1.0 higher on the chosen row where the rows differ
    acts[0, 2:, 0], acts[1, 2:, 0] = 1.0, 0.0
    # unit 1 (hurts the answer, sign -1): 1.0 lower on the chosen row where the rows differ
    acts[0, 2:, 1], acts[1, 2:, 1] = 0.0, 1.0
    mean, std = torch.zeros(2), torch.ones(2)
    plain = UnitReadout(mean, std, torch.ones(2), pooling="diverge").margin(acts, _batch())
    signed = UnitReadout(mean, std, T([1.0, -1.0]), pooling="diverge").margin(acts, _batch())
    # diverge pools positions 2 and 3 -> unit 0: chosen 1, rejected 0; unit 1: chosen 0, rejected 1
    assert plain.item() == pytest.approx(((1 - 0) + (0 - 1)) / 2)  # 0: cancelled
    assert signed.item() == pytest.approx(((1 - 0) - (0 - 1)) / 2)  # 1
    # mean pooling over the whole response (3 tokens) dilutes: (2/3 + 2/3) / 2
    whole = UnitReadout(mean, std, T([1.0, -1.0]), pooling="mean").margin(acts, _batch())
    assert whole.item() == pytest.approx(2 / 3)
    # standardisation: unit 1 with std 2 counts half
    scaled = UnitReadout(mean, T([1.0, 2.0]), T([1.0, -1.0]), pooling="diverge").margin(acts, _batch())
    assert scaled.item() == pytest.approx((1 + 0.5) / 2)


def test_signs_from_gradient_and_scores():
    assert signs_from_gradient(T([0.3, -0.2, 0.0])).tolist() == [1.0, -1.0, 1.0]
    assert signs_from_scores([0.5, -1.0, None], 3).tolist() == [1.0, -1.0, 1.0]
    assert signs_from_scores(None, 2).tolist() == [1.0, 1.0]


def test_unit_directions_sum_the_chosen_rows_gradient_over_the_pooled_positions():
    grad = torch.zeros(2, 4, 2)
    grad[0, :, 0] = T([9.0, 1.0, 2.0, 3.0])  # chosen row: positions 2, 3 are pooled (diverge) -> 5
    grad[0, :, 1] = T([0.0, 4.0, -1.0, -1.0])  # -> -2
    grad[1] = 100.0  # the rejected row is ignored
    total = unit_directions(lambda i: grad, [_batch()], "diverge")
    assert total.tolist() == [5.0, -2.0]
    assert unit_directions(lambda i: grad, [_batch()], "mean").tolist() == [6.0, 2.0]
