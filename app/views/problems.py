"""Problems page: browse a problem set, read one problem, and see how the active model answers it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from app import resources, state
from app.components import candidate_logprob_chart
from app.sidebar import active_model
from yfpo_core.errors import YfpoError
from yfpo_core.evaluate import answer_ranking, exact_match
from yfpo_core.models import TOY_MODEL
from yfpo_core.problems import Problem

SOURCES = ["gsm8k-test-100", "gsm-symbolic", "toy", "upload a file…"]


def _pick_source(model_name: str) -> tuple[str | None, int]:
    default = st.session_state[state.PROBLEM_SOURCE] or ("toy" if model_name == TOY_MODEL else "gsm8k-test-100")
    cols = st.columns([2, 1, 2])
    source = cols[0].selectbox("Problem set", SOURCES, index=SOURCES.index(default) if default in SOURCES else 0,
                               help="gsm8k-test-100: GSM8K test problems with gold solutions (offline). "
                                    "gsm-symbolic: fresh variants of them. toy: the toy model's problems.")
    limit = cols[1].number_input("How many", min_value=1, max_value=2000,
                                 value=st.session_state[state.PROBLEM_LIMIT], step=10)
    st.session_state[state.PROBLEM_LIMIT] = int(limit)
    if source == "upload a file…":
        upload = cols[2].file_uploader("JSONL, CSV or Parquet with question and answer columns",
                                       type=["jsonl", "json", "csv", "parquet"])
        if upload is None:
            return None, int(limit)
        folder = Path(tempfile.gettempdir()) / "yfpo-uploads"
        folder.mkdir(exist_ok=True)
        path = folder / Path(upload.name).name
        path.write_bytes(upload.getvalue())
        return str(path), int(limit)
    st.session_state[state.PROBLEM_SOURCE] = source
    return source, int(limit)


def _problem_table(problems: list[Problem], query: str) -> Problem | None:
    shown = [p for p in problems if query.lower() in (p.question + " " + p.id).lower()] if query else problems
    scored = st.session_state[state.MODEL_ANSWERS]
    frame = pd.DataFrame([{"id": p.id, "answer": p.answer, "question": p.question} for p in shown])
    if frame.empty:
        st.info("No problem matches the filter.")
        return None
    event = st.dataframe(frame, hide_index=True, width="stretch", height=360, on_select="rerun",
                         selection_mode="single-row", key="problem_table")
    rows = event.selection.rows if event and event.selection else []
    st.caption(f"{len(shown)} of {len(problems)} problems · click a row to open it · {len(scored)} answered so far")
    return shown[rows[0]] if rows else shown[0]


def _show_problem(problem: Problem, model) -> None:
    st.subheader(f"Problem {problem.id}")
    st.markdown(f"**Question.** {problem.question}")
    with st.expander("Gold solution", expanded=False):
        st.code(problem.solution, language=None)
    st.markdown(f"**Gold answer:** `{problem.answer}`")
    key = (model.fingerprint, problem.id)
    answers = st.session_state[state.MODEL_ANSWERS]
    if st.button("Ask the model", type="primary", key="ask_model",
                 help="Greedy generation (answer extracted after ####) and teacher-forced answer ranking"):
        with st.spinner(f"{model.name} is solving the problem…"):
            generation = exact_match(model, [problem], max_new_tokens=256).rows[0]
            ranking = answer_ranking(model, [problem]).rows[0]
        answers[key] = {"generation": generation, "ranking": ranking}
    if key not in answers:
        st.caption("Press **Ask the model** to see its answer.")
        return
    generation, ranking = answers[key]["generation"], answers[key]["ranking"]
    verdict = "✅ correct" if generation["correct"] else "❌ wrong"
    st.markdown(f"**Model answer:** `{generation['predicted']}` — {verdict} (stopped: {generation['stop_reason']})")
    st.code(generation["output"], language=None)
    st.markdown(f"**Answer ranking:** gold {'ranks first' if ranking['correct'] else 'does not rank first'} "
                f"(margin {ranking['margin']:+.2f} nats over the best wrong answer, {ranking['best_wrong']}).")
    st.plotly_chart(candidate_logprob_chart(ranking["candidates"], problem.answer), key="candidate_chart")


def render() -> None:
    st.title("Problems")
    model = active_model()
    if model is None:
        st.stop()
    source, limit = _pick_source(model.name)
    if source is None:
        st.info("Upload a file to browse it.")
        return
    try:
        problems = resources.get_problems(source, limit)
    except YfpoError as exc:
        st.error(str(exc))
        return
    query = st.text_input("Filter", placeholder="words in the question or id", key="problem_filter")
    left, right = st.columns([3, 2], gap="large")
    with left:
        problem = _problem_table(problems, query)
    with right:
        if problem is not None:
            _show_problem(problem, model)
