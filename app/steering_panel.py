"""The steering panel shared by Unit detail and Neuron set: a small form, then the plain and the steered
answer to the same prompt in two columns, streamed token by token, each checked against the gold answer.

The generation runs in a background job (:mod:`app.background`); the job writes the text so far into a
:class:`LiveText` kept in session state, and a half-second fragment draws it while the job runs. When the job
ends the page reruns once and draws the finished comparison (:class:`yfpo_core.analysis.steering.SteeringComparison`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import streamlit as st

from app import background, state, widgets
from yfpo_core.models import LoadedModel
from yfpo_core.analysis.steering import STEER_KINDS, Steering, SteeringComparison, steer_generation
from yfpo_core.units.unit import Unit

FREE_PROMPT = "(type a question)"
DEFAULTS = {"clamp": 5.0, "scale": 3.0, "add": 5.0}


class LiveText:
    """The two texts so far, written by the job's thread and read by the page's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts = ("", "")

    def update(self, plain: str, steered: str) -> None:
        with self._lock:
            self._texts = (plain, steered)

    @property
    def texts(self) -> tuple[str, str]:
        with self._lock:
            return self._texts


def _verdict(answer: Any, gold: str | None) -> str:
    if answer.correct is None:
        return f"answer **{answer.answer or '–'}**"
    mark = ":green[✓ correct]" if answer.correct else f":red[✗ wrong] (gold {gold})"
    return f"answer **{answer.answer or '–'}** · {mark}"


def _columns(plain: str, steered: str, title: str, result: SteeringComparison | None = None) -> None:
    left, right = st.columns(2, gap="large")
    for col, name, text, side in ((left, "Plain", plain, "plain"), (right, title, steered, "steered")):
        col.markdown(f"**{name}**")
        col.code(text or " ", language=None, wrap_lines=True)
        if result is not None:
            col.markdown(_verdict(getattr(result, side), result.gold))


@st.fragment(run_every=0.5)
def _live(name: str, title: str) -> None:
    job = background.get(name)
    live = (state.get(state.STEER_LIVE) or {}).get(name)
    if job is None or job.finished or live is None:
        st.rerun()
        return
    _columns(*live.texts, title)


def render(model: LoadedModel, units: Sequence[Unit], sae: Any, *, prefix: str, problems: Sequence[Any] = ()
           ) -> None:
    """The steering form and its side-by-side output for ``units`` (their ``sae`` for features)."""
    st.subheader("Steer a generation")
    if not units:
        st.info("No units to steer.")
        return
    who = units[0].short_label if len(units) == 1 else f"{len(units)} units"
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    kind = c1.radio("Steering", STEER_KINDS, key=f"{prefix}_steer_kind", horizontal=True, index=2,
                    help="clamp: set every unit to the value; scale: multiply its activation; add: add the value "
                         "(at every position, prompt included). Features are changed through the SAE's decoder "
                         "with its error term kept.")
    value = float(c2.number_input("Value", value=DEFAULTS[kind], step=1.0, key=f"{prefix}_steer_value_{kind}"))
    max_new = int(c3.number_input("Max new tokens", min_value=1, max_value=512, value=96, step=16,
                                  key=f"{prefix}_steer_tokens"))
    ids = [p.id for p in problems]
    picked = st.selectbox("Prompt", [*ids, FREE_PROMPT], key=f"{prefix}_steer_problem")
    if picked == FREE_PROMPT:
        question: Any = st.text_area("Question", key=f"{prefix}_steer_text", height=80)
    else:
        question = problems[ids.index(picked)]
        st.caption(question.question)
    steering = Steering(kind, value)
    name = f"{prefix}_steer"
    key = (model.fingerprint, tuple(u.label for u in units), kind, value, max_new,
           picked if picked != FREE_PROMPT else question)
    if st.button(f"Generate plain and steered ({steering.describe()} on {who})", key=f"{prefix}_steer_run",
                 type="primary", disabled=not (question if isinstance(question, str) else True)):
        live = LiveText()
        state.reset(state.STEER_LIVE, {**(state.get(state.STEER_LIVE) or {}), name: live})
        background.start(name, lambda progress: steer_generation(
            model, question, units, steering, sae=sae, max_new_tokens=max_new, on_text=live.update,
            progress=progress), label=f"Steering: {steering.describe()}", key=key)
    job = background.get(name)
    if job is None or job.key != key:
        return
    title = f"Steered ({steering.describe()})"
    if job.running:
        _live(name, title)
    elif job.succeeded:
        result: SteeringComparison = job.result
        _columns(result.plain.text, result.steered.text, title, result)
        first = result.first_difference
        st.caption("Identical token for token." if first is None else
                   f"The answers part at new token {first} (of {len(result.steered.token_ids)}).")
    else:
        background.show(name, key)


def units_and_sae(model: LoadedModel, units: Sequence[Unit]) -> tuple[bool, Any]:
    """``(ok, sae)`` for steering ``units`` together (see :func:`app.widgets.sae_for_units`)."""
    attribution = state.attribution(model)
    return widgets.sae_for_units(model, units, attribution[1] if attribution else None)
