"""yfpo problems and yfpo models (yfpo_core.cli.data_commands)."""

from __future__ import annotations

import json

from yfpo_core.cli import main


def test_problems_and_sources(capsys):
    assert main(["problems", "--source", "toy", "--limit", "3"]) == 0
    assert "3 problems from toy" in capsys.readouterr().out
    assert main(["problems", "--list-sources"]) == 0
    assert "gsm8k-test-100" in capsys.readouterr().out


def test_escape_sequences_are_shown_not_sent_to_the_terminal(tmp_path, capsys):
    from yfpo_core.cli import main

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "Q\x1b[2J\x1b]0;pwned\x07?", "answer": "3"}) + "\n")
    assert main(["problems", "--source", str(path)]) == 0
    assert main(["problems", "--source", str(path), "--show", "a"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out
