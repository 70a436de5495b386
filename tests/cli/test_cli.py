"""The `yfpo` command line, in process, on a tiny registered model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import save_tiny_sae, tiny_toy
from yfpo_core.attribution.result import AttributionResult
from yfpo_core.cli import main
from yfpo_core.models import register_model
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit

TINY = "tiny-cli"


@pytest.fixture(autouse=True)
def tiny(monkeypatch, tmp_path):
    model = tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=256)
    register_model(TINY, lambda device: model)
    monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path / "runs"))
    return model


def test_help_is_fast_and_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "yfpo_core", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("models", "problems", "eval", "locate", "ablate", "inspect", "pairs", "train", "runs",
                    "experiment", "sae", "toy", "steer", "faithfulness", "index", "search"):
        assert command in out.stdout


def test_building_the_parser_does_not_load_torch():
    code = ("import sys\nfrom yfpo_core.cli import build_parser\nbuild_parser()\n"
            "print(sorted({'torch', 'transformer_lens', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_problems_and_sources(capsys):
    assert main(["problems", "--source", "toy", "--limit", "3"]) == 0
    assert "3 problems from toy" in capsys.readouterr().out
    assert main(["problems", "--list-sources"]) == 0
    assert "gsm8k-test-100" in capsys.readouterr().out


def test_eval_ranking_and_exact(capsys, tmp_path):
    assert main(["eval", "--model", TINY, "--problems", "toy", "--limit", "3", "--metric", "ranking",
                 "--out", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "ranking_accuracy" in out and (tmp_path / "r.summary.json").exists()
    assert main(["eval", "--model", TINY, "--problems", "toy", "--limit", "2", "--metric", "exact",
                 "--max-new-tokens", "8"]) == 0
    assert "exact_match" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(capsys):
    assert main(["eval", "--model", "no-such-model-anywhere", "--problems", "toy", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yfpo: error:") and err.count("\n") == 1
    assert main(["problems", "--source", "no-such-set"]) == 2


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


def test_pairs_train_runs_and_experiment(capsys, tmp_path, tiny):
    pairs = tmp_path / "pairs.jsonl"
    assert main(["pairs", "--model", TINY, "--problems", "toy", "--limit", "8", "--out", str(pairs)]) == 0
    assert len(pairs.read_text().splitlines()) == 8
    NeuronSet.create([Unit.neuron(1, 1), Unit.neuron(1, 2)], tiny, scores=[1.0, 0.5]).save(tmp_path / "set.json")
    run = tmp_path / "run"
    assert main(["train", "--model", TINY, "--pairs", str(pairs), "--problems", "toy", "--eval-problems", "toy",
                 "--n-eval-problems", "3", "--neuron-set", str(tmp_path / "set.json"), "--lam", "0.5",
                 "--steps", "3", "--batch-pairs", "4", "--trainable", "mlp_last_k", "--last-k", "1",
                 "--out-dir", str(run)]) == 0
    assert "finished after 3 steps" in capsys.readouterr().out
    assert main(["runs", "compare", str(run), "--html", str(tmp_path / "c.html")]) == 0
    assert (tmp_path / "c.html").stat().st_size > 1000
    assert main(["runs", "list"]) == 0
    exp = tmp_path / "exp"
    assert main(["experiment", "--set", str(tmp_path / "set.json"), "--seeds", "0,1", "--out-dir", str(exp),
                 "--model", TINY, "--problems", "toy", "--eval-problems", "toy", "--n-train-problems", "8",
                 "--n-eval-problems", "3", "--steps", "2", "--batch-pairs", "4", "--last-k", "1",
                 "--eval-every", "2"]) == 0
    table = (exp / "experiment.md").read_text()
    for arm in ("dpo", "yfpo-located", "yfpo-random"):
        assert arm in table
    assert len((exp / "experiment.csv").read_text().splitlines()) == 1 + 3 * 2


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
