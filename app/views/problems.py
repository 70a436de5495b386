"""Problems page: browse a problem set, read one problem, see how the active model answers it, and see
the current neuron set's activations (or the current attribution's relevance) token by token on its gold
solution.

The page most often shown first: it imports neither PyTorch nor TransformerLens (the core's evaluation and
activation readers are imported when used), and it draws the problem table and text while the model still
loads in the background, with a short note where the model-dependent parts will appear.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from app import background, resources, state
from app.components import candidate_logprob_chart, colored_tokens_html, token_heatmap
from app.sidebar import active_model, loading_note
from yfpo_core.errors import YfpoError, user_message
from yfpo_core.models import TOY_MODEL
from yfpo_core.problems import Problem

if TYPE_CHECKING:
    from yfpo_core.models import LoadedModel

SOURCES = ["gsm8k-test-100", "gsm-symbolic", "toy", "upload a file…"]
MAX_HEATMAP_UNITS = 48
ACTIVATIONS, RELEVANCE = "activations of the current set", "relevance (current attribution)"
ANSWER_STREAMS = "answer_streams"  # session state: {(fingerprint, problem id): {"text": answer so far}}
FIRST_TOKEN_WAIT_S = 1.0


def _native_problems(model: LoadedModel | None) -> str:
    """The model's own problem set; while it loads, a guess from its name (toy models read toy problems)."""
    if model is not None:
        return model.native_problems
    name = str(st.session_state[state.MODEL_NAME])
    return "toy" if name in (TOY_MODEL, resources.DEMO_MODEL) or name.startswith("toy-") else "gsm8k-test-100"


def _pick_source(model: LoadedModel | None) -> tuple[str | None, int]:
    default = st.session_state[state.PROBLEM_SOURCE] or _native_problems(model)
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
    if model is not None or source != default:  # a guess made while the model loads is not remembered
        st.session_state[state.PROBLEM_SOURCE] = source
    return source, int(limit)


def _problem_table(problems: list[Problem], query: str, source: str, limit: int) -> Problem | None:
    """The table; returns the open problem: the clicked row, else the one opened last (kept in the session,
    so it is still open after a visit to another page), else the first.

    The table's key names what it lists: a row number then always means a row of this list (after a new
    filter, the old selection's row numbers would point at other problems), and a new table starts with
    the open problem selected."""
    shown = [p for p in problems if query.lower() in (p.question + " " + p.id).lower()] if query else problems
    scored = st.session_state[state.MODEL_ANSWERS]
    frame = pd.DataFrame([{"id": p.id, "answer": p.answer, "question": p.question} for p in shown])
    if frame.empty:
        st.info("No problem matches the filter.")
        return None
    ids = [p.id for p in shown]
    remembered = ids.index(state.get(state.PROBLEM_OPEN)) if state.get(state.PROBLEM_OPEN) in ids else None
    event = st.dataframe(frame, hide_index=True, width="stretch", height=360, on_select="rerun",
                         selection_mode="single-row", key=f"problem_table:{source}:{limit}:{query}",
                         selection_default=None if remembered is None else {"selection": {"rows": [remembered]}})
    rows = [r for r in ((event or {}).get("selection") or {}).get("rows", []) if r < len(shown)]
    st.caption(f"{len(shown)} of {len(problems)} problems · click a row to open it · {len(scored)} answered so far")
    problem = shown[rows[0]] if rows else shown[remembered or 0]
    st.session_state[state.PROBLEM_OPEN] = problem.id
    return problem


def _show_problem(problem: Problem, model: LoadedModel | None) -> None:
    st.subheader(f"Problem {problem.id}")
    st.markdown(f"**Question.** {problem.question}")
    with st.expander("Gold solution", expanded=False):
        st.code(problem.solution, language=None, wrap_lines=True)
    st.markdown(f"**Gold answer:** `{problem.answer}`")
    if model is None:
        loading_note("**Ask the model**")
        return
    key = (model.fingerprint, problem.id)
    answers = st.session_state[state.MODEL_ANSWERS]
    streams = st.session_state.setdefault(ANSWER_STREAMS, {})  # {key: {"text": the answer so far}}
    if st.button("Ask the model", type="primary", key="ask_model",
                 help="Greedy generation, shown token by token (answer extracted after ####), then "
                      "teacher-forced answer ranking"):
        stream = streams[key] = {"text": ""}

        def solve(progress):
            from yfpo_core.scoring.evaluate import answer_ranking, stream_exact_match

            generation = stream_exact_match(model, problem, max_new_tokens=256, progress=progress,
                                            on_text=lambda text: stream.__setitem__("text", text))
            progress(0, 0, "ranking the answers")
            return {"generation": generation, "ranking": answer_ranking(model, [problem]).rows[0]}

        # No grace wait for the whole answer: the page shows it from its first token on (which this run waits
        # for, up to a second, so that its first drawing already holds it).
        job = background.start("ask_model", solve, key=key, label=f"{model.name} is solving {problem.id}", grace_s=0)
        deadline = time.monotonic() + FIRST_TOKEN_WAIT_S
        while not stream["text"] and job.running and time.monotonic() < deadline:
            time.sleep(0.02)
    job = background.take("ask_model")
    if job is not None:
        answers[job.key] = job.result
        streams.pop(job.key, None)
    background.show("ask_model", key, detail=lambda: _streamed_answer(streams.get(key)))
    if key not in answers:
        st.caption("Press **Ask the model** to see its answer.")
        return
    generation, ranking = answers[key]["generation"], answers[key]["ranking"]
    verdict = ":green[:material/check_circle: correct]" if generation["correct"] else ":red[:material/cancel: wrong]"
    st.markdown(f"**Model answer:** `{generation['predicted']}` — {verdict} (stopped: {generation['stop_reason']})")
    st.code(generation["output"], language=None, wrap_lines=True)
    st.markdown(f"**Answer ranking:** gold {'ranks first' if ranking['correct'] else 'does not rank first'} "
                f"(margin {ranking['margin']:+.2f} nats over the best wrong answer, {ranking['best_wrong']}).")
    st.plotly_chart(candidate_logprob_chart(ranking["candidates"], problem.answer), key="candidate_chart")


def _streamed_answer(stream: dict[str, str] | None) -> None:
    """The answer so far, while the model writes it (redrawn a few times a second)."""
    with st.container(key="ask_stream"):
        st.code((stream or {}).get("text") or "…", language=None, wrap_lines=True)


def _units_on_solution(problem: Problem, model: LoadedModel | None) -> None:
    """Heatmap (units x tokens) of the set's activations or the attribution's relevance on the solution."""
    st.subheader("Units on the gold solution")
    if model is None:
        loading_note("The units' activations on the solution")
        return
    current = state.neuron_set(model)
    attribution = state.attribution(model)
    # The core's per-token readers (set_token_activations / set_token_relevance) take MLP neurons only.
    neurons = [su.unit for su in current.units if su.unit.kind == "neuron"]
    if attribution is not None and attribution[1].space.kind != "neuron":
        attribution = None
    modes = ([ACTIVATIONS] if neurons else []) + ([RELEVANCE] if attribution else [])
    skipped = len(current) - len(neurons)
    if skipped or (state.attribution(model) is not None and attribution is None):
        st.caption("SAE features (in the set or ranked by the last attribution) are not shown token by token here "
                   "yet; open one on the **Unit detail** page.")
    if not modes:
        st.caption("Pick units on the **Locate** page (or run an attribution there) to see them here, token by "
                   "token.")
        return
    if state.get(state.HEATMAP_MODE) not in modes:
        state.reset(state.HEATMAP_MODE, modes[0])
    for key in (state.HEATMAP_QUESTION, state.HEATMAP_NORMALIZE, state.HEATMAP_CLUSTER):
        state.default(key, False)
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    mode = c1.radio("Show", modes, key=state.HEATMAP_MODE, horizontal=True)
    with_question = c2.checkbox("Include the question", key=state.HEATMAP_QUESTION, wrap=True)
    normalize = c3.checkbox("Scale each unit to its own max", key=state.HEATMAP_NORMALIZE, wrap=True,
                            help="Each row divided by its largest |value|: a few strong units no longer set the "
                                 "colour scale for all")
    cluster = c4.checkbox("Group similar units", key=state.HEATMAP_CLUSTER, wrap=True,
                          help="Order the rows by hierarchical clustering (average linkage, cosine distance of "
                               "their token profiles), so units that fire on the same tokens sit together")
    if mode == RELEVANCE:
        attr_key, result, _ = attribution
        units = neurons or [s.unit for s in result.top(12, "abs")]
        units = units[:MAX_HEATMAP_UNITS]
        key = ("relevance", model.fingerprint, problem.id, attr_key, tuple(u.label for u in units))

        def fn(progress):
            from yfpo_core.analysis.set_activations import set_token_relevance

            return set_token_relevance(model, units, problem, result=result)
    else:
        units = neurons[:MAX_HEATMAP_UNITS]
        key = ("activation", model.fingerprint, problem.id, tuple(u.label for u in units))

        def fn(progress):
            from yfpo_core.analysis.set_activations import set_token_activations

            return set_token_activations(model, units, problem)
    if len(neurons) > MAX_HEATMAP_UNITS and mode == ACTIVATIONS:
        st.caption(f"Showing the first {MAX_HEATMAP_UNITS} of the set's {len(neurons)} neurons.")
    tmap = background.ensure("problem_heatmap", key, fn, label=f"Reading {len(units)} units on {problem.id}")
    if tmap is None:
        return
    view = tmap if with_question else tmap.response()
    what = "activation" if tmap.kind == "activation" else f"relevance ({tmap.method})"
    fig = token_heatmap(view.tokens, [u.short_label for u in tmap.units], view.values.T.numpy(),
                        title=f"{what} per token (hover a cell for its token)", colorbar=tmap.kind,
                        normalize=normalize, cluster=cluster)
    st.plotly_chart(fig, key="problem_heatmap_chart")
    labels = ["sum over the units", *[u.short_label for u in tmap.units]]
    pick = st.selectbox("Colour the text by", labels, key="heatmap_unit",
                        help="The text below is the heatmap's token axis written out: every token, shaded")
    values = view.values.nan_to_num(0.0).sum(1) if pick == labels[0] else view.values[:, labels.index(pick) - 1]
    start = tmap.response_start if with_question else 0
    st.html(colored_tokens_html(view.tokens, [float(v) for v in values], start=start,
                                bold=[int(values.nan_to_num(0).abs().argmax())] if len(values) else []))


def render() -> None:
    # Never waits for the model: the table and the problem text need only the problem set. A failed load
    # shows its error here; while the model loads, its parts show a note (the sidebar reruns the page).
    model = active_model(note=False)
    source, limit = _pick_source(model)
    if source is None:
        st.info("Upload a file to browse it.")
        return
    try:
        problems = resources.get_problems(source, limit)
    except YfpoError as exc:
        st.error(user_message(exc) or str(exc))
        return
    state.default(state.PROBLEM_FILTER, "")
    query = st.text_input("Filter", placeholder="words in the question or id", key=state.PROBLEM_FILTER)
    left, right = st.columns([3, 2], gap="large")
    with left:
        problem = _problem_table(problems, query, source, limit)
    with right:
        if problem is not None:
            _show_problem(problem, model)
    if problem is not None:
        _units_on_solution(problem, model)
