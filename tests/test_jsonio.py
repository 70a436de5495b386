"""Reading JSON a user wrote (yfpo_core.jsonio): BOM, depth, lone surrogates, JSON Lines split on \\n only."""

from __future__ import annotations

import json

import pytest

from yfpo_core.jsonio import MAX_DEPTH, JsonInputError, check_plain, parse_json, split_json_lines, strip_bom


def test_a_bom_is_ignored_and_plain_json_reads_as_json_loads():
    assert strip_bom("\ufeff{}") == "{}" and strip_bom("{}") == "{}"
    assert parse_json('\ufeff{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    with pytest.raises(json.JSONDecodeError) as info:
        parse_json('{"a": }')
    assert (info.value.lineno, info.value.colno) == (1, 7)  # kept, so loaders can say where


def test_depth_is_counted_from_the_top_and_named():
    check_plain(json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH))  # 64 levels: the deepest list sits at depth 63
    with pytest.raises(JsonInputError, match=r"deeper than 64 levels \(at \[0\]\[0\]"):
        check_plain(json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)))
    with pytest.raises(JsonInputError, match="deeper than 64 levels"):
        parse_json("[" * 100_000 + "]" * 100_000)  # json.loads itself overflows: the same words


def test_a_lone_surrogate_is_refused_with_its_path():
    with pytest.raises(JsonInputError, match=r"a string at units\[1\]\.label holds a lone UTF-16 surrogate \(\\ud800\)"):
        parse_json('{"units": [{"label": "ok"}, {"label": "a\\ud800b"}]}')
    with pytest.raises(JsonInputError, match="surrogate"):
        check_plain({"key\ud83d": 1})  # in a key too


def test_json_lines_split_on_newline_only():
    text = '\ufeff{"q": "a\u2028b"}\r\n{"q": 2}\n'
    assert split_json_lines(text) == [(1, '{"q": "a\u2028b"}'), (2, '{"q": 2}'), (3, "")]
