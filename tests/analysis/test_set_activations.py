"""A set's activations and relevance token by token, and the same units under two models."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.analysis.set_activations import compare_activations, set_token_activations, set_token_relevance
from yfpo_core.attribution import attribute
from yfpo_core.units.unit import Unit


def test_set_token_activations_match_one_forward_pass(toy, toy_problems):
    units = [Unit.neuron(1, 3), Unit.neuron(0, 5)]
    problem = toy_problems[0]
    tmap = set_token_activations(toy, units, problem)
    fmt = toy.prompt_format
    tokens = toy.encode_prompt(fmt.prompt(problem.question)) + toy.encode(fmt.response(problem.solution)
                                                                          + fmt.end_of_response)
    _, cache = toy.model.run_with_cache(torch.tensor([tokens]))
    expected = torch.stack([cache["blocks.1.mlp.hook_post"][0, :, 3], cache["blocks.0.mlp.hook_post"][0, :, 5]], 1)
    assert torch.allclose(tmap.values, expected, atol=1e-5)
    assert "".join(tmap.response().tokens).startswith(problem.solution[:10])
    assert tmap.response_start == len(toy.encode_prompt(fmt.prompt(problem.question)))


def test_set_token_relevance_uses_the_kept_map_or_recomputes_the_same(toy, toy_problems):
    units = [Unit.neuron(1, 3), Unit.neuron(0, 5)]
    result = attribute(toy, toy_problems, "grad_x_act", layers=[1])
    kept = set_token_relevance(toy, units, toy_problems[0], result=result)
    assert kept.kind == "relevance" and torch.isnan(kept.values[:, 1]).all()  # layer 0 was not attributed
    fresh = set_token_relevance(toy, units, toy_problems[0], method="grad_x_act", target="answer_logprob")
    assert torch.allclose(kept.values[:, 0], fresh.values[:, 0], atol=1e-4)
    assert torch.isfinite(fresh.values).all()


def test_compare_activations_rows_and_errors(toy, toy_problems):
    units = [Unit.neuron(1, 3), Unit.neuron(0, 5)]
    rows = compare_activations({"base": toy, "same": toy}, units, toy_problems[:2])
    assert [(r["model"], r["short"]) for r in rows] == [("base", "L1N3"), ("base", "L0N5"), ("same", "L1N3"),
                                                       ("same", "L0N5")]
    assert rows[0]["mean_activation"] == pytest.approx(rows[2]["mean_activation"])
    assert len(rows[0]["per_problem"]) == 2
    with pytest.raises(ValueError, match="out of range"):
        set_token_activations(toy, [Unit.neuron(5, 0)], toy_problems[0])
    with pytest.raises(ValueError, match="empty"):
        set_token_activations(toy, [], toy_problems[0])
