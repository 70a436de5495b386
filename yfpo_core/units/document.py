"""The neuron-set JSON document: its format constants, schema, parsing, and the checks every way in ends with.

A set is applied to a model by index, so a document made for another model, or hand-edited into an
out-of-range or duplicated unit, would silently train or ablate the wrong neurons. :func:`set_problem` is
the one place the semantic rules live; :class:`~yfpo_core.units.neuron_set.NeuronSet` (built in code,
loaded from a file) and :mod:`~yfpo_core.units.neuronpedia` (imported lists) all end in it. The syntax is
the JSON Schema shipped in ``schemas/`` (:func:`schema`), described for people in
``docs/neuron-set-format.md``. Every failure is a :class:`NeuronSetError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yfpo_core.atomic import atomic_write_bytes
from yfpo_core.errors import YfpoError, clip
from yfpo_core.jsonio import JsonInputError, parse_json
from yfpo_core.units.set_unit import SetUnit
from yfpo_core.units.unit import Unit, layer_of

if TYPE_CHECKING:  # pragma: no cover
    from yfpo_core.models.base import LoadedModel
    from yfpo_core.units.neuron_set import NeuronSet

FORMAT = "yfpo-neuron-set"
SCHEMA_VERSION = 1
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
MAX_FILE_BYTES = 10_000_000  # "10 MB"; a 100k-unit set with scores is about this size in compact form
MAX_UNITS = 100_000
SCHEMA_FILE = "neuron_set.v1.schema.json"
ALLOW_OTHER_MODEL_HINT = "allow_other_model=True (CLI: --allow-other-model)"
# Used with fullmatch: ``$`` and ``\d`` would also accept a trailing newline and non-ASCII digits.
SAE_HOOK = re.compile(r"blocks\.[0-9]+\.[A-Za-z0-9_.]+")
NEURON_HOOK = re.compile(r"blocks\.[0-9]+\.mlp\.hook_post")


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


# -- text and files --------------------------------------------------------------------------------------
def dumps(doc: dict[str, Any], indent: int | None = 2) -> str:
    """A document as JSON text, ending with a newline; with an ``indent``, each unit sits on one line."""
    doc = dict(doc)
    if indent is None:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
    units = doc.pop("units")
    head = json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=indent)
    pad = " " * indent
    lines = ",\n".join(pad * 2 + json.dumps(u, ensure_ascii=False, allow_nan=False) for u in units)
    body = f"[\n{lines}\n{pad}]" if units else "[]"
    return f'{head[:-2]},\n{pad}"units": {body}\n}}\n'


def save_document(path: Path, to_json: Callable[[int | None], str], where: str) -> Path:
    """Write ``to_json(2)`` (or, over the load limit, ``to_json(None)``) to ``path`` atomically; see
    :meth:`NeuronSet.save <yfpo_core.units.neuron_set.NeuronSet.save>`."""
    data = to_json(2).encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        data = to_json(None).encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise NeuronSetError(f"is {len(data):,} bytes as JSON, over the {MAX_FILE_BYTES // 1_000_000} MB "
                             "limit for loading it back. Save fewer units or shorter notes.", where)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuronSetError(f"cannot write {path}: {exc.strerror or exc}. Choose a folder you can write "
                             "to.", where) from None
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise NeuronSetError(f"cannot write {path}: {exc.strerror or exc}. Check free space and "
                             "permissions.", where) from None
    return path


def read_document_text(path: Path) -> str:
    """The text of a neuron-set file, refused above :data:`MAX_FILE_BYTES` before it is read, and not UTF-8."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise NeuronSetError(too_large(size), source)
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
        raise NeuronSetError(too_large(len(raw)), source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NeuronSetError(f"is not UTF-8 text (bad byte at offset {exc.start}). Neuron-set files are "
                             "JSON in UTF-8: export the set again, or re-save the file as UTF-8.",
                             source) from None
    return text


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
def parse_document(text: str, source: str) -> Any:
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


def check_header(data: Any, source: str) -> None:
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
        raise NeuronSetError(f"has schema_version {version!r}, but this workbench ({yfpo_version()}) reads "
                             f"schema_version {readable}. {fix}", source)
    units = data.get("units")
    if isinstance(units, list) and len(units) > MAX_UNITS:
        raise NeuronSetError(too_many(len(units)), source)


def check_schema(data: Any, source: str) -> None:
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
        if sae_id is not None or type(hook) is not str or not NEURON_HOOK.fullmatch(hook):
            return False
    elif kind == "sae_feature":
        if type(sae_id) is not str or not sae_id or type(hook) is not str or not SAE_HOOK.fullmatch(hook):
            return False
    else:
        return False
    return (all(type(item.get(k)) is int and item[k] >= 0 for k in ("layer", "index"))
            and (score is None or type(score) in (int, float))
            and item.get("direction") in (None, 1, -1) and type(item.get("direction", 1)) is int
            and all(type(item.get(k, "")) is str for k in ("label", "note")))


def set_problem(units: Sequence[SetUnit], n_layers: Any, d_mlp: Any, sae: Mapping[str, Mapping[str, Any]],
                 model_name: str) -> str | None:
    """The first thing wrong with a set (problem and fix, no location), or ``None``.

    This is the one place the semantic rules live, so a set built in code, loaded from a file or imported
    from Neuronpedia obeys the same rules.
    """
    for dim, value in (("n_layers", n_layers), ("d_mlp", d_mlp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"model {dim} is {value!r}; it must be a positive integer. Record the model's real size."
    if len(units) > MAX_UNITS:
        return too_many(len(units))
    for sae_id, info in sae.items():
        hook, d_sae = info.get("hook_name"), info.get("d_sae")
        if not isinstance(hook, str) or not SAE_HOOK.fullmatch(hook):
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
        if not NEURON_HOOK.fullmatch(unit.hook_name):
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


def read_units(items: Sequence[Mapping[str, Any]], source: str) -> list[SetUnit]:
    """The units of a document that passed the schema, with ``layer`` checked against ``hook_name``."""
    units = []
    for i, item in enumerate(items):
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
    return units


def check_created(created: str, source: str) -> None:
    """``created`` is empty or an ISO 8601 time."""
    if created:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise NeuronSetError(f"\"created\" is {created!r}, not an ISO 8601 time. Write it like "
                                 "2025-01-31T12:00:00Z, or remove it.", source) from None


def check_model(neuron_set: NeuronSet, model: LoadedModel, allow_other_model: bool, source: str) -> None:
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
        made_for = describe_model(neuron_set.model_name, neuron_set.model_fingerprint)
        loaded = describe_model(str(model.name), fingerprint)
        raise NeuronSetError(
            f"was made for model {made_for}, but the loaded model is {loaded}. Load {neuron_set.model_name!r} "
            f"to use this set, or pass {ALLOW_OTHER_MODEL_HINT} to apply its units to this model anyway "
            "(they are then range-checked against it).", source)
    n_layers, d_mlp = dims_of_model(model)
    problem = set_problem(neuron_set.units, n_layers, d_mlp, neuron_set.sae, str(model.name))
    if problem:
        raise NeuronSetError(f"does not fit the loaded model: {problem}", source)


# -- small helpers -------------------------------------------------------------------------------------------
def unit_to_dict(su: SetUnit) -> dict[str, Any]:
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


def dims_of_model(model: LoadedModel) -> tuple[int, int]:
    cfg = model.model.cfg
    n_layers, d_mlp = getattr(cfg, "n_layers", None), getattr(cfg, "d_mlp", None)
    if not isinstance(n_layers, int) or not isinstance(d_mlp, int):
        raise NeuronSetError(f"model {model.name!r} has no MLP neurons (n_layers={n_layers}, d_mlp={d_mlp}); "
                             "neuron sets need a model with MLP layers.")
    return n_layers, d_mlp


def describe_model(name: str, fingerprint: str | None) -> str:
    return f"{name!r} (weights fingerprint {fingerprint})" if fingerprint else repr(name)


def too_large(size: int) -> str:
    return (f"is {size:,} bytes, over the {MAX_FILE_BYTES // 1_000_000} MB limit for neuron-set files "
            f"({MAX_FILE_BYTES:,} bytes). Check it is the right file; if it is, split the set or drop long "
            "notes so that each part stays under the limit.")


def too_many(n: int) -> str:
    return (f"has {n:,} units, more than the {MAX_UNITS:,} a neuron set may hold. Keep the top units (e.g. a "
            "smaller top_k) and save again.")


def created_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1)
def yfpo_version() -> str:
    try:
        return importlib.metadata.version("yfpo-workbench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
