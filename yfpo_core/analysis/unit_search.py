"""Search for units by text: which neurons or features fire most on this token?

* :func:`search_live` runs the model on a text and ranks every unit by its activation at one token, raw or
  relative to the unit's largest activation over the index's corpus (so that units with a large scale do
  not crowd out the rest).
* :func:`search_index` needs no model run: it ranks units by how many of their top-activating corpus
  contexts (in the activation index) peak on the given token, then by their largest activation there.
"""

from __future__ import annotations

from typing import Any

import torch

from yfpo_core.analysis.activation_index import ActivationIndex, unit_space
from yfpo_core.models.base import LoadedModel

RANK_BY = ("activation", "relative")


def text_tokens(model: LoadedModel, text: str) -> list[str]:
    """The tokens of ``text`` as the search reads it (prompt tokens such as BOS included)."""
    return [model.decode([i]) for i in model.encode_prompt(text)[: int(model.model.cfg.n_ctx)]]


@torch.no_grad()
def search_live(model: LoadedModel, text: str, position: int, *, sae: Any = None, index: ActivationIndex | None = None,
                k: int = 20, rank_by: str = "activation") -> list[dict[str, Any]]:
    """The ``k`` units (all neurons, or ``sae``'s features) most active at token ``position`` of ``text``.

    ``rank_by="relative"`` ranks by activation / the unit's max over ``index``'s corpus (needs ``index``)."""
    from yfpo_core.attribution.methods import activations

    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}")
    if rank_by == "relative" and index is None:
        raise ValueError("ranking relative to each unit's maximum needs the activation index")
    ids = model.encode_prompt(text)[: int(model.model.cfg.n_ctx)]
    if not -len(ids) <= position < len(ids):
        raise ValueError(f"token {position} is outside the text ({len(ids)} tokens)")
    space = unit_space(model, sae)
    with model.lock:
        values = activations(model, space, tuple(ids))[position].reshape(-1).float().cpu()
    maxima = index.whole("max") if index is not None else None
    if maxima is not None and len(maxima) != len(values):
        raise ValueError(f"the index holds {len(maxima)} units, the search reads {len(values)}: use the index of "
                         "the same units")
    key = values / maxima.clamp_min(1e-6) if rank_by == "relative" else values
    order = key.topk(min(k, len(key))).indices.tolist()
    rows = []
    for rank, column in enumerate(order, 1):
        unit = space.unit(column // space.width, column % space.width)
        row = {"rank": rank, "unit": unit.short_label, "label": unit.label, "activation": float(values[column])}
        if maxima is not None:
            row |= {"corpus_max": float(maxima[column]), "of_max": float(values[column] / max(float(maxima[column]), 1e-6))}
        rows.append(row)
    return rows


def search_index(index: ActivationIndex, model: LoadedModel, token: str | int, k: int = 20) -> list[dict[str, Any]]:
    """Units whose top corpus contexts peak on ``token`` (a text that is one token of ``model``'s
    vocabulary, or a token id), ranked by how many of their top contexts do, then by their largest
    activation on it."""
    ids = [token] if isinstance(token, int) else model.encode(token)
    if len(ids) != 1:
        raise ValueError(f"{token!r} is {len(ids)} tokens for {model.name}; search one token at a time "
                         f"({', '.join(repr(model.decode([i])) for i in ids[:6])})")
    top_tokens, top_values = index.whole("top_tokens"), index.whole("top_values")  # [units, K]
    corpus = index.whole("tokens")
    hits = (top_tokens >= 0) & (corpus[top_tokens.clamp_min(0)] == ids[0])
    count = hits.sum(1)
    best = top_values.masked_fill(~hits, float("-inf")).max(1).values
    key = count.double() * 1e6 + best.double().clamp(-1e5, 1e5)
    order = [c for c in key.topk(min(k, len(key))).indices.tolist() if count[c] > 0]
    return [{"rank": rank, "unit": index.unit_at(c).short_label, "label": index.unit_at(c).label,
             "top_contexts_on_token": int(count[c]), "max_on_token": float(best[c])}
            for rank, c in enumerate(order, 1)]
