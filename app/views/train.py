"""Train page: a YFPO (or plain DPO) run on the current neuron set, with live charts.

The form is generated from :class:`~yfpo_core.training.config.YFPOConfig`: every field gets a widget of
its type and its ``metadata["help"]`` as tooltip, so a new config field appears here without a UI change.
A run trains a private copy of the model in a :class:`~yfpo_core.runs.TrainingRun` thread and writes
everything to its run folder (config, the neuron set, metrics, checkpoints), so closing the tab loses
nothing: the Runs page lists it. The charts poll ``TrainingRun.snapshot()`` from an
``st.fragment(run_every=1)``, which redraws only themselves. Runs belong to the browser session that
started them: two tabs train independently and each sees its own.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import streamlit as st

from app import background, state, widgets
from app.components import training_chart
from app.sidebar import required_model
from yfpo_core.errors import YfpoError
from yfpo_core.models import LoadedModel
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.runs import RunDir, TrainingRun, new_run_dir, run_slug
from yfpo_core.runs.run_dir import NEURON_SET_FILE
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig, sequence_length
from yfpo_core.training.scope import lowest_trainable_layer, scope_problem, units_out_of_reach

GROUPS: dict[str, list[str]] = {
    "Objective": ["beta", "gamma", "variant", "pooling", "sign", "standardize", "target_share", "subtract_ref_margin"],
    "Data": ["problems", "n_train_problems", "pair_source", "pairs", "eval_problems", "n_eval_problems", "max_length",
             "n_train_templates"],
    "Optimisation": ["trainable", "last_k", "steps", "batch_pairs", "lr", "weight_decay", "warmup_steps", "grad_clip",
                     "seed"],
    "Evaluation and checkpoints": ["eval_every", "exact_every", "n_exact_problems", "checkpoint_every"],
}
# Set elsewhere: the model and device from the sidebar, the units from the current set, lambda and the
# random-set control by the widgets above the form.
# eval_seed (default seed + 1) and probe_set (default: the current set) are CLI/API options for experiments.
SPECIAL = {"model", "device", "neuron_set", "lam", "random_units_seed", "eval_seed", "probe_set"}
# The lever (neuron margin next to the neuron term's share of the update) first, then DPO's and held-out curves.
CHART_KEYS = [M.NEURON_MARGIN, M.AUX_SHARE, M.EVAL_NEURON_MARGIN, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES, M.LOSS,
              M.EVAL_RANKING_ACCURACY, M.EVAL_GOLD_LOGPROB]
DPO, YFPO = "DPO (λ = 0)", "YFPO (λ > 0: DPO + neuron-margin reward)"


def _choices() -> dict[str, tuple[str, ...]]:
    sources = tuple(widgets.problem_sources())
    from_metadata = {f.name: tuple(f.metadata["choices"]) for f in fields(YFPOConfig) if "choices" in f.metadata}
    return {**from_metadata, "problems": sources, "eval_problems": sources}


def _defaults(model: LoadedModel) -> dict[str, Any]:
    """The config's defaults, adapted to the model (toy models train on toy problems)."""
    out = {f.name: f.default for f in fields(YFPOConfig) if f.default is not MISSING}
    out["max_length"] = sequence_length(out["max_length"], model.model.cfg.n_ctx)
    out["last_k"] = min(out["last_k"], int(model.model.cfg.n_layers))
    if widgets.is_toy(model):
        out.update(problems="toy", eval_problems="toy", steps=30, eval_every=5, checkpoint_every=10)
    return out


def _field_widget(f: Any, default: Any, choices: dict[str, tuple[str, ...]], n_layers: int) -> Any:
    key = state.TRAIN_PREFIX + f.name
    state.default(key, "" if default is None else default)
    label, help_text = f.name, f.metadata.get("help")
    if f.name == "last_k":  # bounded by the model: more final blocks than it has cannot train
        return int(st.number_input(label, min_value=1, max_value=n_layers, step=1, key=key,
                                   help=f"{help_text}; this model has {n_layers} blocks, so at most {n_layers}"))
    if f.name in choices:
        options = list(choices[f.name])
        if state.get(key) not in options:
            options.append(state.get(key))
        return st.selectbox(label, options, key=key, help=help_text)
    if isinstance(default, bool):
        return st.checkbox(label, key=key, help=help_text)
    if isinstance(default, int):
        return int(st.number_input(label, step=1, key=key, help=help_text))
    if isinstance(default, float):
        return float(st.number_input(label, key=key, help=help_text, format="%g",
                                     step=1e-5 if 0 < abs(default) < 1e-3 else 0.05))
    value = st.text_input(label, key=key, help=help_text)
    return value.strip() or None


def _objective() -> tuple[float, int | None]:
    """λ (0 for DPO) and the random-set control seed, outside the form so that they update at once."""
    state.default(state.TRAIN_OBJECTIVE, YFPO)
    state.default(state.TRAIN_PREFIX + "lam", next(f.default for f in fields(YFPOConfig) if f.name == "lam"))
    state.default(state.TRAIN_RANDOM_CONTROL, False)
    c1, c2, c3 = st.columns([3, 2, 2], vertical_alignment="bottom")
    objective = c1.radio("Objective", [DPO, YFPO], key=state.TRAIN_OBJECTIVE, horizontal=True,
                         help="λ = 0 is plain DPO; λ > 0 adds the units' activation margin (chosen − rejected) "
                              "as an auxiliary reward.")
    lam = 0.0
    if objective == YFPO:
        lam_field = next(f for f in fields(YFPOConfig) if f.name == "lam")
        lam = float(c2.number_input("λ (lam)", min_value=0.0, step=0.05, format="%g", key=state.TRAIN_PREFIX + "lam",
                                    help=lam_field.metadata["help"]))
    control = c3.checkbox("Random-set control", key=state.TRAIN_RANDOM_CONTROL,
                          help=next(f for f in fields(YFPOConfig) if f.name == "random_units_seed").metadata["help"])
    return lam, (0 if control else None)


def _form(model: LoadedModel, current: NeuronSet) -> dict[str, Any] | None:
    lam, random_seed = _objective()
    if len(current):
        control = " — replaced by a random same-layer set (control)" if random_seed is not None else ""
        st.caption(f"Units: the current set, **{len(current)} units** (saved into the run folder as "
                   f"`{NEURON_SET_FILE}`){control}.")
    else:
        st.caption("Units: the current set is **empty**" + (" — YFPO needs units: pick some on the Locate page."
                                                            if lam > 0 else " (fine for plain DPO)."))
    defaults, choices = _defaults(model), _choices()
    n_layers = int(model.model.cfg.n_layers)
    last_k_key = state.TRAIN_PREFIX + "last_k"
    if isinstance(state.get(last_k_key), int) and state.get(last_k_key) > n_layers:  # kept from a deeper model
        st.info(f"last_k was {state.get(last_k_key)}, more than the {n_layers} blocks of {model.name}: set to "
                f"{n_layers}.")
        state.reset(last_k_key, n_layers)
    grouped = {name for names in GROUPS.values() for name in names}
    other = [f.name for f in fields(YFPOConfig) if f.name not in grouped | SPECIAL]
    by_name = {f.name: f for f in fields(YFPOConfig)}
    values: dict[str, Any] = {}
    with st.form("train_form"):
        state.default(state.TRAIN_RUN_NAME, "")
        st.text_input("Run name (optional)", key=state.TRAIN_RUN_NAME, help="Part of the run folder's name")
        groups = {**GROUPS, **({"Other": other} if other else {})}
        tabs = st.tabs(list(groups))
        for tab, (group, names) in zip(tabs, groups.items(), strict=True):
            with tab:
                cols = st.columns(3)
                for i, name in enumerate(n for n in names if n in by_name):
                    with cols[i % 3]:
                        values[name] = _field_widget(by_name[name], defaults.get(name), choices, n_layers)
        submitted = st.form_submit_button("Start training", icon=":material/play_arrow:", type="primary")
    _reach_warning(model, current, lam)
    if not submitted:
        return None
    values.update(lam=lam, random_units_seed=random_seed)
    return values


def _reach_warning(model: LoadedModel, current: NeuronSet, lam: float) -> None:
    """Warn when units of the set sit below the trainable blocks (as the form was last applied): the neuron
    term cannot move them, and before/after they change by exactly 0."""
    trainable, last_k = state.get(state.TRAIN_PREFIX + "trainable"), state.get(state.TRAIN_PREFIX + "last_k")
    if lam <= 0 or not len(current) or not isinstance(last_k, int):
        return
    n_layers = int(model.model.cfg.n_layers)
    try:
        config = YFPOConfig(trainable=trainable, last_k=last_k, neuron_set="current-set.json")
    except YfpoError:
        return  # the form's own check words it on Start
    units = current.units_only()
    frozen = [] if scope_problem(config, n_layers) else units_out_of_reach(config, units, n_layers)
    if not frozen:
        return
    lowest = lowest_trainable_layer(config, units, n_layers)
    names = ", ".join(u.short_label for u in frozen[:8]) + (", …" if len(frozen) > 8 else "")
    st.warning(f"**{len(frozen)} of the set's {len(units)} units sit below the trainable blocks** "
               f"(trainable={trainable}, last_k={last_k}: blocks {lowest}–{n_layers - 1} train), so training "
               f"cannot change them: {names}. Raise last_k to {n_layers - min(u.layer for u in frozen)} to reach "
               "them all, or use trainable=all.")


def _launch(model: LoadedModel, config: YFPOConfig, run_dir: Path, current: NeuronSet, saes: dict) -> TrainingRun:
    """Start the run on the shared model once no other analysis holds it.

    The trainer trains its own copy, taken under ``model.lock`` (so no other tab's hooks come with it); a
    second copy here would only double the memory. Waiting for the lock here (in the page's background job,
    when another tab is busy) keeps the page's "waiting for the model" message true until the run starts."""
    with model.lock:
        pass
    # The set and its SAEs go as they are in memory (the run does not read them back from the folder).
    return TrainingRun(config, run_dir=run_dir, base=model, neuron_set=current, saes=saes).start()


def _start(model: LoadedModel, current: NeuronSet, values: dict[str, Any]) -> None:
    values = {**values, "model": state.get(state.MODEL_NAME), "device": state.get(state.DEVICE),
              "neuron_set": "current-set.json" if len(current) else None}
    try:  # the core's rule, so that the length recorded is the length that trains
        values["max_length"] = sequence_length(values["max_length"], model.model.cfg.n_ctx)
        problem = scope_problem(YFPOConfig(**values), int(model.model.cfg.n_layers))  # validate before a folder
    except YfpoError as exc:
        st.error(str(exc))
        return
    except TypeError as exc:
        st.error(f"invalid training config: {exc}")
        return
    if problem:
        st.error(f"invalid training config: {problem}")
        return
    saes = widgets.set_saes(model, current)
    if saes is None:
        return
    name = (state.get(state.TRAIN_RUN_NAME) or "").strip().replace(" ", "-")
    run_dir = new_run_dir(name or run_slug(YFPOConfig(**values)))
    if len(current):
        values["neuron_set"] = str(current.save(RunDir(run_dir).neuron_set_path))
    config = YFPOConfig(**values)
    if model.lock.acquire(blocking=False):  # the usual case: start now, the live chart appears in this run
        try:
            state.train_runs().append(_launch(model, config, run_dir, current, saes))
        finally:
            model.lock.release()
        state.reset(state.TRAIN_WATCH, str(run_dir))  # the page shows the run just started, not the one before
        return
    # Another tab's analysis holds the model: copy it once that is done, without freezing this page.
    background.start("train_start", lambda progress: _launch(model, config, run_dir, current, saes),
                     key=str(run_dir), label="Waiting for the model (another analysis is using it), then copying it")


def _collect() -> None:
    job = background.take("train_start")
    if job is not None:
        state.train_runs().append(job.result)
        state.reset(state.TRAIN_WATCH, str(job.result.run_dir))


def _panel(run: TrainingRun) -> None:
    snap = run.snapshot()
    step, steps, activity = snap["step"], snap["steps"], snap["activity"]
    count = f" ({activity['done']}/{activity['total']})" if activity["total"] else ""
    if snap["state"] == "preparing" and run.alive:  # each phase of the preparation, with its own count
        text = f"**preparing** · {activity['message'] or 'starting'}{count} · {snap['elapsed_s']:.0f} s"
        fraction = activity["fraction"]
    else:
        text, fraction = f"**{snap['state']}** · step {step} of {steps}", min(step / max(steps, 1), 1.0)
        if run.alive and activity["message"]:  # work within a step: an evaluation
            text += f" · {activity['message']}{count}"
        if snap["eta_s"] is not None and run.alive:
            text += f" · about {snap['eta_s']:.0f} s left"
    c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
    c1.progress(fraction, text=text)
    if run.alive and c2.button("Stop", icon=":material/stop:", key="train_stop",
                               help="Stops after the current step; keeps a checkpoint"):
        run.stop()
        st.toast("Stopping after the current step…")
    if snap["error"]:
        st.error(f"The run failed: {snap['error']}")
    metrics = snap["metrics"]
    latest = {k: v for row in metrics for k, v in row.items()}
    shown = [k for k in CHART_KEYS if any(k in row for row in metrics)] or CHART_KEYS
    for start in range(0, len(shown), 4):  # rows of 4 tiles, so labels and values are not cut
        row = shown[start: start + 4]
        for col, key in zip(st.columns(4), row, strict=False):
            value = latest.get(key)
            col.metric(key, f"{value:.4g}" if isinstance(value, float | int) else "–")
    st.plotly_chart(training_chart(metrics, shown), key="train_chart")
    st.caption(f"{len(metrics)} points · run folder `{snap['run_dir']}`")
    if not run.alive and run.base is not None:
        run.base = None  # the private copy is only needed to build the trainer; free it


@st.fragment(run_every=1.0)
def _live(run_dir: str) -> None:
    run = next((r for r in state.train_runs() if str(r.run_dir) == run_dir), None)
    if run is None:
        return
    _panel(run)
    if not run.alive:
        st.rerun()  # once: the page then draws the finished run without polling


def render() -> None:
    st.caption("Fine-tune with YFPO = DPO + λ × the current units' activation margin between the preferred and "
               "the rejected answer. Each run trains its own copy of the model and lives on disk (Runs page).")
    model = required_model()
    current = state.neuron_set(model)
    values = _form(model, current)
    if values is not None:
        _start(model, current, values)
    _collect()
    background.show("train_start")
    runs = state.train_runs()
    if not runs:
        st.info("No run started in this tab yet. Runs started elsewhere (or before) are on the Runs page.")
        return
    st.subheader("This tab's runs")
    by_dir = {str(r.run_dir): r for r in reversed(runs)}  # newest first; options must be plain data
    run = by_dir[st.selectbox("Run", list(by_dir), key=state.TRAIN_WATCH,
                              format_func=lambda d: by_dir[d].run_dir.name)]
    if run.alive:
        _live(str(run.run_dir))
    else:
        _panel(run)
