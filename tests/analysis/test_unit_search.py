"""Which units fire on a token (yfpo_core.analysis.unit_search), live and from the index, against brute force."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import INDEX_TEXTS
from yfpo_core.analysis.activation_index import TOP_K
from yfpo_core.analysis.unit_search import search_index, search_live
from yfpo_core.units.unit import Unit


def test_search_live_and_from_the_index(index_model, index_built, index_brute):
    ids, acts = index_brute[0]
    rows = search_live(index_model, INDEX_TEXTS[0].text, 5, k=10)
    assert len(rows) == 10 and rows[0]["activation"] == pytest.approx(float(acts[5].max()))
    assert Unit.parse(rows[0]["label"]) == index_built.unit_at(int(acts[5].argmax()))
    relative = search_live(index_model, INDEX_TEXTS[0].text, 5, k=5, index=index_built, rank_by="relative")
    assert all(r["of_max"] <= 1.0 + 1e-4 for r in relative)
    assert [r["of_max"] for r in relative] == sorted((r["of_max"] for r in relative), reverse=True)
    with pytest.raises(ValueError, match="outside the text"):
        search_live(index_model, "Q: hi", 99)
    found = search_index(index_built, index_model, "9", k=5)
    x = torch.cat([a for _, a in index_brute])
    flat_ids = torch.cat([torch.tensor(i) for i, _ in index_brute])
    for row in found:
        column = index_built.column(Unit.parse(row["label"]))
        top = x[:, column].topk(TOP_K).indices
        assert row["top_contexts_on_token"] == int((flat_ids[top] == index_model.encode("9")[0]).sum())
    with pytest.raises(ValueError, match="one token at a time"):
        search_index(index_built, index_model, "19", k=5)
