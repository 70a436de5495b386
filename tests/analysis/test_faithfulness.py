"""Faithfulness curves on the planted tiny toy model (a neuron that drives the answer " 9")."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from tests.helpers import DRIVER, planted_model
from yfpo_core.analysis.faithfulness import (
    FaithfulnessReport,
    capped_ks,
    faithfulness_curves,
    faithfulness_figure,
    method_overlap,
    spearman,
    split_problems,
)
from yfpo_core.problems.base import Problem
from yfpo_core.scoring.evaluate import answer_ranking
from yfpo_core.units.unit import Unit

NAMES = ["Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hal"]
THINGS = ["pens", "cats", "figs", "hats", "cups", "dogs", "nuts", "mugs"]


def _problems(n: int = 8) -> list[Problem]:
    return [Problem(id=f"nine/{i}", question=f"{NAMES[i]} has 9 {THINGS[i]}. How many?", solution="#### 9",
                    answer="9", source="test") for i in range(n)]


@pytest.fixture(scope="module")
def run():
    torch.set_num_threads(1)
    model = planted_model()
    locate, heldout = split_problems(_problems(), 3)
    report = faithfulness_curves(model, locate, heldout, ["grad_x_act", "activation"], ks=(1, 5, 200), n_random=3)
    return model, locate, heldout, report


def test_k_zero_is_the_unablated_model_and_ks_are_capped(run):
    model, _, heldout, report = run
    summary = answer_ranking(model, heldout).summary()
    assert report.baseline == {"ranking_accuracy": summary["ranking_accuracy"], "gold_logprob": summary["gold_logprob"]}
    assert report.settings["ks"] == [1, 5, 128]  # 2 layers x 64 neurons exist
    rows = report.rows()
    assert [(r["method"], r["k"]) for r in rows] == [(m, k) for m in ("grad_x_act", "activation") for k in (0, 1, 5, 128)]
    assert all(r["gold_logprob"] == summary["gold_logprob"] for r in rows if r["k"] == 0)


def test_random_sets_are_same_layer_disjoint_and_of_the_same_size(run):
    _, _, _, report = run
    for point in report.points:
        assert len(point.units) == point.k
        if point.k == 128:  # every unit is in the set: no disjoint random set exists, and none is pretended
            assert point.random == [] and point.random_units == []
            continue
        assert len(point.random) == len(point.random_units) == 3
        layers = Counter(Unit.parse(label).layer for label in point.units)
        for labels in point.random_units:
            assert Counter(Unit.parse(label).layer for label in labels) == layers
            assert not set(labels) & set(point.units) and len(set(labels)) == point.k


def test_the_planted_driver_is_found_and_matters_more_than_random_neurons(run):
    _, _, _, report = run
    first = next(p for p in report.curve("grad_x_act") if p.k == 1)
    assert first.units == [Unit.neuron(*DRIVER).label]
    drop = first.tested["gold_logprob"] - report.baseline["gold_logprob"]
    assert drop < min(r["gold_logprob"] for r in first.random) - report.baseline["gold_logprob"] - 0.5
    everything = next(p for p in report.curve("grad_x_act") if p.k == 128)
    assert everything.tested["gold_logprob"] < report.baseline["gold_logprob"]


def test_held_out_problems_must_not_be_locate_problems():
    model = planted_model()
    problems = _problems(4)
    with pytest.raises(ValueError, match="not located on"):
        faithfulness_curves(model, problems[:3], problems[2:], ["activation"], ks=(1,))
    with pytest.raises(ValueError, match="cannot hold out"):
        split_problems(problems, 4)
    with pytest.raises(ValueError, match="unknown method"):
        faithfulness_curves(model, problems[:2], problems[2:], ["magic"], ks=(1,))
    with pytest.raises(ValueError, match="at least 1"):
        capped_ks((0, 5), 10)


def test_overlap_and_rank_correlation():
    x = torch.tensor([0.1, 0.5, -0.2, 3.0])
    assert spearman(x, x) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)  # a monotone map keeps every rank

    class Result:  # what method_overlap reads of an AttributionResult
        def __init__(self, scores):
            self.scores = torch.tensor(scores)

        def top(self, k, by):
            return [type("S", (), {"unit": i})() for i in self.scores.topk(k).indices.tolist()]

    rows = method_overlap({"a": Result([4.0, 3, 2, 1]), "b": Result([1.0, 3, 4, 2]), "c": Result([4.0, 3, 2, 1])}, k=2)
    by_pair = {(r["method_a"], r["method_b"]): r for r in rows}
    assert by_pair[("a", "c")]["jaccard"] == 1.0 and by_pair[("a", "c")]["spearman"] == pytest.approx(1.0)
    assert by_pair[("a", "b")]["jaccard"] == pytest.approx(1 / 3)  # {0,1} vs {2,1}


def test_report_round_trips_and_draws(run):
    _, _, _, report = run
    again = FaithfulnessReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert json.dumps(again.rows()) == json.dumps(report.rows()) and again.overlap == report.overlap
    assert len(report.to_csv().strip().splitlines()) == 1 + 2 * 4
    assert report.overlap[0]["method_a"] == "grad_x_act" and 0 <= report.overlap[0]["jaccard"] <= 1
    fig = faithfulness_figure(report, "ranking_accuracy")
    names = [t.name for t in fig.data]
    assert names[-2:] == ["grad_x_act", "activation"] and any("random" in n for n in names)
    assert list(fig.data[-1].y)[0] == report.baseline["ranking_accuracy"]


LLAMA_FAMILY = dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
                    gated_mlp=True, n_key_value_heads=2, final_rms=True)


@pytest.mark.parametrize("family", ["toy", "llama"])
def test_held_out_states_score_each_zeroed_set_as_the_whole_model_does(family):
    """Starting each zeroed set at its lowest block (and the plain model at the last one) is a saving, not an
    approximation: the rows equal answer ranking under the same intervention, for sets that start in every
    block, with learned positions and with rotary attention (whose positions come from the shared cache)."""
    from yfpo_core.analysis.faithfulness import HeldOutStates, zeroed_rows
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model
    from yfpo_core.problems import load_problems

    kwargs = toy_config_kwargs(dict(n_layers=3, d_model=32, n_heads=4, d_mlp=64))
    if family == "llama":
        kwargs.update(LLAMA_FAMILY)
    model = wrap_toy_model(build_toy_model(kwargs, seed=0), source="test")
    problems = load_problems("toy", limit=5)
    scorer = HeldOutStates(model, problems)
    hook = "blocks.{}.mlp.hook_post"
    sets = [[], [Unit("neuron", hook.format(2), 5)], [Unit("neuron", hook.format(1), 3), Unit("neuron", hook.format(2), 9)],
            [Unit("neuron", hook.format(0), i) for i in range(0, 64, 3)]]
    assert [scorer.first_block(s) for s in sets] == [2, 2, 1, 0]
    for units in sets:
        fast, plain = scorer.rows(units), zeroed_rows(model, problems, units)
        for a, b in zip(fast, plain, strict=True):
            assert a["correct"] == b["correct"]
            assert a["candidates"] == pytest.approx(b["candidates"], rel=1e-5, abs=1e-5)
    assert scorer.rows(sets[3]) != scorer.rows([])  # zeroing block 0 changes the answers' log-probs
