"""One unit's profile: its activation at every token, the tokens it writes, and what intervening costs."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.analysis.inspection import intervention_effect, logit_effect, profile_unit, unit_activations
from yfpo_core.units.unit import Unit


def test_unit_activations_match_one_forward_pass(toy, toy_problems):
    unit = Unit.neuron(1, 3)
    acts = unit_activations(toy, unit, toy_problems[:2])
    fmt = toy.prompt_format
    for problem, values, start in zip(toy_problems[:2], acts.values, acts.response_starts, strict=True):
        prompt = toy.encode_prompt(fmt.prompt(problem.question))
        tokens = prompt + toy.encode(fmt.response(problem.solution))
        _, cache = toy.model.run_with_cache(torch.tensor([tokens]))
        assert torch.allclose(values, cache["blocks.1.mlp.hook_post"][0, :, 3], atol=1e-5)
        assert start == len(prompt)
    assert acts.problem_ids == [p.id for p in toy_problems[:2]]
    assert acts.flat().numel() == sum(len(v) for v in acts.values)


def test_profile_ranks_examples_and_counts_every_token(toy, toy_problems):
    unit = Unit.neuron(0, 5)
    acts = unit_activations(toy, unit, toy_problems)
    profile = profile_unit(toy, unit, toy_problems, top_n=3, activations=acts)
    maxima = [e["max_activation"] for e in profile.top_examples]
    assert len(maxima) == 3 and maxima == sorted(maxima, reverse=True)
    assert maxima[0] == pytest.approx(float(acts.flat().max())) == pytest.approx(profile.max)
    assert sum(profile.histogram_counts) == acts.flat().numel()
    assert profile.density == pytest.approx(float((acts.flat() > 0).float().mean()))
    assert len(profile.promoted) == len(profile.suppressed) == 10


def test_logit_effect_reads_the_output_weights_through_the_unembedding(toy):
    unit = Unit.neuron(1, 7)
    promoted, suppressed = logit_effect(toy, unit, k=3)
    effect = toy.model.blocks[1].mlp.W_out[7] @ toy.model.W_U
    effect = effect - effect.mean()
    assert [v for _, v in promoted] == pytest.approx(torch.topk(effect, 3).values.tolist(), abs=1e-5)
    assert [v for _, v in suppressed] == pytest.approx((-torch.topk(-effect, 3).values).tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        logit_effect(toy, Unit.neuron(5, 0))


def test_intervention_rows_start_with_the_untouched_model(toy, toy_problems):
    rows = intervention_effect(toy, [Unit.neuron(1, 3)], toy_problems[:2])
    assert [r["intervention"] for r in rows] == ["none", "zero", "scale x2"]
    assert all(0.0 <= r["ranking_accuracy"] <= 1.0 for r in rows)
