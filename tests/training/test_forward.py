"""Where the units are read in a training step (yfpo_core.training.forward): the column layout by hand, the
policy's pass from a cached residual against the full model, unit gradients against autograd."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_hooked
from yfpo_core.training.batching import PairBatch
from yfpo_core.training.forward import FROM_TOKENS, PolicyForward, UnitLayout, unit_gradients
from yfpo_core.units.unit import Unit

HOOK0, HOOK1 = "blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"


def feature(index: int) -> Unit:
    return Unit("sae_feature", HOOK1, index, sae_id="s")


def test_layout_groups_by_hook_and_sae_lowest_layer_first():
    units = [Unit.neuron(1, 3), feature(2), Unit.neuron(0, 1), feature(7), Unit.neuron(1, 5)]
    layout = UnitLayout.build(units, scores=[0.1, 0.2, 0.3, 0.4, 0.5], directions=[1, -1, 1, -1, 1])
    assert layout.units == [Unit.neuron(0, 1), Unit.neuron(1, 3), Unit.neuron(1, 5), feature(2), feature(7)]
    assert layout.scores == [0.3, 0.1, 0.5, 0.2, 0.4] and layout.directions == [1, 1, 1, -1, -1]
    assert {g: v.tolist() for g, v in layout.index_by_group.items()} == {
        (HOOK0, None): [1], (HOOK1, None): [3, 5], (HOOK1, "s"): [2, 7]}
    assert layout.sae_ids == ["s"] and set(layout.neuron_index_by_hook()) == {HOOK0, HOOK1}
    assert layout.groups_below(1) == [(HOOK0, None)] and layout.groups_from(1) == [(HOOK1, None), (HOOK1, "s")]


def _batch() -> PairBatch:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 40, (4, 9), generator=generator)  # 2 pairs: chosen rows 0-1, rejected rows 2-3
    mask = torch.zeros(4, 9, dtype=torch.long)
    mask[:, 4:] = 1
    mask[3, 7:] = 0  # a shorter rejected response
    return PairBatch(["a", "b"], tokens, mask)


def _reference_logps(model, batch: PairBatch) -> torch.Tensor:
    """Sum of log p(response token) per row from the full model's logits."""
    logp = torch.log_softmax(model(batch.tokens).float(), dim=-1)[:, :-1]
    picked = logp.gather(-1, batch.tokens[:, 1:, None])[..., 0]
    return (picked * batch.response_mask[:, 1:]).sum(-1)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_pass_from_a_cached_residual_equals_the_full_model(family):
    model, batch = tiny_hooked(family), _batch()
    layout = UnitLayout.build([Unit.neuron(1, 3), Unit.neuron(0, 2), Unit.neuron(1, 7)])
    with torch.no_grad():
        resid = model(batch.tokens, stop_at_layer=1)  # the frozen prefix's output
        _, cache = model.run_with_cache(batch.tokens, names_filter=[HOOK1])
        logps, acts = PolicyForward(model, 1, layout)(resid, batch.tokens, batch.response_mask)
        from_tokens, all_acts = PolicyForward(model, FROM_TOKENS, layout)(None, batch.tokens, batch.response_mask)
        torch.testing.assert_close(logps, _reference_logps(model, batch), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_tokens, logps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acts, cache[HOOK1][..., [3, 7]])  # only the units at or above the start layer
    assert all_acts.shape == (4, 9, 3)  # from the tokens every unit is read, in the layout's order


def test_unit_gradients_are_the_chosen_rows_autograd_gradients():
    model, batch = tiny_hooked("gpt2"), _batch()
    layout = UnitLayout.build([Unit.neuron(0, 2), Unit.neuron(1, 3), Unit.neuron(1, 7)])
    kept = {}

    def keep(x, hook):
        x.retain_grad()
        kept[hook.name] = x
        return x

    with model.hooks(fwd_hooks=[(HOOK0, keep), (HOOK1, keep)]):
        _reference_logps(model, batch)[:2].sum().backward()  # the chosen rows' log-probs
    model.zero_grad(set_to_none=True)
    expected = torch.cat([kept[HOOK0].grad[..., [2]], kept[HOOK1].grad[..., [3, 7]]], dim=-1)
    got = unit_gradients(model, FROM_TOKENS, layout, {}, batch, None)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)
    assert not got[2:].any()  # the rejected rows' log-probs are not differentiated
    with torch.no_grad():
        resid = model(batch.tokens, stop_at_layer=1)
    above = unit_gradients(model, 1, layout, {}, batch, resid)
    assert not above[..., 0].any()  # below the trainable blocks nothing can change: zero
    torch.testing.assert_close(above[..., 1:], expected[..., 1:], atol=1e-6, rtol=1e-4)
