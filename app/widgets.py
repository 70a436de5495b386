"""Small widgets and lookups several pages share (problem-set pickers, unit pickers, set edits).

They call the core only to read (load problems, parse a unit); anything long goes through
:mod:`app.background`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from app import resources, state
from yfpo_core.errors import YfpoError, user_message
from yfpo_core.models import LoadedModel
from yfpo_core.units.neuron_set import NeuronSet, NeuronSetError
from yfpo_core.problems import Problem, list_sources
from yfpo_core.units.space import unit_problem
from yfpo_core.units.unit import Unit

if TYPE_CHECKING:
    from yfpo_core.attribution import AttributionResult
    from yfpo_core.saes.sae import LoadedSAE

OFFLINE_SOURCES = ("gsm8k-test-100", "gsm-symbolic", "toy")


def is_toy(model: LoadedModel) -> bool:
    """The toy family reads toy problems; the character-level tokenizer cannot even spell GSM8K's."""
    return model.native_problems == "toy"


def problem_sources() -> list[str]:
    """Offline named sources first; the hub one last (it needs the network)."""
    names = [s.name for s in list_sources()]
    return [n for n in OFFLINE_SOURCES if n in names] + [n for n in names if n not in OFFLINE_SOURCES]


def source_help() -> str:
    return "  \n".join(f"**{s.name}**: {s.description}" for s in list_sources())


def default_source(model: LoadedModel) -> str:
    return "toy" if is_toy(model) else "gsm8k-test-100"


def load_problems(source: str, limit: int | None) -> list[Problem] | None:
    """The problems, or ``None`` after showing the core's message."""
    try:
        return resources.get_problems(source, limit)
    except YfpoError as exc:
        st.error(user_message(exc) or str(exc))
        return None


def problem_set_picker(model: LoadedModel, source_key: str, limit_key: str, *, default_limit: int,
                       max_limit: int = 1000, columns: Sequence[Any] | None = None) -> tuple[str, int]:
    """Problem source + how many (kept widgets): returns ``(source, limit)``."""
    sources = problem_sources()
    state.default(source_key, default_source(model))
    if state.get(source_key) not in sources:
        state.reset(source_key, default_source(model))
    state.default(limit_key, default_limit)
    a, b = columns if columns is not None else st.columns(2)
    source = a.selectbox("Problem set", sources, key=source_key, help=source_help())
    limit = b.number_input("How many problems", min_value=1, max_value=max_limit, step=5, key=limit_key)
    return source, int(limit)


def unit_text(unit: Unit) -> str:
    """How a unit is typed on the Unit page: ``L1N4`` for a neuron, ``sae:<sae_id>:<index>`` for a feature
    (a feature's short label ``L1F4`` does not say which SAE)."""
    return unit.short_label if unit.kind == "neuron" else unit.label


def parse_unit(text: str, model: LoadedModel) -> Unit | None:
    """A unit typed by a person, range-checked against ``model`` (a feature against its SAE, which is
    loaded: ``sae:<sae_id>:<i>`` for an SAE this tab knows, or ``sae:<ref>:<i>`` with ``ref`` = ``default``,
    a folder or ``<release>/<sae_id>``); ``None`` after showing why not."""
    try:
        unit = Unit.parse(text)
    except ValueError as exc:
        st.error(user_message(exc) or str(exc))
        return None
    d_sae = None
    if unit.kind == "sae_feature":
        sae_id = unit.sae_id or ""
        known = sae_id in state.neuron_set(model).sae or sae_id in state.known_saes(model)
        sae = sae_of(model, sae_id) if known else load_sae(model, sae_id, missing=st.error)
        if sae is None:
            return None
        unit, d_sae = Unit("sae_feature", sae.hook_name, unit.index, sae_id=sae.sae_id), sae.d_sae
    problem = unit_problem(unit, model, d_sae)
    if problem:
        st.error(problem + ".")
        return None
    return unit


# -- SAEs ---------------------------------------------------------------------------------------------------
def default_sae(model: LoadedModel) -> tuple[str, Path] | None:
    """The name and folder of ``model``'s default SAE (the folder may not exist yet), or ``None``."""
    from yfpo_core.saes import sae as saes

    name = saes.DEFAULT_SAES.get(model.name)
    return (name, saes.default_sae_dir(model.name)) if name else None


def sae_train_command(model: LoadedModel) -> str:
    """The ``yfpo sae train`` command that makes ``model``'s default SAE."""
    from yfpo_core.saes import sae as saes

    return saes.default_sae_command(model.name)


def missing_default_sae(model: LoadedModel, show: Any = st.warning) -> bool:
    """When ``model`` has a default SAE whose folder is not there yet, say so with the command that makes
    it (through ``show``) and return True."""
    default = default_sae(model)
    if default is None or default[1].is_dir():
        return False
    name, folder = default
    show(f"The default SAE of {model.name}, `{name}`, is not there yet: no folder {folder}. The shipped SAEs are "
         "trained with sae-lens; make this one with the command below (then come back), or type the folder of "
         "another SAE.")
    st.code(sae_train_command(model), language="bash")
    return True


def cached_sae_loader(model: LoadedModel) -> Callable[[str], LoadedSAE]:
    """The core's SAE reading (:func:`~yfpo_core.saes.sae.resolve_sae_ref`) with the shared cache behind it:
    what the pages and the core's set functions (:mod:`yfpo_core.saes.set_saes`) load SAEs with."""
    from yfpo_core.saes.sae import resolve_sae_ref

    return lambda ref: resources.get_sae(resolve_sae_ref(ref, model), model)


def _shown_sae(model: LoadedModel, load: Callable[[], LoadedSAE]) -> LoadedSAE | None:
    """``load()``'s SAE, remembered in this tab by its id; ``None`` after saying in words why it failed."""
    try:
        sae = load()
    except YfpoError as exc:
        st.error(user_message(exc) or str(exc))
        return None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # a damaged folder, read by sae-lens
        st.error(f"cannot load the SAE: {type(exc).__name__}: {exc}. Point at a folder written by "
                 "`yfpo sae train` (cfg.json and sae_weights.safetensors).")
        return None
    state.remember_sae(model, sae.sae_id, sae.neuron_set_entry())
    return sae


def load_sae(model: LoadedModel, ref: str, *, missing: Any = st.warning) -> LoadedSAE | None:
    """The SAE ``ref`` (``default``, a folder, or ``<release>/<sae_id>``) for ``model``, through the shared
    cache; ``None`` after saying in words why it cannot be loaded (a default SAE not made yet through
    ``missing``, with the command that makes it). A loaded SAE is remembered by its id."""
    if ref.strip() == "default" and missing_default_sae(model, missing):
        return None
    return _shown_sae(model, lambda: cached_sae_loader(model)(ref))


UNIT_TYPES = ("MLP neurons", "SAE features")
SAE_CHOICES = ("the model's default SAE", "a local folder")


def unit_type_picker(model: LoadedModel, type_key: str, choice_key: str, path_key: str,
                     help: str = "MLP neurons (blocks.L.mlp.hook_post), or the features of a sparse autoencoder "
                                 "spliced in at its hook") -> tuple[bool, LoadedSAE | None]:
    """The unit type radio, then (for features) the SAE picker: ``(features, sae)``. Locate and Search share
    it so an SAE is chosen, loaded (through the shared cache) and described the same way on both; each page
    keeps its own choice under its own keys. ``sae`` is ``None`` for neurons, or after saying why the SAE
    cannot be had."""
    state.default(type_key, UNIT_TYPES[0])
    if state.get(type_key) not in UNIT_TYPES:
        state.reset(type_key, UNIT_TYPES[0])
    unit_type = st.radio("Unit type", UNIT_TYPES, key=type_key, horizontal=True, help=help)
    if unit_type != UNIT_TYPES[1]:
        return False, None
    return True, sae_picker(model, choice_key, path_key)


def sae_picker(model: LoadedModel, choice_key: str, path_key: str) -> LoadedSAE | None:
    """Which SAE's features: the model's default SAE (when it has one and it is there) or a folder typed by
    the user. Returns the loaded SAE, or ``None`` after saying why there is none."""
    default = default_sae(model)
    choices = SAE_CHOICES if default is not None else SAE_CHOICES[1:]
    state.default(choice_key, choices[0])
    if state.get(choice_key) not in choices:
        state.reset(choice_key, choices[0])
    state.default(path_key, "")
    c1, c2 = st.columns([2, 3])
    choice = c1.radio("SAE", choices, key=choice_key, horizontal=True,
                      help="The SAE whose features are used (spliced in with its error term, so the model's "
                           "output is unchanged)")
    if default is None:
        c1.caption(f"{model.name} has no default SAE; train one with `yfpo sae train --model {model.name} "
                   "--hook blocks.<L>.mlp.hook_post --out <folder>` and type its folder.")
    if choice == SAE_CHOICES[0]:
        default_name, folder = default
        if missing_default_sae(model):
            return None
        c2.caption(f"Default SAE `{default_name}` · folder `{folder}` (found)")
        sae = load_sae(model, str(folder))
    else:
        path = c2.text_input("SAE folder", key=path_key, placeholder="saes/my-sae",
                             help="A folder written by `yfpo sae train` or sae-lens's save_model (cfg.json, "
                                  "sae_weights.safetensors); or <release>/<sae_id> of a released SAE (online)")
        if not path.strip():
            st.info("Type the folder of an SAE trained for this model.")
            return None
        sae = load_sae(model, path)
    if sae is not None:
        quality = sae.meta.get("quality") or {}
        facts = [f"**{sae.sae_id}**: {sae.d_sae} features at `{sae.hook_name}`"]
        shown = {"l0": "L0", "explained_variance": "explained variance", "loss_recovered": "loss recovered"}
        facts += [f"{name} {quality[key]:.3g}" for key, name in shown.items()
                  if isinstance(quality.get(key), float | int)]
        st.caption(" · ".join(facts))
    return sae


def sae_of(model: LoadedModel, sae_id: str, result: AttributionResult | None = None) -> LoadedSAE | None:
    """The SAE a feature names (by ``sae_id``): the one of ``result`` when it ranked that SAE's features,
    else the one the current set or this tab recorded under that id. ``None`` after saying why not."""
    space = result.space if result is not None else None
    if space is not None and space.kind == "sae_feature" and space.sae_id == sae_id:
        return space.loaded
    entry = state.neuron_set(model).sae.get(sae_id) or state.known_saes(model).get(sae_id)
    if entry is None:
        st.error(f"SAE {sae_id!r} is not known in this tab: load it on the Locate page, or type its features "
                 "as sae:<folder>:<index>.")
        return None
    from yfpo_core.saes.set_saes import load_set_sae

    return _shown_sae(model, lambda: load_set_sae({sae_id: entry}, sae_id, model, where="this tab",
                                                  load=cached_sae_loader(model)))


def set_saes(model: LoadedModel, neuron_set: NeuronSet) -> dict[str, LoadedSAE] | None:
    """The SAEs of ``neuron_set``'s features (sae_id -> SAE) from the shared cache, for a run to take as they
    are; ``None`` after saying why one cannot be loaded."""
    from yfpo_core.saes.set_saes import load_set_saes

    try:
        return load_set_saes(neuron_set, neuron_set.units_only(), model, where="the current set",
                             load=cached_sae_loader(model))
    except YfpoError as exc:
        st.error(user_message(exc) or str(exc))
        return None


def sae_for_units(model: LoadedModel, units: Sequence[Unit], result: AttributionResult | None = None
                  ) -> tuple[bool, LoadedSAE | None]:
    """``(ok, sae)``: the one SAE the features among ``units`` belong to (``None`` for neurons only);
    ``ok`` is False after saying why the units cannot be tested together."""
    ids = sorted({u.sae_id or "" for u in units if u.kind == "sae_feature"})
    if not ids:
        return True, None
    if len(ids) > 1:
        st.error(f"These units are features of {len(ids)} SAEs ({', '.join(ids)}): test the features of one SAE "
                 "at a time.")
        return False, None
    shared = {u.hook_name for u in units if u.kind == "neuron"} & {u.hook_name for u in units if u.kind != "neuron"}
    if shared:
        st.error(f"These units mix neurons and SAE features at the same hook ({', '.join(sorted(shared))}): test "
                 "the neurons and the features separately.")
        return False, None
    sae = sae_of(model, ids[0], result)
    return sae is not None, sae


def add_units(model: LoadedModel, units: Sequence[Unit], scores: Sequence[float | None] | None = None,
              selection: dict[str, Any] | None = None, problems: dict[str, Any] | None = None,
              sae: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """Append the units not yet in the current set (keeping their scores); records where they came from.

    SAE features bring their SAE's entry into the set's ``sae`` section (from ``sae``, ``{sae_id: entry}``,
    or else from the SAEs this tab loaded). Returns how many were added. A set made of picks from several
    attributions says so in ``selection``.
    """
    for sae_id, entry in (sae or {}).items():
        state.remember_sae(model, sae_id, dict(entry))
    try:
        current, added = state.neuron_set(model).merge(units, scores, selection=selection, problems=problems,
                                                       sae=state.known_saes(model))
    except NeuronSetError as exc:
        st.error(user_message(exc) or str(exc))
        return 0
    state.set_neuron_set(model, current)
    return added


def remove_units(model: LoadedModel, units: Sequence[Unit]) -> int:
    current = state.neuron_set(model)
    removed = 0
    for unit in units:
        if unit in current:
            current = current.remove(unit)
            removed += 1
    state.set_neuron_set(model, current, undoable=bool(removed))
    return removed


def selection_of(event: Any, field: str) -> list:
    """Selected ``rows`` of an ``st.dataframe`` event or ``points`` of an ``st.plotly_chart`` event.

    Both attribute and dict access occur (a selection restored from session state is a plain dict).
    """
    if not event:
        return []
    selection = event.get("selection") if isinstance(event, Mapping) else getattr(event, "selection", None)
    if not selection:
        return []
    values = selection.get(field) if isinstance(selection, Mapping) else getattr(selection, field, None)
    return list(values or [])
