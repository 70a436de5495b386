"""attribute() (yfpo_core.attribution.locate): planted neurons rank first under every method, every method
runs and its result file round-trips, problems in batches come back in order."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import DRIVER, NINE, assert_close_to_largest, attribution_toy, hand_problems, planted_model, tiny_toy
from yfpo_core.attribution import METHODS, attribute
from yfpo_core.attribution.result import AttributionResult

# -- planted neurons ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["attnlrp", "grad_x_act", "integrated_gradients", "activation"])
def test_planted_driver_neuron_ranks_first(method):
    loaded = planted_model()
    result = attribute(loaded, hand_problems(), method, "answer_logprob", steps=4)
    best = result.top(1)[0].unit
    assert (best.layer, best.index) == DRIVER, result.top(5)


@pytest.mark.parametrize("method", ["contrast_math_nonmath", "contrast_correct_wrong"])
def test_planted_digit_neuron_ranks_first_in_contrasts(method):
    loaded = planted_model()
    problems = hand_problems()
    no_digits = [loaded.prompt_format.prompt(p.question.replace("9", "x")) + "#### x\n" for p in problems]
    result = attribute(loaded, problems, method, contrast_texts=no_digits)
    best = result.top(1)[0].unit
    assert (best.layer, best.index) == NINE, result.top(5)


def test_every_method_runs_on_both_families_and_result_round_trips(tmp_path):
    loaded = attribution_toy()
    problems = hand_problems()[:2]
    for method in METHODS:
        result = attribute(loaded, problems, method, "logit_diff", steps=2)
        assert result.scores.shape == (2, 64) and result.per_problem.shape == (2, 2, 64)
        assert torch.isfinite(result.scores).all()
    result.save(tmp_path / "r")
    again = AttributionResult.load(tmp_path / "r.json")
    torch.testing.assert_close(again.scores, result.scores)
    assert again.top(5) == result.top(5) and again.problem_ids == result.problem_ids
    assert set(again.token_scores) == set(result.token_scores)


def test_attribute_with_batches_equals_attribute_one_at_a_time():
    """Through :func:`attribute` on the toy model's format: problems sorted into batches come back in order."""
    from yfpo_core.attribution import attribute
    from yfpo_core.problems import load_problems

    loaded = tiny_toy(seed=3, n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=256)
    problems = load_problems("toy", limit=7)
    one = attribute(loaded, problems, "attnlrp", batch_size=1)
    three = attribute(loaded, problems, "attnlrp", batch_size=3)
    assert three.problem_ids == one.problem_ids == [p.id for p in problems]
    assert_close_to_largest(three.per_problem, one.per_problem)
    assert [s.unit for s in three.top(10)] == [s.unit for s in one.top(10)]
    assert three.params["batch_size"] == 3 and three.params["processes"] == 1
    assert three.params["relevance_budget"] == pytest.approx(one.params["relevance_budget"], rel=1e-5)
