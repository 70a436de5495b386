"""An activation index over a corpus, built once per model, unit space (all MLP neurons or one SAE's
features) and corpus, for corpus-wide unit dashboards (:mod:`yfpo_core.analysis.dashboards`) and search.
The corpus itself (default texts, a user's JSONL) is read by :mod:`yfpo_core.analysis.index_corpus`; the
running statistics and their merge are in :mod:`yfpo_core.analysis.index_state`.

For every unit the index keeps, in one pass over the corpus:

* the **top-k activating tokens** (``TOP_K``), each with the unit's activation on ``TOP_WINDOW`` tokens
  either side (so a dashboard shades the context without running the model);
* a **uniform sample of the tokens where it is active** (> 0; ``SAMPLES`` of them, with ``SAMPLE_WINDOW``
  tokens either side), from which dashboards draw examples per activation quantile. The sample is a
  bottom-k of random keys (one key per token and unit, from a generator seeded per text), which is a
  uniform sample without replacement and makes a resumed or data-parallel build identical to one pass;
* a **histogram** over fixed, signed, log-spaced bins (:data:`EDGES`, 1e-3 to 1e3 each sign), exact counts;
* exact **count, sum, sum of squares, min, max, active count**, and **sums on math and non-math texts**.

Files (never pickles): ``index.safetensors`` (tensors, unit-first so one unit's row is one slice read
through a memory map) and ``index.json`` (model, units, corpus texts, settings, timings, processes) in
:func:`index_dir` under the user cache. A build writes ``build_state.safetensors``/``build_state.json`` every
``checkpoint_s`` seconds and when stopped (Ctrl-C, a cancelled job); building again resumes from there.

**Data-parallel** (``dist``, under ``torchrun`` / ``accelerate launch``): process ``r`` of ``N`` indexes the
texts ``r, r+N, ...`` into its own :class:`IndexState`; rank 0 gathers the ``N`` states, merges them (the
one-pass index: see :mod:`yfpo_core.analysis.index_state`) and alone writes the index. Each process
checkpoints its own share (``build_state.rank<r>-of-<N>.*``), so a build stopped or failed on any process
resumes when started again with the same number of processes; with another number it starts over.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from yfpo_core.analysis.index_corpus import (  # noqa: F401 (the corpus is part of this module's interface)
    CorpusText,
    IndexError_,
    corpus_fingerprint,
    default_corpus,
    read_corpus,
)
from yfpo_core.analysis.index_state import (  # noqa: F401 (the settings are part of this module's interface)
    EDGES,
    N_BINS,
    SAMPLE_WINDOW,
    SAMPLES,
    TOP_K,
    TOP_WINDOW,
    IndexState,
)
from yfpo_core.atomic import atomic_write, atomic_write_text
from yfpo_core.distributed import Distributed
from yfpo_core.models.base import LoadedModel
from yfpo_core.paths import cache_dir
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units.unit import Unit

INDEX_VERSION = 1
INDEX_FILE, META_FILE, STATE_FILE, STATE_META = "index.safetensors", "index.json", "build_state.safetensors", "build_state.json"


def unit_space(model: LoadedModel, sae: Any = None):
    """All MLP neurons of ``model``, or the features of ``sae``: the units an index holds."""
    if sae is not None:
        from yfpo_core.saes.sae import SAESpace

        return SAESpace(sae)
    from yfpo_core.units.space import neuron_space

    return neuron_space(model.model)


def _units_dir(model: LoadedModel, sae: Any = None) -> Path:
    units = f"sae-{sae.sae_id}" if sae is not None else "neurons"
    name = re.sub(r"[^\w.-]", "_", model.name)
    return cache_dir() / "activation-index" / f"{name}-{model.fingerprint[:12]}" / re.sub(r"[^\w.-]", "_", units)


def index_dir(model: LoadedModel, texts: Sequence[CorpusText], sae: Any = None, corpus_name: str = "default") -> Path:
    """Where the index of ``model`` (its neurons, or ``sae``'s features) over ``texts`` lives."""
    return _units_dir(model, sae) / f"{corpus_name}-{corpus_fingerprint(texts)}"


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def state_files(dist: Distributed) -> tuple[str, str]:
    """The checkpoint files of this process's share: the plain names in one process, one pair per rank
    (``build_state.rank<r>-of-<N>.*``) in a data-parallel build."""
    if dist.world == 1:
        return STATE_FILE, STATE_META
    stem = f"build_state.rank{dist.rank}-of-{dist.world}"
    return f"{stem}.safetensors", f"{stem}.json"


@torch.no_grad()
def build_index(model: LoadedModel, texts: Sequence[CorpusText], *, sae: Any = None, folder: str | Path | None = None,
                corpus_name: str = "default", checkpoint_s: float = 60.0, seed: int = 0,
                progress: ProgressCallback | None = None, stop_after: int | None = None,
                dist: Distributed | None = None) -> Path:
    """Build (or resume building) the index of ``model``'s units over ``texts``; returns its folder.

    ``stop_after`` (texts) interrupts on purpose after that many texts of this call, leaving a checkpoint
    (for tests of resuming). Texts longer than the model's context are cut to it. With ``dist`` (one
    process of a data-parallel run; see the module docstring) this process indexes its share of the texts
    and ``progress`` counts that share; every process returns the folder, rank 0 alone writes the index."""
    from yfpo_core.attribution.methods import activations

    dist = dist or Distributed()
    if not texts:
        raise IndexError_("the corpus is empty")
    space = unit_space(model, sae)
    n_units = space.n_rows * space.width
    folder = Path(folder) if folder is not None else index_dir(model, texts, sae, corpus_name)
    if dist.exchange((folder / META_FILE).exists() and (folder / INDEX_FILE).exists())[0]:  # rank 0's disk decides
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    identity = {"version": INDEX_VERSION, "model": model.name, "model_fingerprint": model.fingerprint,
                "units": space.to_dict() if sae is None else {"kind": "sae_feature", "sae_id": sae.sae_id,
                                                               "hook_name": sae.hook_name, "width": sae.d_sae,
                                                               "sae_source": sae.source},
                "corpus": corpus_name, "corpus_fingerprint": corpus_fingerprint(texts), "seed": seed,
                "settings": {"top_k": TOP_K, "top_window": TOP_WINDOW, "samples": SAMPLES,
                             "sample_window": SAMPLE_WINDOW, "edges": EDGES.tolist()}}
    share = identity if dist.world == 1 else {**identity, "rank": dist.rank, "processes": dist.world}
    n_ctx, started = int(model.model.cfg.n_ctx), time.perf_counter()
    ids = [model.encode_prompt(t.text)[:n_ctx] for t in texts]  # every process: the global token offsets
    offsets = [0]
    for text_ids in ids:
        offsets.append(offsets[-1] + len(text_ids))
    mine = dist.shard(len(texts))
    state_file, state_meta = (folder / name for name in state_files(dist))
    state, done, seconds = _resume(state_file, state_meta, share, n_units)

    def checkpoint() -> None:
        _save(state_file, state.tensors(), {"done": str(done)})
        atomic_write_text(state_meta, json.dumps({"identity": share, "done": done, "seconds": seconds}))

    first, last = done, started
    saved_at, n_tokens = time.perf_counter(), sum(len(ids[i]) for i in mine[:done])
    try:
        with model.lock:
            for j in range(first, len(mine)):
                if stop_after is not None and j >= first + stop_after:
                    break
                i = mine[j]
                x = activations(model, space, tuple(ids[i])).reshape(len(ids[i]), n_units).float().cpu()
                state.update(x, offsets[i], texts[i].math, torch.Generator().manual_seed(seed * 1_000_003 + i))
                done, n_tokens = j + 1, n_tokens + len(ids[i])
                now = time.perf_counter()
                seconds, last = seconds + now - last, now
                if now - saved_at >= checkpoint_s:
                    checkpoint()
                    saved_at = now
                report(progress, done, len(mine), f"{n_tokens} tokens")
        shares = dist.exchange((done == len(mine), seconds))  # a status round: did every process finish?
        if not all(finished for finished, _ in shares):
            checkpoint()
            return folder
        parts = dist.gather([dist.rank], [state.tensors()])
        if parts is not None:  # rank 0: the one-pass state, written once
            own = parts[0] if len(parts) == 1 else {name: value.clone() for name, value in parts[0].items()}
            merged = IndexState.from_tensors(own)  # (a copy: this process's own state must stay its share)
            for part in parts[1:]:
                merged.merge(IndexState.from_tensors(part))
            meta = {**identity, "processes": dist.world, "build_seconds": round(max(s for _, s in shares), 2)}
            _finish(folder, merged, ids, texts, n_units, meta)
        dist.exchange(None)  # the index is written: the other processes may drop their checkpoints
    except BaseException:
        checkpoint()
        raise
    state_file.unlink(missing_ok=True)
    state_meta.unlink(missing_ok=True)
    return folder


def _resume(state_file: Path, state_meta: Path, share: dict[str, Any], n_units: int) -> tuple[IndexState, int, float]:
    """This process's checkpoint when it belongs to this build (the same model, units, corpus, settings and
    share of the texts), else an empty state: ``(state, texts done, seconds spent)``."""
    if state_meta.exists() and state_file.exists():
        saved = json.loads(state_meta.read_text())
        if saved.get("identity") == share and _state_done(state_file) == saved.get("done"):
            from safetensors.torch import load_file

            return IndexState.from_tensors(load_file(str(state_file))), int(saved["done"]), float(saved["seconds"])
    return IndexState(n_units), 0, 0.0


def _state_done(path: Path) -> int | None:
    """How many texts a checkpoint holds (from its own header), or ``None`` when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})["done"])
    except Exception:  # noqa: BLE001 - a damaged or half-written checkpoint: start again
        return None


def _unit_first(name: str, value: torch.Tensor, n_units: int) -> torch.Tensor:
    """A build tensor (unit-last) as stored (unit-first, so one unit is one contiguous slice)."""
    if name == "hist":
        return value.reshape(n_units, N_BINS)
    if value.dim() == 2:
        return value.movedim(0, -1).contiguous()
    if value.dim() == 3:
        return value.permute(2, 0, 1).contiguous()
    return value


def _finish(folder: Path, state: IndexState, ids: list[list[int]], texts: Sequence[CorpusText], n_units: int,
            meta: dict[str, Any]) -> None:
    final = {name: _unit_first(name, value, n_units) for name, value in state.tensors().items() if name != "sample_keys"}
    lengths = [len(text_ids) for text_ids in ids]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    final["tokens"] = torch.tensor([t for text_ids in ids for t in text_ids], dtype=torch.int64)
    final["count"] = torch.tensor([offsets[-1]], dtype=torch.int64)
    final["math_count"] = torch.tensor([sum(n for n, t in zip(lengths, texts, strict=True) if t.math)])
    final["other_count"] = torch.tensor([sum(n for n, t in zip(lengths, texts, strict=True) if not t.math)])
    _save(folder / INDEX_FILE, final)
    seconds = meta["build_seconds"]
    meta = {**meta, "n_units": n_units, "n_texts": len(texts), "n_tokens": offsets[-1],
            "tokens_per_second": round(offsets[-1] / max(seconds, 1e-9), 1),
            "texts": [{"id": t.id, "math": t.math, "source": t.source, "offset": o, "length": n}
                      for t, o, n in zip(texts, offsets[:-1], lengths, strict=True)]}
    atomic_write_text(folder / META_FILE, json.dumps(meta))
    for path in folder.glob("build_state*"):  # every share's checkpoint (other processes' too, on a shared disk)
        path.unlink(missing_ok=True)


@dataclass
class UnitStats:
    """A unit's exact corpus statistics from the index."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    density: float  # share of tokens where it is > 0
    math_mean: float
    nonmath_mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ActivationIndex:
    """A finished index, read lazily: one unit's rows come from a memory-mapped safetensors file."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.meta = json.loads((self.folder / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise IndexError_(f"no finished activation index in {self.folder} ({type(exc).__name__}): build it with "
                              "`yfpo index build`") from None
        if self.meta.get("version") != INDEX_VERSION:
            raise IndexError_(f"{self.folder} holds an index of version {self.meta.get('version')}; this workbench "
                              f"reads version {INDEX_VERSION}: rebuild it with `yfpo index build`")
        self._offsets = [t["offset"] for t in self.meta["texts"]]
        self._whole: dict[str, torch.Tensor] = {}

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def column(self, unit: Unit) -> int:
        """The unit's row in the index (checked against the index's units)."""
        units = self.meta["units"]
        if unit.kind == "sae_feature":
            if units["kind"] != "sae_feature" or unit.sae_id != units["sae_id"]:
                raise IndexError_(f"{unit.label} is not in this index (it holds {self.describe_units()})")
            if not 0 <= unit.index < units["width"]:
                raise IndexError_(f"{unit.label} is out of range: the SAE has {units['width']} features")
            return unit.index
        if units["kind"] != "neuron" or unit.hook_name not in units["hook_names"]:
            raise IndexError_(f"{unit.label} is not in this index (it holds {self.describe_units()})")
        if not 0 <= unit.index < units["width"]:
            raise IndexError_(f"{unit.label} is out of range: {units['width']} neurons per layer")
        return units["hook_names"].index(unit.hook_name) * units["width"] + unit.index

    def unit_at(self, column: int) -> Unit:
        units = self.meta["units"]
        if units["kind"] == "sae_feature":
            return Unit("sae_feature", units["hook_name"], column, sae_id=units["sae_id"])
        row, index = divmod(column, units["width"])
        return Unit("neuron", units["hook_names"][row], index)

    def describe_units(self) -> str:
        units = self.meta["units"]
        if units["kind"] == "sae_feature":
            return f"the {units['width']} features of SAE {units['sae_id']}"
        return f"{len(units['hook_names'])} layers x {units['width']} neurons"

    def rows(self, column: int, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Row ``column`` of each tensor in ``names`` (one slice read each)."""
        from safetensors import safe_open

        with safe_open(str(self.folder / INDEX_FILE), framework="pt") as f:
            return {name: f.get_slice(name)[column: column + 1][0] for name in names}

    def whole(self, name: str) -> torch.Tensor:
        """A whole tensor (kept after the first read)."""
        if name not in self._whole:
            from safetensors import safe_open

            with safe_open(str(self.folder / INDEX_FILE), framework="pt") as f:
                self._whole[name] = f.get_tensor(name)
        return self._whole[name]

    def tokens(self, start: int, stop: int) -> list[int]:
        from safetensors import safe_open

        with safe_open(str(self.folder / INDEX_FILE), framework="pt") as f:
            return f.get_slice("tokens")[start:stop].tolist()

    def text_of(self, token: int) -> dict[str, Any]:
        """The corpus text holding global token ``token`` (its id, math flag, source, offset)."""
        import bisect

        return self.meta["texts"][bisect.bisect_right(self._offsets, token) - 1]

    def stats(self, unit: Unit) -> UnitStats:
        row = self.rows(self.column(unit), ("sum", "sum_sq", "max", "min", "active", "math_sum", "other_sum"))
        counts = {name: int(self.whole(name)[0]) for name in ("count", "math_count", "other_count")}
        n = max(counts["count"], 1)
        mean = float(row["sum"]) / n
        variance = max(float(row["sum_sq"]) / n - mean ** 2, 0.0)
        return UnitStats(count=counts["count"], mean=mean, std=variance ** 0.5, min=float(row["min"]),
                         max=float(row["max"]), density=int(row["active"]) / n,
                         math_mean=float(row["math_sum"]) / max(counts["math_count"], 1) if counts["math_count"] else
                         float("nan"),
                         nonmath_mean=float(row["other_sum"]) / counts["other_count"] if counts["other_count"] else
                         float("nan"))


def find_index(model: LoadedModel, sae: Any = None, corpus_name: str | None = None) -> ActivationIndex | None:
    """The most recently built index of ``model``'s neurons (or ``sae``'s features) in the user cache, over
    the corpus named ``corpus_name`` (any corpus when ``None``); ``None`` when there is none."""
    folder = _units_dir(model, sae)
    found = [m for m in folder.glob("*/" + META_FILE) if (m.parent / INDEX_FILE).exists()
             and (corpus_name is None or m.parent.name.rsplit("-", 1)[0] == corpus_name)] if folder.is_dir() else []
    if not found:
        return None
    return ActivationIndex(max(found, key=lambda m: m.stat().st_mtime).parent)
