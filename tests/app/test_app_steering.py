"""The steering panel on Unit detail and Neuron set (Streamlit AppTest, the tiny model of test_app)."""

from __future__ import annotations

from app import state
from app.steering_panel import FREE_PROMPT
from tests.app.test_app import no_shipped_saes, run_app, runs_dir, settle, texts, tiny_model, with_set  # noqa: F401


def _steer(at, prefix: str, value: float, tokens: int = 8):
    at.number_input(key=f"{prefix}_steer_value_add").set_value(value).run()
    at.number_input(key=f"{prefix}_steer_tokens").set_value(tokens).run()
    at.button(key=f"{prefix}_steer_run").click().run()
    return settle(at)


def test_unit_page_shows_plain_and_steered_answers_side_by_side(tiny_model):
    at = settle(run_app("unit", **{state.UNIT_SOURCE: "type one", state.UNIT_TYPED: "L1N4",
                                   state.UNIT_PROBLEM_SOURCE: "toy", state.UNIT_PROBLEM_LIMIT: 3}))
    assert not at.exception, at.exception
    assert "Steer a generation" in [s.value for s in at.subheader]
    at = _steer(at, "unit", 0.0)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    shown = texts(at)
    assert "**Plain**" in shown and "**Steered (add +0)**" in shown
    blocks = [c.value for c in at.code]
    assert len(blocks) >= 2 and blocks[-2] == blocks[-1]  # a neutral steering is the plain answer
    assert "Identical token for token." in texts(at, "caption")
    assert shown.count("gold") + shown.count("✓ correct") >= 2  # both answers checked against gold
    job = at.session_state[state.JOBS]["unit_steer"]
    assert job.result.problem_id == at.selectbox(key="unit_steer_problem").value
    assert job.result.units == ["blocks.1.mlp.hook_post:4"]


def test_unit_page_steers_a_free_prompt_strongly(tiny_model):
    at = settle(run_app("unit", **{state.UNIT_SOURCE: "type one", state.UNIT_TYPED: "L1N4",
                                   state.UNIT_PROBLEM_SOURCE: "toy", state.UNIT_PROBLEM_LIMIT: 3}))
    at.selectbox(key="unit_steer_problem").set_value(FREE_PROMPT).run()
    at.text_area(key="unit_steer_text").input("Ann has 3 pens. She buys 4 more. How many?").run()
    at = _steer(at, "unit", 500.0)
    assert not at.exception, at.exception
    result = at.session_state[state.JOBS]["unit_steer"].result
    assert result.gold is None and result.steering == "add +500"
    assert "Steered (add +500)" in texts(at)
    assert result.first_difference is not None  # a huge push on one neuron changes what is written


def test_neuron_set_page_steers_the_whole_set(tiny_model):
    at = run_app("neuron-set", **with_set(tiny_model))
    assert not at.exception, at.exception
    at = _steer(at, "set", 2.0)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    result = at.session_state[state.JOBS]["set_steer"].result
    assert result.units == ["blocks.1.mlp.hook_post:3", "blocks.0.mlp.hook_post:5", "blocks.1.mlp.hook_post:7"]
    assert "Steered (add +2)" in texts(at)
    assert len(at.code) >= 2
