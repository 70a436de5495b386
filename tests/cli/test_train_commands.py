"""yfpo train, runs and experiment (yfpo_core.cli.train_commands): options refused before writing, a damaged
run listed, resume of something that is not a run."""

from __future__ import annotations

import json

import pytest

from tests.helpers import trainer_config as config


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
