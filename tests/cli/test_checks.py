"""The CLI's argument checks (yfpo_core.cli.checks): counts, layer lists and output paths, before any work."""

from __future__ import annotations

import argparse
import os

import pytest

from yfpo_core.cli.checks import check_output, count, parse_layers
from yfpo_core.errors import YfpoError


def test_count():
    at_least_one = count(1)
    assert at_least_one("3") == 3 and at_least_one.__name__ == "whole number >= 1"
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1, got 0"):
        at_least_one("0")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a whole number, got '2.5'"):
        at_least_one("2.5")


def test_parse_layers():
    assert parse_layers(None) is None
    assert parse_layers(" 26, 27,,28 ", 30) == [26, 27, 28]
    with pytest.raises(YfpoError, match="the model has layers 0-29, so 30 does not exist"):
        parse_layers("29,30", 30)
    for text in ("a", "", "1;2", "-1", "١"):  # an Arabic-Indic one is a digit to str.isdigit, not to us
        with pytest.raises(YfpoError, match="write layer numbers separated by commas"):
            parse_layers(text)


def test_check_output(tmp_path):
    check_output(None)
    check_output(tmp_path / "new" / "deeper" / "out.json")  # folders that do not exist yet are made later
    with pytest.raises(YfpoError, match="is a folder; give a file name inside it"):
        check_output(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(YfpoError, match="is a file, not a folder"):
        check_output(tmp_path / "file" / "out.json", "--html")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(YfpoError, match="is not writable"):
            check_output(locked / "out.json")
