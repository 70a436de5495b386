"""yfpo eval (yfpo_core.cli.eval_command): ranking and exact match on the tiny CLI model."""

from __future__ import annotations

from tests.helpers import TINY_CLI as TINY
from yfpo_core.cli import main


def test_eval_ranking_and_exact(capsys, tmp_path):
    assert main(["eval", "--model", TINY, "--problems", "toy", "--limit", "3", "--metric", "ranking",
                 "--out", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "ranking_accuracy" in out and (tmp_path / "r.summary.json").exists()
    assert main(["eval", "--model", TINY, "--problems", "toy", "--limit", "2", "--metric", "exact",
                 "--max-new-tokens", "8"]) == 0
    assert "exact_match" in capsys.readouterr().out
