"""Neuron set page: the picked units as an editable list; export and import as JSON or a Neuronpedia list.

The set itself is an immutable :class:`~yfpo_core.units.neuron_set.NeuronSet` in session state: every edit
(label, note, order, removal) builds a new set through the core's methods, which re-validate it, so what
is exported is always a file the core reads back. Imports show the core's :class:`NeuronSetError` text
in the page (made for another model, out-of-range unit, bad JSON, ...), never a traceback.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from app import state, widgets
from app.sidebar import required_model
from yfpo_core.errors import user_message
from yfpo_core.jsonio import parse_json
from yfpo_core.models import LoadedModel
from yfpo_core.units.neuron_set import NeuronSet, NeuronSetError
from yfpo_core.units.neuronpedia import from_neuronpedia, to_neuronpedia

QUICK_LIST_MAX = 150  # Neuronpedia's quick-list URLs take at most this many features


def _frame(current: NeuronSet) -> pd.DataFrame:
    return pd.DataFrame([{"#": i, "unit": su.unit.short_label, "SAE": su.unit.sae_id or "",
                          "hook:index": su.unit.label, "score": su.score, "label": su.label, "note": su.note,
                          "remove": False}
                         for i, su in enumerate(current.units)],
                        columns=["#", "unit", "SAE", "hook:index", "score", "label", "note", "remove"])


def _text(value: Any) -> str:
    """A cell's text ("" for a cleared cell, which the editor hands back as None or NaN)."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _apply_edits(model: LoadedModel, current: NeuronSet, edited: pd.DataFrame) -> None:
    """Labels, notes and removals from the table, applied through the core (which validates each)."""
    changed = current
    removed = []
    for su, (_, row) in zip(current.units, edited.iterrows(), strict=True):
        label, note = _text(row["label"]), _text(row["note"])
        if label != su.label:
            changed = changed.with_label(su.unit, label)
        if note != su.note:
            changed = changed.with_note(su.unit, note)
        if bool(row["remove"]):
            removed.append(su.unit)
    for unit in removed:
        changed = changed.remove(unit)
    if changed is not current:
        state.set_neuron_set(model, changed, undoable=bool(removed))
        st.rerun()


def _table(model: LoadedModel, current: NeuronSet) -> None:
    # The key follows the order of the units: after a move or removal the editor starts fresh instead of
    # re-applying old row edits to rows that now hold other units.
    order = hash(tuple(su.unit.label for su in current.units))
    edited = st.data_editor(_frame(current), key=f"set_editor_{order}", hide_index=True, width="stretch",
                            disabled=["#", "unit", "SAE", "hook:index", "score"], num_rows="fixed",
                            column_config={
                                "hook:index": st.column_config.TextColumn(width="large"),
                                "SAE": st.column_config.TextColumn(help="For an SAE feature, the id of its SAE "
                                                                        "(empty for a neuron)"),
                                "score": st.column_config.NumberColumn(format="%.4g"),
                                "label": st.column_config.TextColumn(width="medium", help="Short name; exported to "
                                                                     "Neuronpedia as the description"),
                                "note": st.column_config.TextColumn(width="large"),
                                "remove": st.column_config.CheckboxColumn(help="Tick to remove the unit")})
    _apply_edits(model, current, edited)
    c1, c2, c3, c4, c5 = st.columns([3, 1, 1, 1, 1], vertical_alignment="bottom")
    units = [su.unit for su in current.units]
    unit = c1.selectbox("Unit", units, format_func=lambda u: f"{u.short_label} ({u.label})", key="set_move_unit")
    i = units.index(unit)
    moves = {"top": (0, ":material/vertical_align_top:"), "up": (max(i - 1, 0), ":material/arrow_upward:"),
             "down": (min(i + 1, len(units) - 1), ":material/arrow_downward:")}
    for col, (text, (position, icon)) in zip((c2, c3, c4), moves.items(), strict=True):
        if col.button(text.capitalize(), icon=icon, key=f"set_move_{text}", disabled=position == i, wrap=True):
            state.set_neuron_set(model, current.move(unit, position))
            st.rerun()
    if c5.button("Inspect", icon=":material/biotech:", key="set_inspect", wrap=True):
        from app import nav
        from app.views.unit import focus

        focus(unit)
        nav.switch_to("unit")


def _header(model: LoadedModel, current: NeuronSet) -> None:
    c1, c2 = st.columns([1, 2])
    # Keyed by the set's round: after an import, a clear or an undo the boxes start from the new set's name
    # (a kept box would write the old name back over it).
    round_ = f"{model.fingerprint}_{state.get(state.SET_IMPORT_ROUND)}"
    name = c1.text_input("Name", value=current.name, key=f"set_name_{round_}", max_chars=120)
    description = c2.text_input("Description", value=current.description, key=f"set_description_{round_}")
    if (name, description) != (current.name, current.description):
        state.set_neuron_set(model, replace(current, name=name, description=description))
        st.rerun()
    facts = [f"**{len(current)} units**", f"model `{current.model_name}` (`{current.model_fingerprint}`)"]
    if current.selection:
        facts.append(f"selected by {current.selection.get('method')} / {current.selection.get('target', '–')}")
    if current.problems:
        facts.append(f"on {current.problems.get('n', '?')} {current.problems.get('source', '')} problems")
    st.markdown(" · ".join(facts))
    for sae_id, indices in current.features_by_sae().items():
        entry = current.sae.get(sae_id, {})
        st.caption(f"SAE `{sae_id}`: {len(indices)} feature{'s' if len(indices) != 1 else ''} in the set, of "
                   f"{entry.get('d_sae', '?')} at `{entry.get('hook_name', '?')}` · from "
                   f"`{entry.get('path_or_release') or '?'}`")


def _export(current: NeuronSet) -> None:
    st.subheader("Export")
    text = current.to_json()
    stem = (current.name or "neuron-set").replace(" ", "-")
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    c1.download_button("Neuron set JSON", text, icon=":material/download:", file_name=f"{stem}.json",
                       mime="application/json", key="set_download", type="primary", wrap=True)
    model_id = c3.text_input("Neuronpedia model id", value=current.model_name, key="set_np_model",
                             help="Neuronpedia's id of this model (e.g. gpt2-small); neurons are listed as "
                                  "layer = <layer>, index = <neuron>")
    listing = to_neuronpedia(current, model_id=model_id or None)
    c2.download_button("Neuronpedia list", json.dumps(listing, indent=2), icon=":material/download:",
                       file_name=f"{stem}.neuronpedia.json", mime="application/json", key="set_download_np",
                       wrap=True)
    with st.expander("Show the JSON"):
        st.code(text, language="json")
    if listing["features"]:
        quick = [{"modelId": f["modelId"], "layer": f["layer"], "index": f["index"]}
                 for f in listing["features"][:QUICK_LIST_MAX]]
        url = ("https://www.neuronpedia.org/quick-list/?name=" + urllib.parse.quote(current.name or stem)
               + "&features=" + urllib.parse.quote(json.dumps(quick, separators=(",", ":"))))
        with st.expander("Neuronpedia quick-list link"):
            st.caption("Opens the units on neuronpedia.org (online; only for models Neuronpedia hosts). "
                       + (f"First {QUICK_LIST_MAX} units only." if len(listing["features"]) > QUICK_LIST_MAX else ""))
            st.code(url, language=None)


def _parse(text: str, model: LoadedModel, allow_other_model: bool) -> NeuronSet:
    """A workbench set or a Neuronpedia list (told apart by their keys), validated against ``model``."""
    try:
        data: Any = parse_json(text)  # deep nesting and lone surrogates are ValueErrors here, not crashes
    except ValueError:
        data = None  # NeuronSet.from_json words the JSON error (line, column, fix)
    if isinstance(data, list) or (isinstance(data, dict) and "features" in data and "format" not in data):
        return from_neuronpedia(data, model)
    imported = NeuronSet.from_json(text, model, allow_other_model=allow_other_model)
    return imported.rebind(model) if allow_other_model else imported


def _chosen_text(upload: Any, pasted: str, round_: int) -> tuple[str, str] | None:
    """(text, where it came from) of the import source: the file or the pasted text, whichever is given; with
    both, the one the user picks (nothing is imported until then: neither is ever ignored silently)."""
    sources = []
    if upload is not None:
        sources.append(f"the file {upload.name}")
    if pasted.strip():
        sources.append("the pasted text")
    if not sources:
        return None
    choice = sources[0]
    if len(sources) == 2:
        choice = st.radio("A file and a pasted text are both given: import which?", sources, index=None,
                          key=f"set_import_which_{round_}", horizontal=True)
        if choice is None:
            return None
    if choice == "the pasted text":
        return pasted, "pasted text"
    try:
        return upload.getvalue().decode("utf-8-sig"), upload.name
    except UnicodeDecodeError:
        st.error(f"{upload.name}: is not UTF-8 text. Neuron-set files are JSON in UTF-8.")
        return None


def _imported(model: LoadedModel, imported: NeuronSet, replace_set: bool) -> None:
    """Replace or extend the current set with ``imported``; the next run gets an empty uploader and paste box
    (new widget keys: a file uploader cannot be emptied any other way)."""
    if replace_set:
        state.set_neuron_set(model, imported, undoable=True)
        state.flash("success", f"Imported {len(imported)} units.")
    else:
        added = widgets.add_units(model, [su.unit for su in imported.units], [su.score for su in imported.units],
                                  sae=imported.sae)
        state.flash("success", f"Appended {added} new units.")
    st.session_state[state.SET_IMPORT_ROUND] += 1


def _import(model: LoadedModel, current: NeuronSet) -> None:
    st.subheader("Import")
    round_ = state.get(state.SET_IMPORT_ROUND)
    c1, c2 = st.columns(2)
    upload = c1.file_uploader("A neuron-set JSON or a Neuronpedia list", type=["json"], key=f"set_upload_{round_}")
    pasted = c2.text_area("…or paste its text", key=f"set_paste_{round_}", height=120)
    allow = st.checkbox("Accept a set made for another model (its units are range-checked against this one)",
                        key="set_allow_other", wrap=True)
    chosen = _chosen_text(upload, pasted, round_)
    if chosen is None:
        return
    text, where = chosen
    try:
        imported = _parse(text, model, allow)
    except NeuronSetError as exc:
        st.error(f"{where}: {user_message(exc) or str(exc)}")
        return
    st.success(f"{where}: a valid set of {len(imported)} units"
               + (f" (“{imported.name}”)" if imported.name else "") + f" for `{imported.model_name}`.")
    with st.container(horizontal=True):
        if st.button(f"Replace the current set ({len(current)} units)", key="set_import_replace", type="primary",
                     wrap=True):
            _imported(model, imported, replace_set=True)
            st.rerun()
        if st.button("Append to the current set", key="set_import_append", wrap=True):
            _imported(model, imported, replace_set=False)
            st.rerun()


def render() -> None:
    st.caption("The units you picked, in your order. Label them, note what you saw, export them for a notebook, "
               "a colleague or Neuronpedia, and train with them on the Train page.")
    model = required_model()
    current = state.neuron_set(model)
    _header(model, current)
    if len(current):
        _table(model, current)
    else:
        st.info("The set is empty: pick units on the **Locate** page (plot or table), add one from **Unit detail**, "
                "or import a file below.")
    with st.container(horizontal=True):
        if st.button("Clear the set", icon=":material/delete:", key="set_clear", disabled=not len(current), wrap=True):
            state.set_neuron_set(model, NeuronSet.create([], model, name=current.name), undoable=True)
            st.session_state[state.SET_IMPORT_ROUND] += 1
            st.rerun()
        if st.button("Undo", icon=":material/undo:", key="set_undo", disabled=not state.can_undo(model), wrap=True,
                     help="Restores the set as it was before the last clear, import or removal"):
            state.undo_neuron_set(model)
            st.session_state[state.SET_IMPORT_ROUND] += 1
            st.rerun()
    if len(current):
        _steer(model, current)
    _export(current)
    _import(model, current)


def _steer(model: LoadedModel, current: NeuronSet) -> None:
    from app import steering_panel

    units = current.units_only()
    ok, sae = steering_panel.units_and_sae(model, units)
    if ok:
        problems = widgets.load_problems(widgets.default_source(model), 20) or []
        steering_panel.render(model, units, sae, prefix="set", problems=problems)
