"""The gradient methods (yfpo_core.attribution.methods): grad x act is activation times the autograd gradient;
several problems per pass give each problem's own scores: batched AttnLRP / grad x act equal one problem at
a time (1e-5 relative), and one at a time equals the plain full-sequence computation, on tiny random models of
both families (GPT-2: LayerNorm, GELU, learned positions; Llama: RMSNorm, gated SiLU, rotary)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import assert_close_to_largest, attribution_toy, hand_problems, tiny_hooked
from yfpo_core.attribution import attribute
from yfpo_core.attribution.methods import (
    frozen_parameters,
    gradient_relevance,
    gradient_relevance_batch,
    input_leaf_hooks,
    integrated_gradients,
)
from yfpo_core.attribution.rules import attnlrp_rules
from yfpo_core.attribution.targets import PreparedProblem, prepare_problem, target_value
from yfpo_core.models.base import LoadedModel
from yfpo_core.units.space import neuron_space

PAD = 3


def _loaded(family: str) -> LoadedModel:
    model = tiny_hooked(family)
    return LoadedModel(name=f"tiny-{family}", model=model, tokenizer=SimpleNamespace(pad_token_id=PAD, eos_token_id=None),
                       prompt_format=None, prepend_bos=False, source="test", fingerprint="x")


def _problems(seed: int = 0) -> list[PreparedProblem]:
    """Sequences of different lengths whose targets read different positions (not always the last one,
    so truncation matters); one uses a logit difference, and one contains the pad id as a real token."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for k, (length, positions) in enumerate([(20, (14, 15)), (33, (30,)), (9, (5, 6, 7)), (27, (26,)), (12, (3,))]):
        tokens = tuple(torch.randint(0, 40, (length,), generator=generator).tolist())
        if k == 1:
            tokens = tokens[:10] + (PAD,) + tokens[11:]
        targets = tuple(tokens[p + 1] if p + 1 < length else 1 for p in positions)
        contrast = tuple((t + 1) % 40 for t in targets) if k == 3 else ()
        out.append(PreparedProblem(f"p{k}", tokens, positions, targets, contrast, 0, tokens, tokens, 0))
    return out


def _reference(loaded: LoadedModel, prepared: PreparedProblem, lrp: bool) -> torch.Tensor:
    """The plain computation: the whole sequence, logits everywhere, relevance a * a.grad (no batching)."""
    model, space, acts = loaded.model, neuron_space(loaded.model), {}

    def keep(name, x):
        x.retain_grad()
        acts[name] = x

    with torch.enable_grad(), frozen_parameters(model), attnlrp_rules(model) if lrp else nullcontext(), \
            space.reading(model, keep), model.hooks(fwd_hooks=input_leaf_hooks(model, {})):
        target_value(model(torch.tensor([prepared.tokens]))[0], prepared).backward()
    return torch.stack([(acts[h] * acts[h].grad)[0].detach() for h in space.hook_names], dim=1)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("lrp", [True, False], ids=["attnlrp", "grad_x_act"])
def test_one_problem_equals_the_full_sequence_computation(family, lrp):
    loaded = _loaded(family)
    for prepared in _problems():
        scores = gradient_relevance(loaded, neuron_space(loaded.model), prepared, lrp)
        expected = _reference(loaded, prepared, lrp)
        assert scores.tokens.shape == expected.shape
        assert_close_to_largest(scores.tokens, expected)
        last = prepared.positions[-1]
        assert not scores.tokens[last + 1:].any()  # tokens after the target cannot matter: exactly zero
        assert not expected[last + 1:].any()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("lrp", [True, False], ids=["attnlrp", "grad_x_act"])
def test_batched_problems_equal_one_at_a_time(family, lrp):
    loaded = _loaded(family)
    space = neuron_space(loaded.model)
    problems = _problems(seed=1)
    alone = [gradient_relevance(loaded, space, p, lrp) for p in problems]
    together = gradient_relevance_batch(loaded, space, problems, lrp)
    assert len(together) == len(problems)
    for one, many in zip(alone, together, strict=True):
        assert many.tokens.shape == one.tokens.shape and many.token_ids == one.token_ids
        assert_close_to_largest(many.tokens, one.tokens)
        assert_close_to_largest(many.total, one.total)
        # sums over every input dimension cancel a lot (values near 0.04 from terms near 1): absolute 1e-5
        for key in ("target", "input_relevance", "logit_relevance"):
            assert many.extras[key] == pytest.approx(one.extras[key], rel=1e-5, abs=1e-5)
    # the rows really were different problems, not copies of one
    assert not torch.allclose(together[0].total, together[1].total)


def test_grad_x_act_equals_activation_times_autograd_gradient():
    loaded = attribution_toy()
    problem = hand_problems()[0]
    prepared = prepare_problem(loaded, problem, "answer_logprob")
    space = neuron_space(loaded.model)
    scores = gradient_relevance(loaded, space, prepared, lrp=False)
    # the same by hand: ordinary autograd with parameters requiring grad, no tricks
    acts = {}

    def keep(x, hook):
        x.retain_grad()
        acts[hook.name] = x
        return x

    with loaded.model.hooks(fwd_hooks=[(h, keep) for h in space.hook_names]):
        logits = loaded.model(torch.tensor([prepared.tokens]))[0]
        target_value(logits, prepared).backward()
    loaded.model.zero_grad(set_to_none=True)
    expected = torch.stack([(acts[h] * acts[h].grad).detach()[0] for h in space.hook_names], dim=1)
    torch.testing.assert_close(scores.tokens, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(scores.total, expected.sum(0), atol=1e-5, rtol=1e-5)


def test_attnlrp_reports_relevance_absorbed_by_softmax_and_biases():
    result = attribute(attribution_toy(), hand_problems(), "attnlrp", "logit_diff")
    budgets = result.params["relevance_budget"]
    assert len(budgets) == 4 and all(math.isfinite(b) for b in budgets)


def _integrated_reference(loaded: LoadedModel, prepared: PreparedProblem, steps: int) -> torch.Tensor:
    """Knowledge-neuron IG the plain way: per row and alpha, the whole sequence with that row's activations
    scaled, logits everywhere; ``a * mean_k d target / d(alpha_k a)``."""
    model, space = loaded.model, neuron_space(loaded.model)
    tokens = torch.tensor([prepared.tokens])
    clean = {}
    with torch.no_grad(), space.reading(model, lambda name, x: clean.__setitem__(name, x[0].clone())):
        model(tokens)
    rows = []
    for hook_name in space.hook_names:
        grads = []
        for k in range(steps):
            scaled = ((k + 0.5) / steps * clean[hook_name])[None].requires_grad_(True)
            with torch.enable_grad(), frozen_parameters(model), \
                    space.reading(model, lambda name, x, h=hook_name, s=scaled: s if name == h else None):
                target_value(model(tokens)[0], prepared).backward()
            grads.append(scaled.grad[0])
        rows.append(clean[hook_name] * torch.stack(grads).mean(0))
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_integrated_gradients_equal_the_plain_computation(family):
    """Starting each row's passes at its block, cutting the tokens after the target and unembedding only the
    target positions are savings, not approximations."""
    loaded = _loaded(family)
    for prepared in _problems()[:3]:
        scores = integrated_gradients(loaded, neuron_space(loaded.model), prepared, steps=3)
        expected = _integrated_reference(loaded, prepared, steps=3)
        assert scores.tokens.shape == expected.shape
        assert_close_to_largest(scores.tokens, expected)
        assert torch.all(scores.tokens[prepared.positions[-1] + 1:] == 0)


def test_integrated_gradients_are_complete_with_many_steps():
    """IG's completeness: a row's scores sum to the target's change when that row is zeroed (midpoint rule,
    so only approximately at finite steps)."""
    loaded = _loaded("llama")
    prepared = _problems()[0]
    space = neuron_space(loaded.model)
    scores = integrated_gradients(loaded, space, prepared, steps=64)
    tokens = torch.tensor([prepared.tokens])
    with torch.no_grad():
        full = float(target_value(loaded.model(tokens)[0], prepared))
        for row, hook_name in enumerate(space.hook_names):
            with space.reading(loaded.model, lambda name, x, h=hook_name: torch.zeros_like(x) if name == h else None):
                zeroed = float(target_value(loaded.model(tokens)[0], prepared))
            assert float(scores.tokens[:, row].sum()) == pytest.approx(full - zeroed, rel=0.02, abs=1e-3)
