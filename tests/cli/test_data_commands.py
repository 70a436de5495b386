"""yfpo problems and yfpo models (yfpo_core.cli.data_commands)."""

from __future__ import annotations

from yfpo_core.cli import main


def test_problems_and_sources(capsys):
    assert main(["problems", "--source", "toy", "--limit", "3"]) == 0
    assert "3 problems from toy" in capsys.readouterr().out
    assert main(["problems", "--list-sources"]) == 0
    assert "gsm8k-test-100" in capsys.readouterr().out
