"""What the pages show while they wait (AppTest): the model load's note counts on, a training run names
each phase of its preparation, "Ask the model" shows its answer token by token, and a background job
leaves the terminal quiet (no "missing ScriptRunContext" from a thread that is not a script run)."""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from app import state
from tests.app.test_app import APP, TRAIN, model_loaded, settle
from tests.helpers import tiny_toy
from yfpo_core.models import register_model

NAME = "tiny-progress-test"


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    model = tiny_toy(n_layers=2, d_model=16, n_heads=2, d_mlp=32)
    register_model(NAME, lambda device: model)
    return model


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path / "runs"))


def run_app(page: str, name: str = NAME, **session) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[state.MODEL_NAME] = name
    at.session_state[state.START_PAGE] = page
    for key, value in session.items():
        at.session_state[key] = value
    return at.run()


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_the_loading_note_in_the_page_counts_the_seconds_and_names_the_step(tiny_model):
    gate = threading.Event()
    register_model("slow-progress-test", lambda device: gate.wait(60) and tiny_model)
    try:
        at = run_app("locate", "slow-progress-test")
        notes = [i.value for i in at.info]
        assert any("is loading (0 s so far)" in n for n in notes), notes
        time.sleep(1.2)
        at.run()
        note = next(i.value for i in at.info if "is loading" in i.value)
        assert re.search(r"\(([1-9]\d*) s so far\)", note) and "Now: reading the weights." in note
    finally:
        gate.set()


def test_a_training_run_names_each_phase_of_its_preparation(monkeypatch):
    execute_module = importlib.import_module("yfpo_core.runs.execute")  # the package exports execute() too

    gate, real = threading.Event(), execute_module.resolve_inputs

    def slow_inputs(config, base=None, progress=None, **given):
        progress(3, 20, "training problems: template 0003")
        gate.wait(60)
        return real(config, base, progress=progress, **given)

    monkeypatch.setattr(execute_module, "resolve_inputs", slow_inputs)
    at = model_loaded(run_app("train", **{**TRAIN, state.TRAIN_OBJECTIVE: "DPO (λ = 0)",
                                          state.TRAIN_PREFIX + "steps": 2, state.TRAIN_PREFIX + "trainable": "mlp_last_k"}))
    next(b for b in at.button if "Start training" in b.label).click().run()
    run = at.session_state[state.TRAIN_RUNS][-1]
    try:
        wait_for(lambda: run.progress.total == 20)
        at.run()
        bar = at.get("progress")[0].proto
        assert bar.text.startswith("**preparing** · training problems: template 0003 (3/20) · ") and bar.value == 15
    finally:
        gate.set()
    run.join(60)
    assert run.state == "finished", run.error
    at.run()
    assert any(p.proto.text.startswith("**finished** · step 2 of 2") for p in at.get("progress"))


def test_ask_the_model_shows_the_answer_token_by_token(tiny_model, monkeypatch):
    """The generation loop is held after its first two tokens: the page shows them, then the whole answer."""
    from yfpo_core.scoring import evaluate

    gate = threading.Event()

    def held_stream(loaded, prompt_ids, max_new_tokens, step_context=None):
        ids = loaded.encode("#### 7\n")
        yield from ids[:2]
        gate.wait(60)
        yield from ids[2:]

    monkeypatch.setattr(evaluate, "stream_tl", held_stream)
    at = model_loaded(run_app("problems", **{state.PROBLEM_SOURCE: "toy", state.PROBLEM_LIMIT: 3}))
    at.button(key="ask_model").click().run()
    streams = at.session_state["answer_streams"]
    try:
        wait_for(lambda: any(s["text"] == "##" for s in streams.values()))
        at.run()
        assert [c.value for c in at.code if c.value == "##"], [c.value for c in at.code]
        texts = [p.proto.text for p in at.get("progress")]
        assert any(t.startswith(f"{tiny_model.name} is solving") and "generating (2/256)" in t for t in texts), texts
    finally:
        gate.set()
    settle(at)
    assert any("**Model answer:** `7`" in m.value for m in at.markdown)
    assert any(c.value == "#### 7" for c in at.code)


def test_a_background_job_logs_no_missing_script_run_context(caplog):
    """The locate page's attribution runs in a job thread: nothing there calls Streamlit."""
    caplog.set_level(logging.WARNING)
    at = model_loaded(run_app("locate", **{state.LOCATE_SOURCE: "toy", state.LOCATE_LIMIT: 6}))
    caplog.clear()
    at.button[0].click().run()
    settle(at)
    assert at.dataframe and not at.exception
    threads = [r for r in caplog.records if "missing ScriptRunContext" in r.getMessage()
               and "MainThread" not in r.getMessage()]
    assert not threads, [r.getMessage() for r in threads]


def test_a_new_attribution_runs_without_the_previous_result_drawn_beside_it(monkeypatch):
    """While a new attribution runs, the page shows its progress only (redrawing the old result's figures cost
    the job a third of its time on SmolLM2), and the new result once it is done."""
    from app.views import locate

    at = model_loaded(run_app("locate", **{state.LOCATE_SOURCE: "toy", state.LOCATE_LIMIT: 4}))
    at.button[0].click().run()
    settle(at)
    assert at.dataframe and "on 4 toy problems" in "\n".join(m.value for m in at.markdown)
    gate, real = threading.Event(), locate.attribute
    monkeypatch.setattr(locate, "attribute", lambda *a, **kw: gate.wait(60) and real(*a, **kw))
    at.session_state[state.LOCATE_LIMIT] = 5
    at.button[0].click().run()
    try:
        assert len(at.get("progress")) == 1 and not at.dataframe and not at.get("plotly_chart")
    finally:
        gate.set()
    settle(at)
    assert at.dataframe and "on 5 toy problems" in "\n".join(m.value for m in at.markdown)
