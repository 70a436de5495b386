"""Neuron sets: the units a user picked, as a JSON file they can export, share, edit and import again.

A :class:`NeuronSet` is an *ordered* list of MLP neurons and SAE features (the user ranks and reorders
them), each with an optional score, label and note, plus what is needed to trust the list later without
loading anything: the model it was made for (name, weights fingerprint, ``n_layers``, ``d_mlp``), the SAEs
its features come from (``d_sae``), how the units were selected and on which problems.

Why a format of our own, and why so strict on load: a set is applied to a model by index. A set made for
another model, or hand-edited into an out-of-range or duplicated unit, would silently train or ablate the
wrong neurons, or crash deep inside a hook. So every way in (:meth:`NeuronSet.create`, :meth:`~NeuronSet.add`,
:meth:`~NeuronSet.load`, :func:`~yfpo_core.units.neuronpedia.from_neuronpedia`) ends in the same checks,
and every failure is a :class:`NeuronSetError` that names the file, the problem and the fix. The document is plain JSON
(never pickle), described by ``yfpo_core/units/schemas/neuron_set.v1.schema.json`` and
``docs/neuron-set-format.md``; :mod:`~yfpo_core.units.document` reads, writes and checks it, and
:mod:`~yfpo_core.units.neuronpedia` converts Neuronpedia lists.

Sets are immutable: every edit returns a new set. That suits Streamlit (a set in ``st.session_state``
never changes under a widget) and makes undo a matter of keeping the old object.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yfpo_core.jsonio import JsonInputError, check_plain
from yfpo_core.units.document import (
    FORMAT,
    MAX_FILE_BYTES,
    MAX_UNITS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    NeuronSetError,
    check_created,
    check_header,
    check_model,
    check_schema,
    created_now,
    dumps,
    dims_of_model,
    parse_document,
    read_document_text,
    read_units,
    save_document,
    set_problem,
    too_large,
    unit_to_dict,
    yfpo_version,
)
from yfpo_core.units.set_unit import SetUnit, UnitRef, unit_key
from yfpo_core.units.unit import Unit

if TYPE_CHECKING:
    from yfpo_core.models.base import LoadedModel

__all__ = ["FORMAT", "SCHEMA_VERSION", "READABLE_SCHEMA_VERSIONS", "MAX_FILE_BYTES", "MAX_UNITS", "NeuronSetError",
           "SetUnit", "NeuronSet"]


@dataclass(frozen=True)
class NeuronSet:
    """An ordered set of units and the context needed to check and reuse it.

    Build one with :meth:`create` (from a loaded model), :meth:`load` / :meth:`from_json` /
    :meth:`from_dict`, or :func:`from_neuronpedia`. Constructing it directly also validates it. The set is
    immutable; the dicts it holds (``sae``, ``selection``, ``problems``) are private copies and must be
    treated as read-only.

    Attributes:
        units: The units in the user's order (a tuple, so the set stays immutable).
        model_name: Name of the model the set was made for (``LoadedModel.name``).
        model_fingerprint: That model's weights fingerprint, or ``None`` when unknown (an import).
        n_layers: The model's number of layers; layers are range-checked against it.
        d_mlp: The model's MLP width; neuron indices are range-checked against it.
        sae: Per ``sae_id``: ``{"hook_name": ..., "d_sae": int, "path_or_release": str}`` for every SAE a
            feature comes from (feature indices are range-checked against ``d_sae``).
        selection: How the units were chosen; documented keys ``method``, ``target``, ``params``, ``top_k``.
        problems: Which problems they were chosen on; documented keys ``source``, ``n``, ``ids``.
        name: Short name for lists and file names.
        description: Free text.
        created: When the set was made, ISO 8601 in UTC (``2025-01-31T12:00:00Z``).
        yfpo_version: Version of the workbench that made it.
    """

    units: tuple[SetUnit, ...]
    model_name: str
    model_fingerprint: str | None
    n_layers: int
    d_mlp: int
    sae: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    created: str = field(default_factory=lambda: created_now())
    yfpo_version: str = field(default_factory=lambda: yfpo_version())

    def __post_init__(self) -> None:
        sae = {str(k): dict(v) for k, v in copy.deepcopy(dict(self.sae)).items()}
        units = tuple(_fill_feature_hook(u if isinstance(u, SetUnit) else SetUnit(u), sae) for u in self.units)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "sae", sae)
        object.__setattr__(self, "selection", copy.deepcopy(dict(self.selection)))
        object.__setattr__(self, "problems", copy.deepcopy(dict(self.problems)))
        problem = set_problem(self.units, self.n_layers, self.d_mlp, self.sae, self.model_name)
        if problem:
            raise NeuronSetError(problem, where=self._where)

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, units: Sequence[Unit | SetUnit], model: LoadedModel, *,
               scores: Sequence[float | None] | Mapping[Unit, float | None] | None = None,
               selection: Mapping[str, Any] | None = None, problems: Mapping[str, Any] | None = None,
               name: str = "", description: str = "",
               sae: Mapping[str, Mapping[str, Any]] | None = None) -> NeuronSet:
        """A new set of ``units`` (in this order) for ``model``.

        Args:
            units: Units or set units; a :class:`SetUnit` keeps its label and note.
            model: The loaded model; its name, fingerprint and dims are recorded.
            scores: One score per unit (same order) or a mapping unit -> score; overrides the scores
                of :class:`SetUnit` items.
            selection: ``{"method", "target", "params", "top_k"}`` (free-form, those keys documented).
            problems: ``{"source", "n", "ids"}``.
            name: Short name.
            description: Free text.
            sae: Per ``sae_id`` of the features: ``{"hook_name", "d_sae", "path_or_release"}``.

        Raises:
            NeuronSetError: A unit is out of range or duplicated, a score is not finite, a feature's SAE
                is not described, or the scores do not match the units.
        """
        items = [u if isinstance(u, SetUnit) else SetUnit(u) for u in units]
        if scores is not None:
            if isinstance(scores, Mapping):
                items = [replace(u, score=scores.get(u.unit, u.score)) for u in items]
            else:
                if len(scores) != len(items):
                    raise NeuronSetError(f"got {len(scores)} scores for {len(items)} units. Pass one score per "
                                         "unit, in the same order, or a mapping from unit to score.")
                items = [replace(u, score=s) for u, s in zip(items, scores, strict=True)]
        n_layers, d_mlp = dims_of_model(model)
        return cls(units=tuple(items), model_name=str(model.name),
                   model_fingerprint=getattr(model, "fingerprint", None), n_layers=n_layers, d_mlp=d_mlp,
                   sae=dict(sae or {}), selection=dict(selection or {}), problems=dict(problems or {}),
                   name=name, description=description)

    # -- reading --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.units)

    def __iter__(self) -> Iterator[SetUnit]:
        return iter(self.units)

    def __contains__(self, ref: object) -> bool:
        try:
            self.position(ref)  # type: ignore[arg-type]
        except NeuronSetError:
            return False
        return True

    def position(self, ref: UnitRef) -> int:
        """Where a unit is in the set (0-based).

        Raises:
            NeuronSetError: It is not in the set, or the text names no unit.
        """
        if isinstance(ref, str):
            text = ref.strip()
            for i, su in enumerate(self.units):
                if text in (su.unit.label, su.unit.short_label):
                    return i
            try:
                ref = Unit.parse(text)
            except ValueError as exc:
                raise NeuronSetError(str(exc), where=self._where) from None
        unit = ref.unit if isinstance(ref, SetUnit) else ref
        if not isinstance(unit, Unit):
            raise NeuronSetError(f"cannot look up {ref!r}: pass a Unit, a SetUnit or a unit label.", self._where)
        wanted = unit_key(unit)
        for i, su in enumerate(self.units):
            if su.key == wanted:
                return i
        raise NeuronSetError(f"{unit.label} is not in the set. Check the label (the set's units are listed by "
                             "NeuronSet.units_only()).", where=self._where)

    def get(self, ref: UnitRef) -> SetUnit:
        """The set's entry for a unit (with its score, label and note)."""
        return self.units[self.position(ref)]

    def units_only(self) -> list[Unit]:
        """The units, in order, without scores and notes."""
        return [su.unit for su in self.units]

    def by_layer(self) -> dict[str, list[int]]:
        """Neuron indices per hook name, for building hooks: ``{"blocks.1.mlp.hook_post": [3, 17]}``.

        Hooks come in layer order and indices are sorted, so the result does not depend on the user's
        ordering. SAE features are not included (they need their SAE): see :meth:`features_by_sae`.
        """
        out: dict[str, list[int]] = {}
        for unit in sorted((su.unit for su in self.units if su.unit.kind == "neuron"),
                           key=lambda u: (u.layer, u.index)):
            out.setdefault(unit.hook_name, []).append(unit.index)
        return out

    def features_by_sae(self) -> dict[str, list[int]]:
        """Feature indices per ``sae_id`` (sorted), the feature counterpart of :meth:`by_layer`."""
        out: dict[str, list[int]] = {}
        for unit in sorted((su.unit for su in self.units if su.unit.kind == "sae_feature"),
                           key=lambda u: (u.sae_id or "", u.index)):
            out.setdefault(unit.sae_id or "", []).append(unit.index)
        return out

    # -- editing (each returns a new set) -----------------------------------------------------------------
    def add(self, unit: UnitRef, *, score: float | None = None, label: str = "", note: str = "",
            position: int | None = None) -> NeuronSet:
        """A copy with ``unit`` inserted at ``position`` (default: at the end).

        A :class:`SetUnit` is added as it is (the keywords are ignored). A feature whose hook is unknown
        (read with ``Unit.parse("sae:<id>:<i>")``) gets the hook of its SAE from :attr:`sae`.

        Raises:
            NeuronSetError: The unit is already in the set, or out of range, or its SAE is not described
                (add it first with :meth:`with_sae`).
        """
        if isinstance(unit, str):
            try:
                unit = Unit.parse(unit)
            except ValueError as exc:
                raise NeuronSetError(str(exc), where=self._where) from None
        entry = unit if isinstance(unit, SetUnit) else SetUnit(unit, score, label, note)
        for i, su in enumerate(self.units):
            if su.key == entry.key:
                raise NeuronSetError(f"{entry.unit.label} is already in the set (position {i}). Edit that "
                                     "entry instead (with_note, move, remove).", where=self._where)
        units = list(self.units)
        units.insert(len(units) if position is None else position, entry)
        return replace(self, units=tuple(units))

    def remove(self, ref: UnitRef) -> NeuronSet:
        """A copy without the unit (a :class:`Unit`, :class:`SetUnit` or label)."""
        i = self.position(ref)
        return replace(self, units=self.units[:i] + self.units[i + 1:])

    def move(self, ref: UnitRef, new_position: int) -> NeuronSet:
        """A copy with the unit moved to ``new_position`` (0-based; ``-1`` is the end)."""
        i = self.position(ref)
        n = len(self.units)
        if not -n <= new_position < n:
            raise NeuronSetError(f"position {new_position} is out of range for a set of {n} units. Use 0 to "
                                 f"{n - 1}.", where=self._where)
        units = list(self.units)
        entry = units.pop(i)
        units.insert(new_position % n, entry)
        return replace(self, units=tuple(units))

    def with_note(self, ref: UnitRef, note: str) -> NeuronSet:
        """A copy where the unit's note is ``note``."""
        return self._with_entry(ref, note=str(note))

    def with_label(self, ref: UnitRef, label: str) -> NeuronSet:
        """A copy where the unit's label is ``label``."""
        return self._with_entry(ref, label=str(label))

    def with_score(self, ref: UnitRef, score: float | None) -> NeuronSet:
        """A copy where the unit's score is ``score``."""
        return self._with_entry(ref, score=score)

    def merge(self, units: Sequence[Unit], scores: Sequence[float | None] | None = None, *,
              selection: Mapping[str, Any] | None = None, problems: Mapping[str, Any] | None = None,
              sae: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[NeuronSet, int]:
        """A copy with the units of ``units`` not yet in the set appended (with their scores), and how many.

        Features bring their SAE's entry (``{"hook_name", "d_sae", "path_or_release"}``) from ``sae`` into
        the set's ``sae`` section when it does not describe it yet. When units were added, ``selection`` and
        ``problems`` say where they came from; a set made of picks from several methods or targets says
        ``{"method": "mixed", "params": {"methods": [...]}}``.

        Raises:
            NeuronSetError: As :meth:`add` (out of range, an undescribed SAE).
        """
        current = self
        scores = list(scores) if scores is not None else [None] * len(units)
        sae = sae or {}
        for sae_id in sorted({u.sae_id for u in units if u.kind == "sae_feature"} - set(current.sae)):
            entry = sae.get(sae_id or "")
            if entry is not None:
                current = current.with_sae(sae_id, hook_name=entry["hook_name"], d_sae=int(entry["d_sae"]),
                                           path_or_release=str(entry.get("path_or_release", "")))
        added = 0
        for unit, score in zip(units, scores, strict=True):
            if unit not in current:
                current = current.add(unit, score=score)
                added += 1
        if added and selection:
            old = current.selection
            same = all(old.get(k) == selection.get(k) for k in ("method", "target"))
            if old and not same:
                methods = sorted({str(old.get("method")), str(selection.get("method"))} - {"None"})
                selection = {"method": "mixed", "params": {"methods": methods}}
            current = replace(current, selection=dict(selection), problems=dict(problems or current.problems))
        return current, added

    def with_sae(self, sae_id: str, *, hook_name: str, d_sae: int, path_or_release: str = "") -> NeuronSet:
        """A copy that describes SAE ``sae_id``, so that its features can be added and range-checked."""
        sae = {**self.sae, sae_id: {"hook_name": hook_name, "d_sae": int(d_sae), "path_or_release": path_or_release}}
        return replace(self, sae=sae)

    def rebind(self, model: LoadedModel) -> NeuronSet:
        """A copy recorded as made for ``model`` (its name, fingerprint and dims), e.g. to carry a set over
        to a fine-tune. Every unit is range-checked against the new model."""
        n_layers, d_mlp = dims_of_model(model)
        return replace(self, model_name=str(model.name), model_fingerprint=getattr(model, "fingerprint", None),
                       n_layers=n_layers, d_mlp=d_mlp)

    def _with_entry(self, ref: UnitRef, **changes: Any) -> NeuronSet:
        i = self.position(ref)
        units = list(self.units)
        units[i] = replace(units[i], **changes)
        return replace(self, units=tuple(units))

    @property
    def _where(self) -> str:
        return f"neuron set {self.name!r}" if self.name else "neuron set"

    # -- documents --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version 1) as plain Python data. Empty optional unit fields are left
        out, so hand-written files and written files look alike."""
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "created": self.created,
            "yfpo_version": self.yfpo_version,
            "model": {"name": self.model_name, "fingerprint": self.model_fingerprint,
                      "n_layers": self.n_layers, "d_mlp": self.d_mlp},
            "sae": copy.deepcopy(self.sae),
            "selection": copy.deepcopy(self.selection),
            "problems": copy.deepcopy(self.problems),
            "units": [unit_to_dict(su) for su in self.units],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The document as JSON text, ending with a newline.

        With an ``indent``, each unit sits on one line: files stay small, readable and diff line by line.
        ``indent=None`` gives compact JSON. NaN and infinity can never be written (the set rejects them).
        """
        return dumps(self.to_dict(), indent)

    @classmethod
    def from_dict(cls, data: Any, model: LoadedModel | None = None, *, allow_other_model: bool = False,
                  source: str = "neuron-set document") -> NeuronSet:
        """Read and validate a document (see :meth:`load` for the checks).

        Args:
            data: The parsed JSON.
            model: The loaded model the set will be used with, to check it was made for it.
            allow_other_model: Accept a set made for another model (still range-checked against ``model``).
            source: How messages name the document (the file path when loading).

        Raises:
            NeuronSetError: The document is not a valid neuron set, or was made for another model.
        """
        try:  # documents built in memory (the app's paste box, from_neuronpedia) skip parse_json's checks
            check_plain(data)
        except JsonInputError as exc:
            raise NeuronSetError(f"is not a usable document: {exc}. Fix it, or export the set again.",
                                 source) from None
        check_header(data, source)
        check_schema(data, source)
        units = read_units(data["units"], source)
        created = data.get("created", "")
        check_created(created, source)
        meta = data["model"]
        try:
            neuron_set = cls(units=tuple(units), model_name=meta["name"], model_fingerprint=meta.get("fingerprint"),
                             n_layers=meta["n_layers"], d_mlp=meta["d_mlp"], sae=data.get("sae", {}),
                             selection=data.get("selection", {}), problems=data.get("problems", {}),
                             name=data.get("name", ""), description=data.get("description", ""),
                             created=created, yfpo_version=data.get("yfpo_version", ""))
        except NeuronSetError as exc:
            raise NeuronSetError(exc.problem, source) from None
        if model is not None:
            check_model(neuron_set, model, allow_other_model, source)
        return neuron_set

    @classmethod
    def from_json(cls, text: str, model: LoadedModel | None = None, *, allow_other_model: bool = False,
                  source: str = "neuron-set JSON") -> NeuronSet:
        """Parse and validate JSON text (see :meth:`load`)."""
        if len(text) > MAX_FILE_BYTES:
            raise NeuronSetError(too_large(len(text)), source)
        return cls.from_dict(parse_document(text, source), model, allow_other_model=allow_other_model, source=source)

    # -- files ------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to ``path`` atomically (a temporary file in the same folder, then ``os.replace``),
        so a crash or a full disk never leaves a half-written set where a good one was.

        Pretty JSON is written; if that would exceed the load limit (:data:`MAX_FILE_BYTES`), compact JSON.

        Returns:
            The path written.

        Raises:
            NeuronSetError: Even compact JSON is too large to load back, or the file cannot be written.
        """
        return save_document(Path(path), self.to_json, self._where)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: LoadedModel | None = None, *,
             allow_other_model: bool = False) -> NeuronSet:
        """Read a neuron-set file and check it thoroughly.

        Checks, in order: size (refused above :data:`MAX_FILE_BYTES` before it is read), UTF-8 and JSON
        syntax, ``"format"``, ``"schema_version"``, number of units (:data:`MAX_UNITS`), the JSON Schema,
        ``layer`` agreeing with ``hook_name``, finite scores, duplicates, known ``sae_id``, index and
        layer ranges (against the recorded dims, and against ``model`` when given), and the model.

        Args:
            path: The file.
            model: The model the set will be used with. When given, the set must have been made for it
                (same fingerprint, or same name where the file records no fingerprint).
            allow_other_model: Accept a set made for another model; its units are then range-checked
                against ``model``. The set keeps its record of the original model (see :meth:`rebind`).

        Raises:
            NeuronSetError: With the file name, the problem and the fix.
        """
        path = Path(path)
        return cls.from_dict(parse_document(read_document_text(path), str(path)), model,
                            allow_other_model=allow_other_model, source=str(path))


# -- small helpers -------------------------------------------------------------------------------------------
def _fill_feature_hook(su: SetUnit, sae: Mapping[str, Mapping[str, Any]]) -> SetUnit:
    unit = su.unit
    if unit.kind == "sae_feature" and not unit.hook_name and unit.sae_id in sae:
        return replace(su, unit=replace(unit, hook_name=str(sae[unit.sae_id].get("hook_name", ""))))
    return su
