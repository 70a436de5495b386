"""Preference pairs on disk (yfpo_core.training.pairs_io)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import DEEP
from yfpo_core.training.pairs import PairDataError
from yfpo_core.training.pairs_io import load_pairs


def test_pairs_files_with_bom_u2028_and_deep_nesting(tmp_path):
    row = {"question": "Q\u2028?", "chosen": "a #### 1", "rejected": "a #### 2"}
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row, ensure_ascii=False) + "\n").encode())
    assert load_pairs(path)[0].question == "Q\u2028?"
    path.write_text('{"question": "Q", "chosen": "a", "rejected": "b", "meta": ' + DEEP + "}\n")
    with pytest.raises(PairDataError, match="deeper than 64 levels"):
        load_pairs(path)
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(PairDataError, match="not UTF-8"):
        load_pairs(path)
