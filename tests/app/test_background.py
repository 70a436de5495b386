"""Background jobs on a page (AppTest): a short job's result in the run that starts it, a long job's live
progress, a streamed partial result, and "done in N s" once."""

from __future__ import annotations

import threading

from streamlit.testing.v1 import AppTest

GATES: dict[str, threading.Event] = {}

SCRIPT = """
import time
import streamlit as st
from app import background, state
from tests.app.test_background import GATES

state.init_state()

seconds = st.session_state.get("seconds", 0.0)
partial = st.session_state.setdefault("partial", {"text": ""})

def work(progress):
    progress(1, 4, "first part")
    partial["text"] = "half an answer"
    if seconds:
        GATES["go"].wait(30)
    return 42

if st.button("Go"):
    background.start("demo", work, label="Demo work", key="k")
job = background.take("demo")
if job is not None:
    st.session_state["result"] = job.result
background.show("demo", "k", detail=(lambda: st.code(partial["text"])) if st.session_state.get("stream") else None)
st.write(f"result: {st.session_state.get('result')}")
"""


def app(**session) -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=30)
    for key, value in session.items():
        at.session_state[key] = value
    return at.run()


def test_a_short_job_is_drawn_by_the_run_that_starts_it():
    at = app()
    at.button[0].click().run()
    assert "result: 42" in [m.value for m in at.markdown]
    assert any("Demo work · done in" in c.value for c in at.caption)
    at.run()  # said once
    assert not any("done in" in c.value for c in at.caption)


def test_a_long_job_shows_its_progress_then_its_result():
    GATES["go"] = threading.Event()
    at = app(seconds=1.0)
    at.button[0].click().run()
    bar = at.get("progress")[0].proto
    assert bar.text.startswith("Demo work — first part (1/4)") and bar.value == 25
    assert "result: None" in [m.value for m in at.markdown]
    GATES["go"].set()
    job = at.session_state["jobs"]["demo"]
    assert job.wait(30)
    at.run()
    assert "result: 42" in [m.value for m in at.markdown] and any("done in" in c.value for c in at.caption)


def test_a_streamed_partial_result_is_drawn_under_the_bar_while_the_job_runs():
    GATES["go"] = threading.Event()
    at = app(seconds=1.0, stream=True)
    at.button[0].click().run()
    assert [c.value for c in at.code] == ["half an answer"] and len(at.get("progress")) == 1
    GATES["go"].set()
    assert at.session_state["jobs"]["demo"].wait(30)
    at.run()
    assert not at.code and "result: 42" in [m.value for m in at.markdown]
