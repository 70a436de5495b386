"""Several problems per pass give each problem's own scores: batched AttnLRP / grad x act equal one problem at
a time (1e-5 relative), and one at a time equals the plain full-sequence computation, on tiny random models of
both families (GPT-2: LayerNorm, GELU, learned positions; Llama: RMSNorm, gated SiLU, rotary)."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import tiny_hooked, tiny_toy
from yfpo_core.attribution.methods import input_leaf_hooks, frozen_parameters, gradient_relevance, gradient_relevance_batch
from yfpo_core.attribution.rules import attnlrp_rules
from yfpo_core.units.space import neuron_space
from yfpo_core.attribution.targets import PreparedProblem, target_value
from yfpo_core.models.base import LoadedModel

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


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Within 1e-5 of the largest magnitude (relative), the tolerance the issue sets."""
    scale = expected.abs().max().clamp_min(1e-12)
    assert float((actual - expected).abs().max() / scale) < 1e-5


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("lrp", [True, False], ids=["attnlrp", "grad_x_act"])
def test_one_problem_equals_the_full_sequence_computation(family, lrp):
    loaded = _loaded(family)
    for prepared in _problems():
        scores = gradient_relevance(loaded, neuron_space(loaded.model), prepared, lrp)
        expected = _reference(loaded, prepared, lrp)
        assert scores.tokens.shape == expected.shape
        _close(scores.tokens, expected)
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
        _close(many.tokens, one.tokens)
        _close(many.total, one.total)
        # sums over every input dimension cancel a lot (values near 0.04 from terms near 1): absolute 1e-5
        for key in ("target", "input_relevance", "logit_relevance"):
            assert many.extras[key] == pytest.approx(one.extras[key], rel=1e-5, abs=1e-5)
    # the rows really were different problems, not copies of one
    assert not torch.allclose(together[0].total, together[1].total)


def test_attribute_with_batches_equals_attribute_one_at_a_time():
    """Through :func:`attribute` on the toy model's format: problems sorted into batches come back in order."""
    from yfpo_core.attribution import attribute
    from yfpo_core.problems import load_problems

    loaded = tiny_toy(seed=3, n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=256)
    problems = load_problems("toy", limit=7)
    one = attribute(loaded, problems, "attnlrp", batch_size=1)
    three = attribute(loaded, problems, "attnlrp", batch_size=3)
    assert three.problem_ids == one.problem_ids == [p.id for p in problems]
    _close(three.per_problem, one.per_problem)
    assert [s.unit for s in three.top(10)] == [s.unit for s in one.top(10)]
    assert three.params["batch_size"] == 3 and three.params["processes"] == 1
    assert three.params["relevance_budget"] == pytest.approx(one.params["relevance_budget"], rel=1e-5)
