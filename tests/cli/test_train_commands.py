"""yfpo pairs, train, runs and experiment (yfpo_core.cli.train_commands): end to end on the tiny CLI model,
options refused before writing, a damaged run listed, resume of something that is not a run."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY_CLI as TINY, trainer_config as config
from yfpo_core.cli import main
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit


@pytest.mark.parametrize("flags", [["--lr", "inf"], ["--lr", "nan"], ["--grad-clip", "-1"]])
def test_train_refuses_non_finite_or_reversing_options_before_writing(setup, flags, capsys):
    from yfpo_core.cli import main

    _, tmp = setup
    cfg = config(tmp).to_dict()
    (tmp / "run.json").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(tmp / "run.json"), "--out-dir", str(tmp / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yfpo: error: invalid training config") and err.count("\n") == 1
    assert not (tmp / "r" / "checkpoints").exists()


def test_runs_list_survives_a_damaged_config(setup, tmp_path, capsys):
    from yfpo_core.cli import main

    for name, text in (("good", json.dumps({"lam": 0, "steps": 3})), ("bad", "{")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "bad" in out and "unreadable config.json" in out


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "no such run directory"),
    (lambda d: d.mkdir(), "has no config.json"),
    (lambda d: d.write_text("x"), "is a file, not a run directory"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"steps": ')), "cannot be read"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"steps": "10"}')), "steps must be a whole number"),
])
def test_resume_of_something_that_is_not_a_run_says_so(tmp_path, capsys, make, words):
    from yfpo_core.cli import main

    target = tmp_path / "target"
    make(target)
    assert main(["train", "--resume", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yfpo: error:") and words in err and err.count("\n") == 1


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
