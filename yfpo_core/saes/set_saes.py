"""Which SAE a feature belongs to: the one place that turns a neuron set's ``sae`` section, or a feature
typed as ``sae:<ref>:<index>``, into loaded SAEs.

A set names an SAE by a short ``sae_id`` and describes it in its ``sae`` section (``hook_name``, ``d_sae``,
``path_or_release``). The trainer (:mod:`yfpo_core.runs.inputs`), the CLI (ablation, steering, inspection)
and the app's pickers all read it here, so they refuse the same sets with the same words. Each takes a
``load`` function (``ref -> LoadedSAE``): :func:`~yfpo_core.saes.sae.load_sae` by default, the app's
cached loader in the app, so an SAE already in memory is not read again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel
from yfpo_core.saes.sae import LoadedSAE, SAEError, load_sae
from yfpo_core.units.unit import Unit

LoadFn = Callable[[str], LoadedSAE]  # an SAE reference (resolve_sae_ref's forms) -> the loaded SAE


def _loader(model: LoadedModel, device: str, load: LoadFn | None) -> LoadFn:
    return load if load is not None else (lambda ref: load_sae(ref, model, device=device))


def set_sae_ref(entries: Mapping[str, Mapping[str, Any]], sae_id: str, where: str = "the neuron set") -> str:
    """The ``path_or_release`` of SAE ``sae_id`` in a set's ``sae`` section ``entries``.

    Raises:
        YfpoError: The section does not describe ``sae_id``, or gives it no ``path_or_release``.
    """
    info = entries.get(sae_id)
    if info is None:
        raise YfpoError(f"{where}: its features come from SAE {sae_id!r}, which its \"sae\" section does not "
                        "describe; add it with its hook_name, d_sae and path_or_release")
    ref = str(info.get("path_or_release") or "")
    if not ref:
        raise YfpoError(f"{where}: SAE {sae_id!r} has no path_or_release in the set's \"sae\" section, so its "
                        "features cannot be read; set it to the SAE's folder (or <release>/<sae_id>, or default)")
    return ref


def load_set_sae(entries: Mapping[str, Mapping[str, Any]], sae_id: str, model: LoadedModel, device: str = "cpu",
                 where: str = "the neuron set", load: LoadFn | None = None) -> LoadedSAE:
    """Load SAE ``sae_id`` as a set's ``sae`` section ``entries`` describes it, and check that it is the SAE
    the set recorded (same hook, same width).

    Raises:
        YfpoError: The entry is missing or empty, the SAE cannot be loaded, or it is another SAE.
    """
    ref = set_sae_ref(entries, sae_id, where)
    info = entries[sae_id]
    try:
        loaded = _loader(model, device, load)(ref)
    except YfpoError as exc:
        raise YfpoError(f"{where}: cannot load SAE {sae_id!r} from {ref!r} to read its features: {exc}") from None
    if loaded.hook_name != info.get("hook_name") or loaded.d_sae != info.get("d_sae"):
        raise YfpoError(f"{where}: SAE {sae_id!r} at {ref!r} reads {loaded.hook_name} with d_sae = {loaded.d_sae}, "
                        f"but the set records {info.get('hook_name')} with d_sae = {info.get('d_sae')}: it is "
                        "another SAE; fix path_or_release")
    return loaded


def feature_sae_ids(units: Sequence[Unit]) -> list[str]:
    """The ids of the SAEs the features among ``units`` come from, sorted."""
    return sorted({u.sae_id for u in units if u.kind == "sae_feature" and u.sae_id})


def load_set_saes(neuron_set: Any, units: Sequence[Unit], model: LoadedModel, device: str = "cpu",
                  where: str = "the neuron set", load: LoadFn | None = None,
                  given: Mapping[str, LoadedSAE] | None = None) -> dict[str, LoadedSAE]:
    """The SAE of every feature in ``units`` (sae_id -> :class:`LoadedSAE`), from ``neuron_set``'s ``sae``
    section; an SAE in ``given`` (already loaded by the caller) is used as it is, after the same check
    that it is the one the set records."""
    given = given or {}
    return {sae_id: load_set_sae(neuron_set.sae, sae_id, model, device, where,
                                 load=(lambda ref, sae_id=sae_id: given[sae_id]) if sae_id in given else load)
            for sae_id in feature_sae_ids(units)}


def single_set_sae(neuron_set: Any, model: LoadedModel, device: str = "cpu",
                   load: LoadFn | None = None) -> LoadedSAE | None:
    """The SAE a set's features belong to when an analysis takes one SAE (ablation, steering), or ``None``
    for a set of neurons.

    Raises:
        YfpoError: The set mixes the features of several SAEs, or its SAE cannot be loaded.
    """
    ids = feature_sae_ids(neuron_set.units_only())
    if not ids:
        return None
    if len(ids) > 1:
        raise YfpoError("this set mixes features of several SAEs; ablate or steer them one SAE at a time")
    return load_set_sae(neuron_set.sae, ids[0], model, device, load=load)


def typed_feature(text: str, model: LoadedModel, device: str = "cpu", load: LoadFn | None = None,
                  sae: LoadedSAE | None = None) -> tuple[Unit, LoadedSAE]:
    """A feature typed as ``sae:<ref>:<index>`` (``ref``: ``default``, a folder or ``<release>/<sae_id>``)
    and its loaded SAE; ``sae``, when given, is used instead of loading ``ref`` again.

    Raises:
        YfpoError: The text is not of that form, or the SAE cannot be loaded.
    """
    ref, _, index = text.strip().removeprefix("sae:").rpartition(":")
    if not text.strip().startswith("sae:") or not ref or not index.isdigit():
        raise SAEError("write a feature as sae:<ref>:<index>, e.g. sae:default:123")
    sae = sae if sae is not None else _loader(model, device, load)(ref)
    return Unit("sae_feature", sae.hook_name, int(index), sae_id=sae.sae_id), sae
