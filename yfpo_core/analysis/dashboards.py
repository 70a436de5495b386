"""Unit dashboards drawn from the activation index (:mod:`yfpo_core.analysis.activation_index`), like SAEDashboard's,
for neurons and SAE features alike: top contexts with their tokens shaded, examples per activation
quantile, the histogram and density, the direct logit effect, the mean on math versus non-math text, the
unit's attribution score when one is given, and :func:`shade_text` for any text a user types.

Everything but the logit effect and free text is read from the index (one memory-mapped slice per
tensor), so a dashboard is drawn in milliseconds however large the corpus (``bench/index.py`` times it).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from yfpo_core.analysis.activation_index import EDGES, ActivationIndex
from yfpo_core.models.base import LoadedModel
from yfpo_core.units.unit import Unit


@dataclass
class Example:
    """One context: the text it comes from, the tokens around the chosen one and the unit's values there."""

    text_id: str
    math: bool
    token: str  # the chosen (max-activating or sampled) token
    value: float
    tokens: list[str]
    values: list[float]
    center: int  # index of the chosen token in ``tokens``


@dataclass
class UnitDashboard:
    """Everything a unit's dashboard shows (see the module docstring)."""

    unit: Unit
    stats: dict[str, float]
    top: list[Example]
    quantiles: list[dict[str, Any]]  # {"label", "low", "high", "examples": [Example]}
    histogram: list[dict[str, float]]  # non-empty bins: {"low", "high", "count"}
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)
    attribution: float | None = None
    corpus: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unit"] = self.unit.label
        return out


def _example(index: ActivationIndex, model: LoadedModel, token: int, value: float, window: torch.Tensor
             ) -> Example | None:
    """The context of global token ``token`` (``value``: the unit's exact activation there; ``window``: its
    float16 values around it, NaN outside the token's text)."""
    if token < 0:
        return None
    width = (len(window) - 1) // 2
    ids = index.whole("tokens")
    text = index.text_of(token)
    tokens, values, center = [], [], 0
    for j, around in enumerate(window.float().tolist()):
        where = token - width + j
        if math.isnan(around) or not 0 <= where < len(ids):
            continue
        if where == token:
            center = len(tokens)
        tokens.append(model.decode([int(ids[where])]))
        values.append(around)
    return Example(text_id=text["id"], math=bool(text["math"]), token=tokens[center], value=value, tokens=tokens,
                   values=values, center=center)


def _quantiles(index: ActivationIndex, model: LoadedModel, rows: dict[str, torch.Tensor], n_bins: int,
               per_bin: int) -> list[dict[str, Any]]:
    """Examples per quantile of the unit's positive activations (from the index's uniform sample)."""
    values, tokens, windows = rows["sample_values"], rows["sample_tokens"], rows["sample_windows"]
    kept = [i for i in range(len(values)) if int(tokens[i]) >= 0 and not math.isnan(float(values[i]))]
    kept.sort(key=lambda i: float(values[i]))
    out = []
    for q in range(n_bins - 1, -1, -1):  # highest quantile first
        part = kept[q * len(kept) // n_bins: (q + 1) * len(kept) // n_bins]
        if not part:
            continue
        step = max(len(part) // per_bin, 1)
        chosen = part[::step][:per_bin]
        examples = [_example(index, model, int(tokens[i]), float(values[i]), windows[i]) for i in chosen]
        out.append({"label": f"{100 * q // n_bins}–{100 * (q + 1) // n_bins}%", "low": float(values[part[0]]),
                    "high": float(values[part[-1]]), "examples": [e for e in examples if e is not None]})
    return out


def unit_dashboard(index: ActivationIndex, unit: Unit, model: LoadedModel, *, sae: Any = None,
                   attribution: float | None = None, n_top: int = 10, n_quantiles: int = 5, per_quantile: int = 3,
                   logit_k: int = 10) -> UnitDashboard:
    """The dashboard of ``unit`` from ``index`` (``model`` decodes tokens and gives the logit effect;
    ``sae`` is needed for a feature's logit effect)."""
    from yfpo_core.analysis.inspection import logit_effect

    started = time.perf_counter()
    column = index.column(unit)
    rows = index.rows(column, ("top_values", "top_tokens", "top_windows", "sample_values", "sample_tokens",
                               "sample_windows", "hist"))
    top = [_example(index, model, int(t), float(v), w) for t, v, w in
           zip(rows["top_tokens"][:n_top], rows["top_values"][:n_top], rows["top_windows"][:n_top], strict=True)]
    counts = rows["hist"].tolist()
    edges = [float("-inf"), *EDGES.tolist(), float("inf")]
    histogram = [{"low": edges[b], "high": edges[b + 1], "count": int(c)} for b, c in enumerate(counts) if c]
    promoted, suppressed = ([], []) if unit.kind == "sae_feature" and sae is None else \
        logit_effect(model, unit, k=logit_k, sae=sae)
    corpus = {k: index.meta[k] for k in ("corpus", "n_texts", "n_tokens", "model")}
    return UnitDashboard(unit=unit, stats=index.stats(unit).to_dict(), top=[e for e in top if e is not None],
                         quantiles=_quantiles(index, model, rows, n_quantiles, per_quantile), histogram=histogram,
                         promoted=promoted, suppressed=suppressed, attribution=attribution, corpus=corpus,
                         seconds=time.perf_counter() - started)


@torch.no_grad()
def shade_text(model: LoadedModel, unit: Unit, text: str, sae: Any = None) -> tuple[list[str], list[float]]:
    """The tokens of ``text`` (as the index reads a text, prompt tokens included) and ``unit``'s
    activation on each: the free-prompt box."""
    from yfpo_core.attribution.methods import activations
    from yfpo_core.analysis.inspection import space_for

    space = space_for(model, unit, sae)
    ids = model.encode_prompt(text)[: int(model.model.cfg.n_ctx)]
    with model.lock:
        values = activations(model, space, tuple(ids))[:, space.row_of(unit), unit.index].float().cpu()
    return [model.decode([i]) for i in ids], values.tolist()
