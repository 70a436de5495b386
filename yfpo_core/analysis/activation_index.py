"""An activation index over a corpus, built once per model, unit space (all MLP neurons or one SAE's
features) and corpus, for corpus-wide unit dashboards (:mod:`yfpo_core.analysis.dashboards`) and search.
The corpus itself (default texts, a user's JSONL) is read by :mod:`yfpo_core.analysis.index_corpus`.

For every unit the index keeps, in one pass over the corpus:

* the **top-k activating tokens** (``TOP_K``), each with the unit's activation on ``TOP_WINDOW`` tokens
  either side (so a dashboard shades the context without running the model);
* a **uniform sample of the tokens where it is active** (> 0; ``SAMPLES`` of them, with ``SAMPLE_WINDOW``
  tokens either side), from which dashboards draw examples per activation quantile. The sample is a
  bottom-k of random keys (one key per token and unit, from a generator seeded per text), which is a
  uniform sample without replacement and makes a resumed build identical to an uninterrupted one;
* a **histogram** over fixed, signed, log-spaced bins (:data:`EDGES`, 1e-3 to 1e3 each sign), exact counts;
* exact **count, sum, sum of squares, min, max, active count**, and **sums on math and non-math texts**.

Files (never pickles): ``index.safetensors`` (tensors, unit-first so one unit's row is one slice read
through a memory map) and ``index.json`` (model, units, corpus texts, settings, timings) in
:func:`index_dir` under the user cache. A build writes ``build_state.safetensors``/``build_state.json`` every
``checkpoint_s`` seconds and when stopped (Ctrl-C, a cancelled job); building again resumes from there.
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
from yfpo_core.atomic import atomic_write, atomic_write_text
from yfpo_core.models.base import LoadedModel
from yfpo_core.paths import cache_dir
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units.unit import Unit

INDEX_VERSION = 1
TOP_K, TOP_WINDOW = 16, 10
SAMPLES, SAMPLE_WINDOW = 32, 6
_POS = torch.logspace(-3, 3, 25)
EDGES = torch.cat([-_POS.flip(0), _POS])  # 50 edges -> 51 bins; the middle bin is |x| < 1e-3
N_BINS = len(EDGES) + 1
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


class _State:
    """The running statistics of a build, unit-last (``[..., n_units]``) so that each text updates them
    with a few whole-tensor operations."""

    NAMES = ("sum", "sum_sq", "max", "min", "active", "hist", "math_sum", "other_sum", "top_values", "top_tokens",
             "top_windows", "sample_keys", "sample_values", "sample_tokens", "sample_windows")

    def __init__(self, n: int) -> None:
        self.sum = torch.zeros(n, dtype=torch.float64)
        self.sum_sq = torch.zeros(n, dtype=torch.float64)
        self.max = torch.full((n,), float("-inf"))
        self.min = torch.full((n,), float("inf"))
        self.active = torch.zeros(n, dtype=torch.int64)
        self.hist = torch.zeros(n * N_BINS, dtype=torch.int64)
        self.math_sum = torch.zeros(n, dtype=torch.float64)
        self.other_sum = torch.zeros(n, dtype=torch.float64)
        self.top_values = torch.full((TOP_K, n), float("-inf"))
        self.top_tokens = torch.full((TOP_K, n), -1, dtype=torch.int64)
        self.top_windows = torch.full((TOP_K, 2 * TOP_WINDOW + 1, n), float("nan"), dtype=torch.float16)
        self.sample_keys = torch.full((SAMPLES, n), float("inf"))
        self.sample_values = torch.full((SAMPLES, n), float("nan"))
        self.sample_tokens = torch.full((SAMPLES, n), -1, dtype=torch.int64)
        self.sample_windows = torch.full((SAMPLES, 2 * SAMPLE_WINDOW + 1, n), float("nan"), dtype=torch.float16)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).contiguous() for name in self.NAMES}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> _State:
        state = cls.__new__(cls)
        for name in cls.NAMES:
            setattr(state, name, tensors[name])
        return state

    def update(self, x: torch.Tensor, first_token: int, math: bool, generator: torch.Generator) -> None:
        """Fold in one text's activations ``x`` (``[pos, n_units]``, float32) whose first token has global
        index ``first_token``."""
        length, n = x.shape
        sums = x.sum(0, dtype=torch.float64)
        self.sum += sums
        self.sum_sq += (x * x).sum(0, dtype=torch.float64)
        (self.math_sum if math else self.other_sum).add_(sums)
        self.max = torch.maximum(self.max, x.max(0).values)
        self.min = torch.minimum(self.min, x.min(0).values)
        active = x > 0
        self.active += active.sum(0)
        bins = torch.bucketize(x, EDGES).add_(torch.arange(n) * N_BINS)
        self.hist += torch.bincount(bins.flatten(), minlength=n * N_BINS)
        # top-k: this text's best positions per unit, merged with the best so far
        k = min(TOP_K, length)
        values, positions = x.topk(k, dim=0)
        self.top_values, self.top_tokens, self.top_windows = _merge(
            (self.top_values, self.top_tokens, self.top_windows),
            (values, positions + first_token, _windows(x, positions, TOP_WINDOW)), TOP_K, largest=True)
        # uniform sample of active tokens: the smallest random keys win
        keys = torch.rand(x.shape, generator=generator).masked_fill_(~active, float("inf"))
        s = min(SAMPLES, length)
        kept, positions = keys.topk(s, dim=0, largest=False)
        merged = _merge((self.sample_keys, self.sample_values, self.sample_tokens, self.sample_windows),
                        (kept, x.gather(0, positions), positions + first_token, _windows(x, positions, SAMPLE_WINDOW)),
                        SAMPLES, largest=False)
        self.sample_keys, self.sample_values, self.sample_tokens, self.sample_windows = merged
        empty = torch.isinf(self.sample_keys)
        self.sample_tokens.masked_fill_(empty, -1)
        self.sample_values.masked_fill_(empty, float("nan"))


def _windows(x: torch.Tensor, positions: torch.Tensor, width: int) -> torch.Tensor:
    """``x[p - width : p + width + 1, unit]`` for each position ``p`` of each unit (NaN outside the text):
    ``[k, 2 * width + 1, n_units]`` in float16."""
    n = x.shape[1]
    pad = torch.full((width, n), float("nan"))
    padded = torch.cat([pad, x, pad])
    offsets = torch.arange(2 * width + 1)
    index = (positions[:, None, :] + offsets[None, :, None]).reshape(-1, n)
    return padded.gather(0, index).reshape(positions.shape[0], 2 * width + 1, n).half()


def _merge(old: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...], k: int, largest: bool) -> tuple[torch.Tensor, ...]:
    """Keep the ``k`` best rows (by the first tensor) per unit of ``old`` and ``new`` stacked together."""
    key = torch.cat([old[0], new[0]])
    order = key.topk(k, dim=0, largest=largest).indices  # [k, n]
    out = []
    for a, b in zip(old, new, strict=True):
        both = torch.cat([a, b.to(a.dtype)])
        index = order if both.dim() == 2 else order[:, None, :].expand(k, both.shape[1], both.shape[2])
        out.append(both.gather(0, index))
    return tuple(out)


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


@torch.no_grad()
def build_index(model: LoadedModel, texts: Sequence[CorpusText], *, sae: Any = None, folder: str | Path | None = None,
                corpus_name: str = "default", checkpoint_s: float = 60.0, seed: int = 0,
                progress: ProgressCallback | None = None, stop_after: int | None = None) -> Path:
    """Build (or resume building) the index of ``model``'s units over ``texts``; returns its folder.

    ``stop_after`` (texts) interrupts on purpose after that many texts of this call, leaving a checkpoint
    (for tests of resuming). Texts longer than the model's context are cut to it."""
    from yfpo_core.attribution.methods import activations

    if not texts:
        raise IndexError_("the corpus is empty")
    space = unit_space(model, sae)
    n_units = space.n_rows * space.width
    folder = Path(folder) if folder is not None else index_dir(model, texts, sae, corpus_name)
    if (folder / META_FILE).exists() and (folder / INDEX_FILE).exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    identity = {"version": INDEX_VERSION, "model": model.name, "model_fingerprint": model.fingerprint,
                "units": space.to_dict() if sae is None else {"kind": "sae_feature", "sae_id": sae.sae_id,
                                                               "hook_name": sae.hook_name, "width": sae.d_sae,
                                                               "sae_source": sae.source},
                "corpus": corpus_name, "corpus_fingerprint": corpus_fingerprint(texts), "seed": seed,
                "settings": {"top_k": TOP_K, "top_window": TOP_WINDOW, "samples": SAMPLES,
                             "sample_window": SAMPLE_WINDOW, "edges": EDGES.tolist()}}
    state, done, tokens, lengths, seconds = _State(n_units), 0, [], [], 0.0
    if (folder / STATE_META).exists() and (folder / STATE_FILE).exists():
        saved = json.loads((folder / STATE_META).read_text())
        if saved.get("identity") == identity and _state_done(folder / STATE_FILE) == saved.get("done"):
            from safetensors.torch import load_file

            loaded = load_file(str(folder / STATE_FILE))
            state = _State.from_tensors(loaded)
            done, seconds, lengths = int(saved["done"]), float(saved["seconds"]), list(saved["lengths"])
            tokens = loaded["tokens"].tolist()
    n_ctx = int(model.model.cfg.n_ctx)

    def checkpoint() -> None:
        tensors = {**state.tensors(), "tokens": torch.tensor(tokens, dtype=torch.int64)}
        _save(folder / STATE_FILE, tensors, {"done": str(done)})
        atomic_write_text(folder / STATE_META, json.dumps({"identity": identity, "done": done, "seconds": seconds,
                                                           "lengths": lengths}))

    first, last = done, time.perf_counter()
    saved_at = last
    try:
        with model.lock:
            for i in range(first, len(texts)):
                if stop_after is not None and i >= first + stop_after:
                    break
                ids = model.encode_prompt(texts[i].text)
                lengths.append(min(len(ids), n_ctx))
                ids = ids[:n_ctx]
                x = activations(model, space, tuple(ids)).reshape(len(ids), n_units).float().cpu()
                state.update(x, len(tokens), texts[i].math, torch.Generator().manual_seed(seed * 1_000_003 + i))
                tokens += ids
                done = i + 1
                now = time.perf_counter()
                seconds, last = seconds + now - last, now
                if now - saved_at >= checkpoint_s:
                    checkpoint()
                    saved_at = now
                report(progress, done, len(texts), f"{len(tokens)} tokens")
    except BaseException:
        checkpoint()
        raise
    if done < len(texts):
        checkpoint()
        return folder
    _finish(folder, state, tokens, lengths, texts, n_units, {**identity, "build_seconds": round(seconds, 2)})
    return folder


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


def _finish(folder: Path, state: _State, tokens: list[int], lengths: list[int], texts: Sequence[CorpusText],
            n_units: int, meta: dict[str, Any]) -> None:
    final = {name: _unit_first(name, value, n_units) for name, value in state.tensors().items() if name != "sample_keys"}
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    final["tokens"] = torch.tensor(tokens, dtype=torch.int64)
    final["count"] = torch.tensor([len(tokens)], dtype=torch.int64)
    final["math_count"] = torch.tensor([sum(n for n, t in zip(lengths, texts, strict=True) if t.math)])
    final["other_count"] = torch.tensor([sum(n for n, t in zip(lengths, texts, strict=True) if not t.math)])
    _save(folder / INDEX_FILE, final)
    seconds = meta["build_seconds"]
    meta = {**meta, "n_units": n_units, "n_texts": len(texts), "n_tokens": len(tokens),
            "tokens_per_second": round(len(tokens) / max(seconds, 1e-9), 1),
            "texts": [{"id": t.id, "math": t.math, "source": t.source, "offset": o, "length": n}
                      for t, o, n in zip(texts, offsets[:-1], lengths, strict=True)]}
    atomic_write_text(folder / META_FILE, json.dumps(meta))
    for name in (STATE_FILE, STATE_META):
        (folder / name).unlink(missing_ok=True)


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
