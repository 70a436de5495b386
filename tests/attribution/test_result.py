"""The outcome of an attribution (yfpo_core.attribution.result): the ranking, by hand, and its two files."""

from __future__ import annotations

import json

import pytest
import torch

from yfpo_core.attribution.result import AttributionResult
from yfpo_core.errors import YfpoError
from yfpo_core.units.space import UnitSpace
from yfpo_core.units.unit import Unit

HOOKS = ("blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post")


def _result() -> AttributionResult:
    scores = torch.tensor([[0.5, -3.0, 0.1],    # layer 0
                           [2.0, 0.0, -0.2]])   # layer 1
    return AttributionResult(scores=scores, per_problem=torch.stack([scores, 2 * scores]), problem_ids=["a", "b"],
                             space=UnitSpace("neuron", HOOKS, 3), method="grad_x_act", target="answer_logprob",
                             model_name="m", model_fingerprint="f", created="2026-01-01T00:00:00Z",
                             params={"steps": 8}, token_scores={"a": torch.ones(4, 2, 3)},
                             tokens={"a": ["Q", ":", " ", "1"]})


def test_top_by_value_abs_negative_and_layer():
    result = _result()
    assert [(s.unit.short_label, s.score, s.rank) for s in result.top(3)] == [
        ("L1N0", 2.0, 1), ("L0N0", 0.5, 2), ("L0N2", pytest.approx(0.1), 3)]
    assert [s.unit.short_label for s in result.top(2, by="abs")] == ["L0N1", "L1N0"]
    assert [s.unit.short_label for s in result.top(1, by="negative")] == ["L0N1"]
    assert [s.unit.short_label for s in result.top(10, layers=[1])] == ["L1N0", "L1N1", "L1N2"]  # k capped at 3
    assert result.score_of(Unit.neuron(0, 1)) == -3.0
    assert list(result.to_frame(k=2)["unit"]) == ["blocks.1.mlp.hook_post:0", "blocks.0.mlp.hook_post:0"]
    with pytest.raises(ValueError, match="none of the layers \\[5\\] was scored \\(scored layers: \\[0, 1\\]\\)"):
        result.top(3, layers=[5])
    with pytest.raises(ValueError, match="by must be"):
        result.top(3, by="size")


def test_save_and_load_round_trip_and_refusals(tmp_path):
    result = _result()
    tensor_path, meta_path = result.save(tmp_path / "r.json")  # a suffix is replaced, not doubled
    assert (tensor_path.name, meta_path.name) == ("r.safetensors", "r.json")
    again = AttributionResult.load(tmp_path / "r")
    assert torch.equal(again.scores, result.scores) and torch.equal(again.per_problem, result.per_problem)
    assert (again.problem_ids, again.space, again.params, again.tokens) == (["a", "b"], result.space, {"steps": 8},
                                                                            result.tokens)
    assert torch.equal(again.token_scores["a"], torch.ones(4, 2, 3))  # kept in half precision: exact for 1.0
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(YfpoError, match="is not a version-1 attribution result"):
        AttributionResult.load(meta_path)
    with pytest.raises(YfpoError, match="Re-run `yfpo locate`"):
        AttributionResult.load(tmp_path / "missing")
