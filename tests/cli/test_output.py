"""Terminal tables (yfpo_core.cli.output): aligned, shortened, and never a control character from a file."""

from __future__ import annotations

from yfpo_core.cli.output import print_summary, print_table, shorten


def test_shorten_folds_space_cuts_and_shows_escapes():
    assert shorten("a  b\nc", 10) == "a b c"
    assert shorten("abcdefgh", 5) == "abcd…"
    assert shorten("red \x1b[31m", 20) == "red \\x1b[31m"


def test_table_and_summary(capsys):
    print_table([{"method": "attnlrp", "score": 0.12345}, {"method": "x" * 30, "score": 2.0}], max_width=8)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["method", "score"]
    assert lines[1].split() == ["attnlrp", "0.123"] and lines[2].split() == ["xxxxxxx…", "2.000"]
    print_table([])
    assert capsys.readouterr().out == "(no rows)\n"
    print_summary("done\x07", {"loss": 0.693147, "steps": 40.0, "rate": 3})
    assert capsys.readouterr().out.splitlines() == ["", "done\\x07", "  loss                 0.6931",
                                                    "  steps                40", "  rate                 3"]
