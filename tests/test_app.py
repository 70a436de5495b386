"""Streamlit AppTest for each page, with a tiny model injected instead of the default one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from yfpo_core.models import register_model

APP = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TINY = "tiny-app-test"


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model

    model = wrap_toy_model(build_toy_model(toy_config_kwargs({"n_layers": 1, "d_model": 16, "n_heads": 2,
                                                              "d_mlp": 32})), source="test")
    register_model(TINY, lambda device: model)
    return model


def run_app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_name"] = TINY
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_problems_page_lists_problems_and_answers_one():
    at = run_app(problem_source="toy", problem_limit=12)
    assert not at.exception, at.exception
    assert at.title[0].value == "Problems"
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 12
    at.button(key="ask_model").click().run()
    assert not at.exception, at.exception
    texts = " ".join(m.value for m in at.markdown)
    assert "Model answer" in texts and "Answer ranking" in texts


def test_problems_page_filters():
    at = run_app(problem_source="toy", problem_limit=30)
    at.text_input(key="problem_filter").input("zzzz-no-such-text").run()
    assert not at.exception
    assert any("No problem matches" in i.value for i in at.info)


def test_bad_model_name_shows_an_error_not_a_traceback():
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_name"] = "no-such-model-anywhere"
    at.run()
    assert not at.exception
    assert any("not a built-in model" in e.value for e in at.error)
