"""yfpo locate, ablate and inspect (yfpo_core.cli.locate_commands) on the tiny CLI model, neurons and SAE
features."""

from __future__ import annotations

import json

from tests.helpers import TINY_CLI as TINY, save_tiny_sae
from yfpo_core.attribution.result import AttributionResult
from yfpo_core.cli import main
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit


def test_locate_ablate_inspect(capsys, tmp_path):
    out = tmp_path / "set.json"
    assert main(["locate", "--model", TINY, "--problems", "toy", "--limit", "4", "--method", "attnlrp",
                 "--top-k", "5", "--out", str(out)]) == 0
    neuron_set = NeuronSet.load(out)
    assert len(neuron_set) == 5 and neuron_set.selection["method"] == "attnlrp"
    assert (tmp_path / "set.scores.json").exists() and (tmp_path / "set.scores.safetensors").exists()
    # Re-ranking the saved scores within one layer gives that layer's best units, in score order.
    result = AttributionResult.load(tmp_path / "set.scores")
    layer1 = out.with_name("layer1.json")
    assert main(["locate", "--model", TINY, "--from-scores", str(tmp_path / "set.scores.json"), "--layers", "1",
                 "--top-k", "3", "--out", str(layer1)]) == 0
    cut = NeuronSet.load(layer1)
    row = result.scores[result.space.row_of(Unit.neuron(1, 0))]
    assert [su.unit for su in cut.units] == [Unit.neuron(1, i) for i in row.topk(3).indices.tolist()]
    assert main(["locate", "--model", TINY, "--from-scores", str(tmp_path / "set.scores.json"), "--layers", "7",
                 "--out", str(layer1)]) == 2
    assert main(["locate", "--from-scores", str(tmp_path / "set.scores.json"), "--out", str(layer1)]) == 2
    assert main(["ablate", "--set", str(out), "--model", TINY, "--random", "2", "--out",
                 str(tmp_path / "ablation.json")]) == 0
    report = json.loads((tmp_path / "ablation.json").read_text())
    assert report["n_units"] == 5 and len(report["random"]) == 2
    unit = neuron_set.units[0].unit.label
    assert main(["inspect", "--model", TINY, "--problems", "toy", "--limit", "3", "--unit", unit, "--effect"]) == 0
    text = capsys.readouterr().out
    assert "Top-activating problems" in text and "Logit effect" in text and "ranking_accuracy" in text
    assert main(["inspect", "--model", TINY, "--unit", "L9N1", "--problems", "toy", "--limit", "1"]) == 2


def test_locate_sae_features_and_re_rank_their_scores(tmp_path):
    folder = save_tiny_sae(tmp_path / "tiny-sae", d_in=64)
    units = f"sae:{folder}"
    first = tmp_path / "features.json"
    assert main(["locate", "--model", TINY, "--problems", "toy", "--limit", "3", "--units", units,
                 "--method", "grad_x_act", "--top-k", "4", "--out", str(first)]) == 0
    scores = str(tmp_path / "features.scores.json")
    again = tmp_path / "top3.json"
    assert main(["locate", "--model", TINY, "--from-scores", scores, "--top-k", "3", "--out", str(again)]) == 2
    assert main(["locate", "--model", TINY, "--from-scores", scores, "--units", units, "--top-k", "3",
                 "--out", str(again)]) == 0
    ranked, cut = NeuronSet.load(first), NeuronSet.load(again)
    assert [su.unit for su in cut.units] == [su.unit for su in ranked.units][:3]
    assert all(su.unit.kind == "sae_feature" for su in cut.units) and "tiny-sae" in cut.sae
