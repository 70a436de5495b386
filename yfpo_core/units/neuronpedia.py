"""Neuronpedia lists: a neuron set to and from the list format Neuronpedia exports and its quick-list URLs.

An imported list is validated like a loaded file (:meth:`NeuronSet.from_dict
<yfpo_core.units.neuron_set.NeuronSet.from_dict>`): it is just another way in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from yfpo_core.errors import clip
from yfpo_core.units.document import (
    FORMAT,
    MAX_UNITS,
    SAE_HOOK,
    SCHEMA_VERSION,
    NeuronSetError,
    created_now,
    dims_of_model,
    too_many,
    yfpo_version,
)
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import layer_of, mlp_post_hook

if TYPE_CHECKING:  # pragma: no cover
    from yfpo_core.models.base import LoadedModel

# ASCII digits only, at most 9 of them: "³".isdigit() is true but int("³") fails, and 5000 digits exceed
# what int() reads. No model has a billion layers or units.
_NP_LAYER = re.compile(r"(?P<layer>[0-9]{1,9})(?:-(?P<suffix>.+))?", re.DOTALL)
_NP_INDEX = re.compile(r"[0-9]{1,9}")


def to_neuronpedia(neuron_set: NeuronSet, model_id: str | None = None,
                   source_suffix: str | Mapping[str, str] | None = None) -> dict[str, Any]:
    """The set as a Neuronpedia list: ``{"name", "description", "features": [{"modelId", "layer",
    "index", "description"}]}``.

    A neuron's Neuronpedia ``layer`` is its layer number as text (``"20"``); a feature's is
    ``"<layer>-<suffix>"`` where the suffix is ``source_suffix`` (one for all SAEs, or a mapping from
    ``sae_id``) or else the ``sae_id``. ``index`` is text; ``description`` is the label, or else the note.

    Args:
        neuron_set: The set.
        model_id: Neuronpedia's model id (``"gpt2-small"``); default: the set's model name.
        source_suffix: Neuronpedia's source-set name for the SAE features (``"res-jb"``).
    """
    model_id = model_id or neuron_set.model_name
    features = []
    for su in neuron_set.units:
        unit = su.unit
        if unit.kind == "neuron":
            layer = str(unit.layer)
        else:
            suffix = source_suffix.get(unit.sae_id or "") if isinstance(source_suffix, Mapping) else source_suffix
            layer = f"{unit.layer}-{suffix or unit.sae_id}"
        features.append({"modelId": model_id, "layer": layer, "index": str(unit.index),
                         "description": su.label or su.note})
    return {"name": neuron_set.name, "description": neuron_set.description, "features": features}


def from_neuronpedia(data: Any, model: LoadedModel | None = None, *,
                     model_dims: Mapping[str, Any] | Sequence[int] | None = None,
                     saes: Mapping[str, Mapping[str, Any]] | None = None) -> NeuronSet:
    """A set from a Neuronpedia list (``{"name", "description", "features": [...]}``) or a bare list of
    ``{"modelId", "layer", "index"}`` as in Neuronpedia quick-list URLs.

    A numeric ``layer`` (``"20"``) is the neuron ``blocks.20.mlp.hook_post``; ``"20-res-jb"`` is a feature
    of the SAE ``res-jb`` (its ``sae_id`` is the suffix, or the whole ``"20-res-jb"`` where ``saes`` is keyed
    that way). A feature's ``description`` becomes its label. The result is validated like :meth:`NeuronSet.load`.

    Args:
        data: The parsed Neuronpedia JSON.
        model: The model the set is for; its name, fingerprint and dims are recorded.
        model_dims: Without a model: ``{"n_layers", "d_mlp"}`` (optionally ``"name"``) or
            ``(n_layers, d_mlp)``; the model name defaults to the list's ``modelId``.
        saes: Per SAE (keyed by suffix or by full Neuronpedia layer): ``{"hook_name", "d_sae",
            "path_or_release"}``. Needed for features: without ``d_sae`` they cannot be range-checked.

    Raises:
        NeuronSetError: Not a Neuronpedia list, several models in one list, a feature of an undescribed
            SAE, no model dims, or any check of :meth:`NeuronSet.load`.
    """
    where = "Neuronpedia list"
    if isinstance(data, list):
        items, name, description = data, "", ""
    elif isinstance(data, Mapping) and isinstance(data.get("features"), list):
        items, name, description = data["features"], str(data.get("name") or ""), str(data.get("description") or "")
    else:
        raise NeuronSetError("is not a Neuronpedia list: expected {\"features\": [...]} or a list of "
                             "{\"modelId\", \"layer\", \"index\"}. Export the list from Neuronpedia again.", where)
    if len(items) > MAX_UNITS:
        raise NeuronSetError(too_many(len(items)), where)
    saes = dict(saes or {})
    model_ids: set[str] = set()
    used_saes: dict[str, dict[str, Any]] = {}
    units: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "layer" not in item or "index" not in item:
            raise NeuronSetError(f"features[{i}] is not an object with \"layer\" and \"index\". Fix that entry.",
                                 where)
        if item.get("modelId"):
            model_ids.add(str(item["modelId"]))
        layer_text, index_text = str(item["layer"]).strip(), str(item["index"]).strip()
        match = _NP_LAYER.fullmatch(layer_text)
        if match is None or not _NP_INDEX.fullmatch(index_text):
            raise NeuronSetError(f"features[{i}] has layer {clip(layer_text, 40)!r} and index {clip(index_text, 40)!r}; expected a "
                                 "layer like \"20\" (a neuron) or \"20-res-jb\" (an SAE feature) and a "
                                 "non-negative integer index. Fix that entry.", where)
        layer, suffix = int(match["layer"]), match["suffix"]
        entry: dict[str, Any] = {"layer": layer, "index": int(index_text)}
        if suffix is None:
            entry.update(kind="neuron", hook_name=mlp_post_hook(layer))
        else:
            sae_id = layer_text if layer_text in saes else suffix
            if sae_id not in saes:
                raise NeuronSetError(
                    f"features[{i}] is a feature of Neuronpedia source {layer_text!r}, but no SAE is described "
                    f"for it. Pass saes={{{suffix!r}: {{\"hook_name\": ..., \"d_sae\": ..., "
                    "\"path_or_release\": ...}}.", where)
            hook = str(saes[sae_id].get("hook_name", ""))
            if not SAE_HOOK.fullmatch(hook) or layer_of(hook) != layer:
                raise NeuronSetError(f"features[{i}] is in layer {layer}, but the SAE given for {sae_id!r} reads "
                                     f"{hook!r}. Give each layer's SAE its own entry in saes, keyed by the full "
                                     f"Neuronpedia layer ({layer_text!r}).", where)
            used_saes[sae_id] = dict(saes[sae_id])
            entry.update(kind="sae_feature", hook_name=hook, sae_id=sae_id)
        if item.get("description"):
            entry["label"] = str(item["description"])
        units.append(entry)
    if len(model_ids) > 1:
        raise NeuronSetError(f"mixes models {sorted(model_ids)}; a neuron set is for one model. Split the list "
                             "by modelId.", where)
    model_id = next(iter(model_ids), None)
    if model is not None:
        n_layers, d_mlp = dims_of_model(model)
        model_meta = {"name": str(model.name), "fingerprint": getattr(model, "fingerprint", None),
                      "n_layers": n_layers, "d_mlp": d_mlp}
    elif model_dims is not None:
        dims = dict(model_dims) if isinstance(model_dims, Mapping) else dict(zip(("n_layers", "d_mlp"), model_dims))
        if not all(isinstance(dims.get(k), int) and dims[k] > 0 for k in ("n_layers", "d_mlp")):
            raise NeuronSetError(f"model_dims {model_dims!r} must give positive integers n_layers and d_mlp, "
                                 "e.g. {\"n_layers\": 30, \"d_mlp\": 1536}.", where)
        model_meta = {"name": str(dims.get("name") or model_id or "unknown"), "fingerprint": None,
                      "n_layers": dims.get("n_layers"), "d_mlp": dims.get("d_mlp")}
    else:
        raise NeuronSetError("cannot be range-checked without the model's size. Pass the loaded model, or "
                             "model_dims={\"n_layers\": ..., \"d_mlp\": ...}.", where)
    doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "name": name, "description": description,
           "created": created_now(), "yfpo_version": yfpo_version(), "model": model_meta, "sae": used_saes,
           "selection": {"method": "neuronpedia-import", "params": {"modelId": model_id} if model_id else {}},
           "problems": {}, "units": units}
    return NeuronSet.from_dict(doc, model, allow_other_model=True, source=where)
