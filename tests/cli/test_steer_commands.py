"""yfpo steer (yfpo_core.cli.steer_commands): both answers written; the CLI offers the core's steering kinds."""

from __future__ import annotations

import json


def test_cli_steer_writes_both_answers(capsys, tmp_path):
    from yfpo_core.cli import main

    out = tmp_path / "steer.json"
    assert main(["steer", "--model", "toy-arith", "--problems", "toy", "--limit", "2", "--unit", "L1N3",
                 "--unit", "L0N5", "--mode", "add", "--value", "0", "--max-new-tokens", "40", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "--- plain: answer" in printed and "--- steered: answer" in printed
    assert "identical token for token" in printed and "exact match: plain" in printed
    data = json.loads(out.read_text())
    assert data["units"] == ["blocks.1.mlp.hook_post:3", "blocks.0.mlp.hook_post:5"] and len(data["results"]) == 2
    assert all(r["plain"]["token_ids"] == r["steered"]["token_ids"] for r in data["results"])
    assert main(["steer", "--model", "toy-arith", "--prompt", "Q: 1+1?", "--unit", "L7N3", "--value", "1"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_the_cli_offers_the_steering_kinds():
    from yfpo_core.analysis.steering import STEER_KINDS
    from yfpo_core.cli import steer_commands

    assert steer_commands.STEER_KINDS == STEER_KINDS
