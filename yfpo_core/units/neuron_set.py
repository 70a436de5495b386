"""Neuron sets: the units a user picked, as a JSON file they can export, share, edit and import again.

A :class:`NeuronSet` is an *ordered* list of MLP neurons and SAE features (the user ranks and reorders
them), each with an optional score, label and note, plus what is needed to trust the list later without
loading anything: the model it was made for (name, weights fingerprint, ``n_layers``, ``d_mlp``), the SAEs
its features come from (``d_sae``), how the units were selected and on which problems.

Why a format of our own, and why so strict on load: a set is applied to a model by index. A set made for
another model, or hand-edited into an out-of-range or duplicated unit, would silently train or ablate the
wrong neurons, or crash deep inside a hook. So every way in (:meth:`NeuronSet.create`, :meth:`~NeuronSet.add`,
:meth:`~NeuronSet.load`, :func:`from_neuronpedia`) ends in the same checks, and every failure is a
:class:`NeuronSetError` that names the file, the problem and the fix. The document is plain JSON
(never pickle), described by ``yfpo_core/units/schemas/neuron_set.v1.schema.json`` and
``docs/neuron-set-format.md``.

Sets are immutable: every edit returns a new set. That suits Streamlit (a set in ``st.session_state``
never changes under a widget) and makes undo a matter of keeping the old object.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yfpo_core.atomic import atomic_write_bytes
from yfpo_core.errors import YfpoError, clip
from yfpo_core.jsonio import JsonInputError, check_plain, parse_json
from yfpo_core.units.unit import Unit, layer_of, mlp_post_hook

if TYPE_CHECKING:
    from yfpo_core.models.base import LoadedModel

__all__ = [
    "FORMAT", "SCHEMA_VERSION", "READABLE_SCHEMA_VERSIONS", "MAX_FILE_BYTES", "MAX_UNITS",
    "NeuronSetError", "SetUnit", "NeuronSet", "schema", "to_neuronpedia", "from_neuronpedia",
]

FORMAT = "yfpo-neuron-set"
SCHEMA_VERSION = 1
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
MAX_FILE_BYTES = 10_000_000  # "10 MB"; a 100k-unit set with scores is about this size in compact form
MAX_UNITS = 100_000
SCHEMA_FILE = "neuron_set.v1.schema.json"
ALLOW_OTHER_MODEL_HINT = "allow_other_model=True (CLI: --allow-other-model)"
# Used with fullmatch: ``$`` and ``\d`` would also accept a trailing newline and non-ASCII digits.
_SAE_HOOK = re.compile(r"blocks\.[0-9]+\.[A-Za-z0-9_.]+")
_NEURON_HOOK = re.compile(r"blocks\.[0-9]+\.mlp\.hook_post")
# ASCII digits only, at most 9 of them: "³".isdigit() is true but int("³") fails, and 5000 digits exceed
# what int() reads. No model has a billion layers or units.
_NP_LAYER = re.compile(r"(?P<layer>[0-9]{1,9})(?:-(?P<suffix>.+))?", re.DOTALL)
_NP_INDEX = re.compile(r"[0-9]{1,9}")


class NeuronSetError(YfpoError):
    """A neuron set cannot be built, loaded or converted.

    Attributes:
        problem: What is wrong and how to fix it, without the location.
        where: The file or object concerned (``"picks.json"``, ``"neuron set 'top-50'"``), or ``None``.
    """

    def __init__(self, problem: str, where: str | None = None) -> None:
        self.problem = problem
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)


# -- the data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetUnit:
    """One unit of a set, with what the user or the selection method said about it.

    Attributes:
        unit: The neuron or SAE feature.
        score: The selection method's score (attribution, activation difference, ...), or ``None``.
        label: A short name a person gave it (``"carry digit"``); shown in tables and exported to
            Neuronpedia as the description.
        note: Free text (why it was picked, what was seen in the browser).
        direction: +1 or -1, the sign of the unit's effect on the target (for example the sign of the gradient
            of the gold answer's log-prob with respect to it); the YFPO neuron term counts the unit with it
            when ``sign = set``. ``None``: not recorded.
    """

    unit: Unit
    score: float | None = None
    label: str = ""
    note: str = ""
    direction: int | None = None  # +1/-1: the sign of the unit's effect on the target (YFPO's sign = set)

    def __post_init__(self) -> None:
        if self.score is not None and not isinstance(self.score, float):
            object.__setattr__(self, "score", float(self.score))
        if self.direction is not None:
            object.__setattr__(self, "direction", -1 if self.direction < 0 else 1)

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity within a set: a neuron is its hook and index, a feature its SAE and index."""
        return _key(self.unit)


def _key(unit: Unit) -> tuple[str, str, int]:
    # Features are keyed by SAE, not hook: Unit.parse("sae:<id>:<i>") leaves the hook empty.
    if unit.kind == "sae_feature":
        return ("sae_feature", unit.sae_id or "", unit.index)
    return ("neuron", unit.hook_name, unit.index)


UnitRef = Unit | SetUnit | str
"""How a unit of a set is named in the editing methods: a :class:`Unit`, a :class:`SetUnit`, or text
that :meth:`Unit.parse` reads (``blocks.20.mlp.hook_post:1234``, ``L20N1234``, ``20:1234``,
``sae:<id>:<i>``) or a feature's short label (``L15F77``)."""


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
    created: str = field(default_factory=lambda: _now())
    yfpo_version: str = field(default_factory=lambda: _yfpo_version())

    def __post_init__(self) -> None:
        sae = {str(k): dict(v) for k, v in copy.deepcopy(dict(self.sae)).items()}
        units = tuple(_fill_feature_hook(u if isinstance(u, SetUnit) else SetUnit(u), sae) for u in self.units)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "sae", sae)
        object.__setattr__(self, "selection", copy.deepcopy(dict(self.selection)))
        object.__setattr__(self, "problems", copy.deepcopy(dict(self.problems)))
        problem = _set_problem(self.units, self.n_layers, self.d_mlp, self.sae, self.model_name)
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
        n_layers, d_mlp = _model_dims(model)
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
        wanted = _key(unit)
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

    def with_sae(self, sae_id: str, *, hook_name: str, d_sae: int, path_or_release: str = "") -> NeuronSet:
        """A copy that describes SAE ``sae_id``, so that its features can be added and range-checked."""
        sae = {**self.sae, sae_id: {"hook_name": hook_name, "d_sae": int(d_sae), "path_or_release": path_or_release}}
        return replace(self, sae=sae)

    def rebind(self, model: LoadedModel) -> NeuronSet:
        """A copy recorded as made for ``model`` (its name, fingerprint and dims), e.g. to carry a set over
        to a fine-tune. Every unit is range-checked against the new model."""
        n_layers, d_mlp = _model_dims(model)
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
            "units": [_unit_to_dict(su) for su in self.units],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The document as JSON text, ending with a newline.

        With an ``indent``, each unit sits on one line: files stay small, readable and diff line by line.
        ``indent=None`` gives compact JSON. NaN and infinity can never be written (the set rejects them).
        """
        doc = self.to_dict()
        if indent is None:
            return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
        units = doc.pop("units")
        head = json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=indent)
        pad = " " * indent
        lines = ",\n".join(pad * 2 + json.dumps(u, ensure_ascii=False, allow_nan=False) for u in units)
        body = f"[\n{lines}\n{pad}]" if units else "[]"
        return f'{head[:-2]},\n{pad}"units": {body}\n}}\n'

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
        _check_header(data, source)
        _check_schema(data, source)
        units = []
        for i, item in enumerate(data["units"]):
            try:
                unit = Unit(item["kind"], item["hook_name"], int(item["index"]), item.get("sae_id"))
            except ValueError as exc:
                raise NeuronSetError(f"units[{i}]: {exc}. Fix that entry.", source) from None
            hook_layer = layer_of(unit.hook_name)  # the schema guarantees blocks.<layer>.
            if int(item["layer"]) != hook_layer:
                raise NeuronSetError(
                    f"units[{i}] ({unit.label}): \"layer\" is {item['layer']} but its hook_name "
                    f"{unit.hook_name!r} is in layer {hook_layer}. Make them agree (the hook name is "
                    "what the workbench uses).", source)
            units.append(SetUnit(unit, item.get("score"), item.get("label", ""), item.get("note", ""),
                                 item.get("direction")))
        created = data.get("created", "")
        if created:
            try:
                datetime.fromisoformat(created)
            except ValueError:
                raise NeuronSetError(f"\"created\" is {created!r}, not an ISO 8601 time. Write it like "
                                     "2025-01-31T12:00:00Z, or remove it.", source) from None
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
            _check_model(neuron_set, model, allow_other_model, source)
        return neuron_set

    @classmethod
    def from_json(cls, text: str, model: LoadedModel | None = None, *, allow_other_model: bool = False,
                  source: str = "neuron-set JSON") -> NeuronSet:
        """Parse and validate JSON text (see :meth:`load`)."""
        if len(text) > MAX_FILE_BYTES:
            raise NeuronSetError(_too_large(len(text)), source)
        return cls.from_dict(_parse_json(text, source), model, allow_other_model=allow_other_model, source=source)

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
        path = Path(path)
        data = self.to_json().encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            data = self.to_json(indent=None).encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise NeuronSetError(f"is {len(data):,} bytes as JSON, over the {MAX_FILE_BYTES // 1_000_000} MB "
                                 "limit for loading it back. Save fewer units or shorter notes.", self._where)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NeuronSetError(f"cannot write {path}: {exc.strerror or exc}. Choose a folder you can write "
                                 "to.", self._where) from None
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise NeuronSetError(f"cannot write {path}: {exc.strerror or exc}. Check free space and "
                                 "permissions.", self._where) from None
        return path

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
        source = str(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise NeuronSetError(_too_large(size), source)
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise NeuronSetError("no such file. Check the path.", source) from None
        except IsADirectoryError:
            raise NeuronSetError("is a folder, not a neuron-set file. Give the path of the .json file.",
                                 source) from None
        except OSError as exc:
            raise NeuronSetError(f"cannot read the file: {exc.strerror or exc}. Check the path and its "
                                 "permissions.", source) from None
        if len(raw) > MAX_FILE_BYTES:  # grew since stat, or a pipe/special file
            raise NeuronSetError(_too_large(len(raw)), source)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise NeuronSetError(f"is not UTF-8 text (bad byte at offset {exc.start}). Neuron-set files are "
                                 "JSON in UTF-8: export the set again, or re-save the file as UTF-8.",
                                 source) from None
        return cls.from_dict(_parse_json(text, source), model, allow_other_model=allow_other_model,
                             source=source)


# -- Neuronpedia lists ------------------------------------------------------------------------------------
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
        raise NeuronSetError(_too_many(len(items)), where)
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
            if not _SAE_HOOK.fullmatch(hook) or layer_of(hook) != layer:
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
        n_layers, d_mlp = _model_dims(model)
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
           "created": _now(), "yfpo_version": _yfpo_version(), "model": model_meta, "sae": used_saes,
           "selection": {"method": "neuronpedia-import", "params": {"modelId": model_id} if model_id else {}},
           "problems": {}, "units": units}
    return NeuronSet.from_dict(doc, model, allow_other_model=True, source=where)


# -- schema ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of schema_version 1, shipped as package data."""
    text = resources.files("yfpo_core.units.schemas").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


# -- checks ------------------------------------------------------------------------------------------------
def _parse_json(text: str, source: str) -> Any:
    if not text.strip():
        raise NeuronSetError("is empty. Export the neuron set again.", source)
    try:
        return parse_json(text, object_pairs_hook=_no_duplicate_keys)
    except JsonInputError as exc:
        raise NeuronSetError(f"is not a usable JSON document: {exc}. Fix the file, or export the set again.",
                             source) from None
    except json.JSONDecodeError as exc:
        raise NeuronSetError(f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). Fix the "
                             "file there, or export the set again.", source) from None
    except (ValueError, RecursionError) as exc:  # duplicate keys, over-long integers, absurd nesting
        raise NeuronSetError(f"is not a usable JSON document ({exc}). Fix the file, or export the set again.",
                             source) from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python's json keeps the last of repeated keys silently; in a hand-edited file that hides a mistake.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _check_header(data: Any, source: str) -> None:
    """The checks that come before the schema: what the document is, and whether it is too big to check."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        neuronpedia = isinstance(data, list) or (isinstance(data, Mapping) and "features" in data)
        hint = (" It looks like a Neuronpedia list: import it as one (from_neuronpedia)." if neuronpedia
                else " Choose a file exported by the workbench.")
        found = f" (its \"format\" is {data['format']!r})" if isinstance(data, Mapping) and "format" in data else ""
        raise NeuronSetError(f"is not a neuron-set file: it has no \"format\": \"{FORMAT}\"{found}.{hint}",
                             source)
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS or isinstance(version, bool):
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        newer = isinstance(version, int) and not isinstance(version, bool) and version > max(READABLE_SCHEMA_VERSIONS)
        fix = ("It was written by a newer workbench: upgrade this one to read it."
               if newer else "Fix \"schema_version\", or export the set again.")
        raise NeuronSetError(f"has schema_version {version!r}, but this workbench ({_yfpo_version()}) reads "
                             f"schema_version {readable}. {fix}", source)
    units = data.get("units")
    if isinstance(units, list) and len(units) > MAX_UNITS:
        raise NeuronSetError(_too_many(len(units)), source)


def _check_schema(data: Any, source: str) -> None:
    """Validate against the JSON Schema; report the most relevant error with its JSON path.

    ``jsonschema`` costs about 70 µs per unit, seconds for a big set, so units that pass a plain-Python
    check of the same rules (:func:`_plain_unit_ok`, never more lenient than the schema) skip it. The
    schema file stays the one definition: the document without its units, and every unit that fails
    the quick check, go through ``jsonschema``, which also words the message.
    """
    units = data.get("units")
    if not isinstance(units, list):
        _raise_schema_errors(list(_validator().iter_errors(data)), source)
        return
    _raise_schema_errors(list(_validator().iter_errors({**data, "units": []})), source)
    for i, item in enumerate(units):
        if not _plain_unit_ok(item):
            errors = list(_validator().iter_errors({**data, "units": [item]}))
            for error in errors:  # report the real position, not units[0]
                error.path[1] = i
                error.relative_path[1] = i
            _raise_schema_errors(errors, source)


def _raise_schema_errors(errors: list[Any], source: str) -> None:
    if not errors:
        return
    import jsonschema

    best = jsonschema.exceptions.best_match(errors)
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in best.absolute_path)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    # best.message quotes the offending value, which can be megabytes: keep the message short.
    raise NeuronSetError(f"does not match the neuron-set format at {clip(path, 120)}: {clip(best.message, 200)}"
                         f"{more}. Fix that field; the format is described in docs/neuron-set-format.md.", source)


_UNIT_KEYS = frozenset({"kind", "hook_name", "layer", "index", "sae_id", "score", "label", "note", "direction"})


def _plain_unit_ok(item: Any) -> bool:
    """True only for a unit the schema's ``$defs/unit`` accepts (it may reject some the schema accepts,
    such as ``"index": 3.0``; those are then checked by ``jsonschema``)."""
    if type(item) is not dict or not item.keys() <= _UNIT_KEYS:
        return False
    kind, hook, sae_id, score = item.get("kind"), item.get("hook_name"), item.get("sae_id"), item.get("score")
    if kind == "neuron":
        if sae_id is not None or type(hook) is not str or not _NEURON_HOOK.fullmatch(hook):
            return False
    elif kind == "sae_feature":
        if type(sae_id) is not str or not sae_id or type(hook) is not str or not _SAE_HOOK.fullmatch(hook):
            return False
    else:
        return False
    return (all(type(item.get(k)) is int and item[k] >= 0 for k in ("layer", "index"))
            and (score is None or type(score) in (int, float))
            and item.get("direction") in (None, 1, -1) and type(item.get("direction", 1)) is int
            and all(type(item.get(k, "")) is str for k in ("label", "note")))


def _set_problem(units: Sequence[SetUnit], n_layers: Any, d_mlp: Any, sae: Mapping[str, Mapping[str, Any]],
                 model_name: str) -> str | None:
    """The first thing wrong with a set (problem and fix, no location), or ``None``.

    This is the one place the semantic rules live, so a set built in code, loaded from a file or imported
    from Neuronpedia obeys the same rules.
    """
    for dim, value in (("n_layers", n_layers), ("d_mlp", d_mlp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"model {dim} is {value!r}; it must be a positive integer. Record the model's real size."
    if len(units) > MAX_UNITS:
        return _too_many(len(units))
    for sae_id, info in sae.items():
        hook, d_sae = info.get("hook_name"), info.get("d_sae")
        if not isinstance(hook, str) or not _SAE_HOOK.fullmatch(hook):
            return (f"SAE {sae_id!r} has hook_name {hook!r}; it must be a TransformerLens hook name like "
                    "blocks.<layer>.hook_resid_post. Fix its \"hook_name\".")
        if layer_of(hook) >= n_layers:
            return (f"SAE {sae_id!r} reads {hook}, but model {model_name!r} has n_layers = {n_layers} (layers "
                    f"0 to {n_layers - 1}). Use an SAE of this model.")
        if isinstance(d_sae, bool) or not isinstance(d_sae, int) or d_sae < 1:
            return f"SAE {sae_id!r} has d_sae {d_sae!r}; it must be a positive integer. Fix its \"d_sae\"."
    seen: dict[tuple[str, str, int], list[int]] = {}
    for i, su in enumerate(units):
        problem = _unit_problem(su, n_layers, d_mlp, sae, model_name)
        if problem:
            return f"units[{i}] ({su.unit.label}): {problem}"
        seen.setdefault(su.key, []).append(i)
    duplicates = [(units[pos[0]].unit.label, pos) for pos in seen.values() if len(pos) > 1]
    if duplicates:
        shown = "; ".join(f"{label} (" + ", ".join(f"units[{p}]" for p in pos) + ")" for label, pos in duplicates[:5])
        more = f"; and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        return f"duplicate units: {shown}{more}. Each unit may appear once: remove the extra entries."
    return None


def _unit_problem(su: SetUnit, n_layers: int, d_mlp: int, sae: Mapping[str, Mapping[str, Any]],
                  model_name: str) -> str | None:
    unit = su.unit
    if su.score is not None and not math.isfinite(su.score):
        return f"score is {su.score!r}, not a finite number. Replace it with a number, or remove it."
    if unit.kind == "neuron":
        if not _NEURON_HOOK.fullmatch(unit.hook_name):
            return (f"hook_name {unit.hook_name!r} is not an MLP neuron hook; neurons are named "
                    "blocks.<layer>.mlp.hook_post. Fix the hook name.")
        if unit.index >= d_mlp:
            return (f"neuron index {unit.index} is out of range: model {model_name!r} has d_mlp = {d_mlp} "
                    f"(indices 0 to {d_mlp - 1}). Remove the unit, or use the model the set was made for.")
    else:
        info = sae.get(unit.sae_id or "")
        if info is None:
            known = ", ".join(map(repr, sae)) or "none"
            return (f"SAE {unit.sae_id!r} is not described in the set's \"sae\" section (described: {known}). "
                    "Add it there with its hook_name, d_sae and path_or_release (NeuronSet.with_sae).")
        if unit.hook_name != info["hook_name"]:
            return (f"hook_name {unit.hook_name!r} differs from the hook of SAE {unit.sae_id!r} "
                    f"({info['hook_name']}). Make them agree.")
        if unit.index >= info["d_sae"]:
            return (f"feature index {unit.index} is out of range: SAE {unit.sae_id!r} has d_sae = "
                    f"{info['d_sae']} (indices 0 to {info['d_sae'] - 1}). Remove the unit, or fix the SAE's "
                    "d_sae.")
    if unit.layer >= n_layers:
        return (f"layer {unit.layer} is out of range: model {model_name!r} has n_layers = {n_layers} (layers 0 "
                f"to {n_layers - 1}). Remove the unit, or use the model the set was made for.")
    return None


def _check_model(neuron_set: NeuronSet, model: LoadedModel, allow_other_model: bool, source: str) -> None:
    """Refuse a set made for another model, unless allowed; then range-check it against ``model``.

    Same weights (equal fingerprints) count as the same model even under another name (a path versus a
    registry name); where the file records no fingerprint, the names must match.
    """
    fingerprint = getattr(model, "fingerprint", None)
    if neuron_set.model_fingerprint and fingerprint:
        same = neuron_set.model_fingerprint == fingerprint
    else:
        same = neuron_set.model_name == model.name
    if not same and not allow_other_model:
        made_for = _describe_model(neuron_set.model_name, neuron_set.model_fingerprint)
        loaded = _describe_model(str(model.name), fingerprint)
        raise NeuronSetError(
            f"was made for model {made_for}, but the loaded model is {loaded}. Load {neuron_set.model_name!r} "
            f"to use this set, or pass {ALLOW_OTHER_MODEL_HINT} to apply its units to this model anyway "
            "(they are then range-checked against it).", source)
    n_layers, d_mlp = _model_dims(model)
    problem = _set_problem(neuron_set.units, n_layers, d_mlp, neuron_set.sae, str(model.name))
    if problem:
        raise NeuronSetError(f"does not fit the loaded model: {problem}", source)


# -- small helpers -------------------------------------------------------------------------------------------
def _unit_to_dict(su: SetUnit) -> dict[str, Any]:
    unit = su.unit
    out: dict[str, Any] = {"kind": unit.kind, "hook_name": unit.hook_name, "layer": unit.layer, "index": unit.index}
    if unit.kind == "sae_feature":
        out["sae_id"] = unit.sae_id
    if su.score is not None:
        out["score"] = su.score
    if su.label:
        out["label"] = su.label
    if su.note:
        out["note"] = su.note
    if su.direction is not None:
        out["direction"] = su.direction
    return out


def _fill_feature_hook(su: SetUnit, sae: Mapping[str, Mapping[str, Any]]) -> SetUnit:
    unit = su.unit
    if unit.kind == "sae_feature" and not unit.hook_name and unit.sae_id in sae:
        return replace(su, unit=replace(unit, hook_name=str(sae[unit.sae_id].get("hook_name", ""))))
    return su


def _model_dims(model: LoadedModel) -> tuple[int, int]:
    cfg = model.model.cfg
    n_layers, d_mlp = getattr(cfg, "n_layers", None), getattr(cfg, "d_mlp", None)
    if not isinstance(n_layers, int) or not isinstance(d_mlp, int):
        raise NeuronSetError(f"model {model.name!r} has no MLP neurons (n_layers={n_layers}, d_mlp={d_mlp}); "
                             "neuron sets need a model with MLP layers.")
    return n_layers, d_mlp


def _describe_model(name: str, fingerprint: str | None) -> str:
    return f"{name!r} (weights fingerprint {fingerprint})" if fingerprint else repr(name)


def _too_large(size: int) -> str:
    return (f"is {size:,} bytes, over the {MAX_FILE_BYTES // 1_000_000} MB limit for neuron-set files "
            f"({MAX_FILE_BYTES:,} bytes). Check it is the right file; if it is, split the set or drop long "
            "notes so that each part stays under the limit.")


def _too_many(n: int) -> str:
    return (f"has {n:,} units, more than the {MAX_UNITS:,} a neuron set may hold. Keep the top units (e.g. a "
            "smaller top_k) and save again.")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1)
def _yfpo_version() -> str:
    try:
        return importlib.metadata.version("yfpo-workbench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
