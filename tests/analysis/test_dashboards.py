"""A unit's dashboard from the activation index, and free text shaded by a unit (yfpo_core.analysis.dashboards),
against brute force."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import INDEX_TEXTS
from yfpo_core.analysis.dashboards import shade_text, unit_dashboard
from yfpo_core.analysis.unit_search import text_tokens
from yfpo_core.errors import YfpoError
from yfpo_core.units.unit import Unit


def test_dashboard_from_the_index(index_built, index_brute, index_model):
    x = torch.cat([a for _, a in index_brute])
    unit = Unit.neuron(1, 40)
    column = index_built.column(unit)
    dash = unit_dashboard(index_built, unit, index_model, attribution=0.25, n_top=5)
    assert [e.value for e in dash.top] == pytest.approx(x[:, column].topk(5).values.tolist())
    best = int(x[:, column].argmax())
    ids = torch.cat([torch.tensor(i) for i, _ in index_brute])
    assert dash.top[0].token == index_model.decode([int(ids[best])])
    assert dash.top[0].text_id == index_built.text_of(best)["id"]
    assert dash.top[0].values[dash.top[0].center] == pytest.approx(dash.top[0].value, abs=1e-2)
    lows = [q["low"] for q in dash.quantiles]
    assert lows == sorted(lows, reverse=True) and all(e.value > 0 for q in dash.quantiles for e in q["examples"])
    assert sum(b["count"] for b in dash.histogram) == index_built.n_tokens
    assert len(dash.promoted) == 10 and dash.attribution == 0.25
    assert dash.stats["max"] == pytest.approx(float(x[:, column].max()))
    assert json.loads(json.dumps(dash.to_dict()))["unit"] == unit.label
    with pytest.raises(YfpoError, match="out of range"):
        index_built.column(Unit.neuron(1, 64))
    with pytest.raises(YfpoError, match="not in this index"):
        index_built.column(Unit.neuron(5, 0))


def test_free_text_shading_equals_the_model_activations(index_model, index_brute):
    unit = Unit.neuron(0, 11)
    tokens, values = shade_text(index_model, unit, INDEX_TEXTS[2].text)
    ids, acts = index_brute[2]
    assert tokens == [index_model.decode([i]) for i in ids] == text_tokens(index_model, INDEX_TEXTS[2].text)
    assert values == pytest.approx(acts[:, 11].tolist(), abs=1e-6)
