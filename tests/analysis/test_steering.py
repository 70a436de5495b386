"""Steering a live generation, on the planted tiny toy model, a tiny SAE and the shipped toy model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import DRIVER, PLANTED_FEATURE, planted_model, planted_sae
from yfpo_core.analysis.steering import Steering, steer_generation, steered
from yfpo_core.models.toy import toy_tokenizer
from yfpo_core.problems.base import Problem
from yfpo_core.scoring.generation import greedy_generate
from yfpo_core.units.unit import Unit

QUESTION = "Ann has 9 pens and 9 cups. How many?"
DRIVER_UNIT = Unit.neuron(*DRIVER)


def _naive_greedy(model, prompt_ids, n, context):
    """Greedy decoding without a KV cache: the whole sequence again at every step, under ``context()``."""
    ids, out = list(prompt_ids), []
    for _ in range(n):
        with torch.no_grad(), context():
            logits = model.model(torch.tensor([ids]))
        out.append(int(logits[0, -1].argmax()))
        ids.append(out[-1])
    return out


@pytest.mark.parametrize("steering", [Steering("scale", 1.0), Steering("add", 0.0)])
def test_neutral_steering_equals_plain_generation_token_for_token(steering):
    model = planted_model()
    result = steer_generation(model, QUESTION, [DRIVER_UNIT, Unit.neuron(0, 7)], steering, max_new_tokens=12)
    assert steering.neutral
    assert result.steered.token_ids == result.plain.token_ids and result.first_difference is None
    assert result.steered.text == result.plain.text
    # and the plain side is the workbench's ordinary greedy generation
    (plain,) = greedy_generate(model, [model.prompt_format.prompt(QUESTION)], max_new_tokens=12)
    assert result.plain.text == plain.text and result.plain.stop_reason == plain.stop_reason


def test_neutral_feature_steering_keeps_the_error_term_and_the_plain_answer():
    model = planted_model()
    sae = planted_sae(model)
    feature = Unit("sae_feature", sae.hook_name, PLANTED_FEATURE, sae_id="planted")
    result = steer_generation(model, QUESTION, [feature], Steering("add", 0.0), sae=sae, max_new_tokens=12)
    assert result.steered.token_ids == result.plain.token_ids


def _cache(model, tokens, context=None):
    if context is None:
        return model.model.run_with_cache(tokens)[1]
    with context:
        return model.model.run_with_cache(tokens)[1]


def test_adding_to_a_neuron_changes_exactly_its_activation_and_what_it_writes():
    model = planted_model()
    tokens = torch.tensor([model.encode_prompt(model.prompt_format.prompt(QUESTION))])
    plain = _cache(model, tokens)
    steer = _cache(model, tokens, steered(model, [DRIVER_UNIT], Steering("add", 2.5)))
    layer, index = DRIVER
    post = f"blocks.{layer}.mlp.hook_post"
    upstream = [n for n in plain.keys() if n.startswith("hook_") or n.startswith("blocks.0.")
                or n in (f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_attn_out",
                         f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.mlp.hook_pre")]
    assert len(upstream) > 10
    for name in upstream:
        torch.testing.assert_close(steer[name], plain[name], atol=0, rtol=0, msg=name)
    expected = torch.zeros_like(plain[post])
    expected[..., index] = 2.5
    torch.testing.assert_close(steer[post] - plain[post], expected, atol=1e-5, rtol=0)
    written = 2.5 * model.model.blocks[layer].mlp.W_out[index]
    torch.testing.assert_close(steer[f"blocks.{layer}.hook_mlp_out"] - plain[f"blocks.{layer}.hook_mlp_out"],
                               written.expand_as(plain[f"blocks.{layer}.hook_mlp_out"]), atol=1e-4, rtol=0)
    assert not any(point.has_hooks() for point in model.model.hook_dict.values())  # no hook left behind


def test_clamp_and_scale_set_the_activation():
    model = planted_model()
    tokens = torch.tensor([model.encode_prompt(model.prompt_format.prompt(QUESTION))])
    post = f"blocks.{DRIVER[0]}.mlp.hook_post"
    plain = _cache(model, tokens)[post][..., DRIVER[1]]
    clamped = _cache(model, tokens, steered(model, [DRIVER_UNIT], Steering("clamp", -1.5)))[post][..., DRIVER[1]]
    scaled = _cache(model, tokens, steered(model, [DRIVER_UNIT], Steering("scale", 3.0)))[post][..., DRIVER[1]]
    torch.testing.assert_close(clamped, torch.full_like(plain, -1.5))
    torch.testing.assert_close(scaled, 3.0 * plain)


def test_adding_to_a_feature_adds_its_decoder_direction():
    model = planted_model()
    sae = planted_sae(model)
    feature = Unit("sae_feature", sae.hook_name, PLANTED_FEATURE, sae_id="planted")
    tokens = torch.tensor([model.encode_prompt(model.prompt_format.prompt(QUESTION))])
    plain = _cache(model, tokens)
    steer = _cache(model, tokens, steered(model, [feature], Steering("add", 4.0), sae=sae))
    delta = steer[sae.hook_name] - plain[sae.hook_name]
    torch.testing.assert_close(delta, (4.0 * sae.sae.W_dec[PLANTED_FEATURE]).expand_as(delta), atol=1e-4, rtol=0)
    torch.testing.assert_close(steer["blocks.1.mlp.hook_pre"], plain["blocks.1.mlp.hook_pre"], atol=0, rtol=0)


def test_strong_steering_changes_the_answer_where_the_unit_writes():
    model = planted_model()
    steering = Steering("add", 40.0)
    result = steer_generation(model, QUESTION, [DRIVER_UNIT], steering, max_new_tokens=10)
    assert result.first_difference is not None
    prompt_ids = model.encode_prompt(result.prompt)
    n = len(result.steered.token_ids)
    # the KV-cached stream is the plain greedy decoding of the steered model, token for token
    assert result.steered.token_ids == _naive_greedy(model, prompt_ids, n,
                                                     lambda: steered(model, [DRIVER_UNIT], steering))
    assert result.plain.token_ids == _naive_greedy(model, prompt_ids, len(result.plain.token_ids),
                                                   lambda: model.lock)
    vocab = toy_tokenizer().get_vocab()
    assert result.steered.token_ids[0] in (vocab[" "], vocab["9"])  # the driver writes towards " 9"


def test_streaming_callback_and_gold_check():
    model = planted_model()
    seen = []
    problem = Problem(id="hand/0", question=QUESTION, solution="#### 18", answer="18", source="test")
    result = steer_generation(model, problem, [DRIVER_UNIT], Steering("add", 40.0), max_new_tokens=6,
                              on_text=lambda a, b: seen.append((a, b)))
    assert result.gold == "18" and result.problem_id == "hand/0"
    assert len(seen) == max(len(result.plain.token_ids), len(result.steered.token_ids))
    assert all(len(b[0]) >= len(a[0]) and len(b[1]) >= len(a[1]) for a, b in zip(seen, seen[1:]))  # both grow
    assert result.plain.correct in (True, False) and result.steered.correct in (True, False)
    assert json.loads(json.dumps(result.to_dict()))["steering"] == "add +40"


def test_bad_units_and_values_are_refused_in_words():
    model = planted_model()
    with pytest.raises(ValueError, match="out of range"):
        steer_generation(model, QUESTION, [Unit.neuron(5, 0)], Steering("add", 1.0))
    with pytest.raises(ValueError, match="at least one unit"):
        steer_generation(model, QUESTION, [], Steering("add", 1.0))
    with pytest.raises(ValueError, match="needs its SAE"):
        steer_generation(model, QUESTION, [Unit("sae_feature", "blocks.1.mlp.hook_post", 0, sae_id="x")],
                         Steering("add", 1.0))
    with pytest.raises(ValueError, match="clamp, scale or add"):
        Steering("zero", 1.0)
    with pytest.raises(ValueError, match="finite"):
        Steering("add", float("nan"))


def test_on_the_shipped_toy_model_plain_is_right_and_zeroing_its_last_mlp_breaks_it():
    from yfpo_core.models.toy import load_toy_model, shipped_toy_dir
    from yfpo_core.problems.synthetic import generate_toy_problems

    model = load_toy_model(path=shipped_toy_dir())
    units = [Unit.neuron(1, i) for i in range(model.model.cfg.d_mlp)]
    results = [steer_generation(model, problem, units, Steering("scale", 0.0), max_new_tokens=48)
               for problem in generate_toy_problems(4, seed=777)]
    assert sum(r.plain.correct for r in results) >= 3, [r.plain.text for r in results]
    assert sum(r.steered.correct for r in results) < sum(r.plain.correct for r in results)
    assert all(r.first_difference is not None for r in results)
    assert all(r.gold == p.answer for r, p in zip(results, generate_toy_problems(4, seed=777)))
