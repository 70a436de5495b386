"""Preference pairs on disk: a user's JSONL file read line by line with messages that say how to fix it, and
pairs written back atomically.

Rows written by :func:`save_pairs` load back identically; hand-written rows are accepted with ``prompt`` for
``question`` and without ids (see :data:`PAIR_FILE_HELP`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yfpo_core.atomic import atomic_write_text
from yfpo_core.jsonio import JsonInputError, parse_json, split_json_lines
from yfpo_core.training.pairs import PairDataError, PreferencePair

PAIR_FILE_HELP = ("a JSONL file with one object per line: 'question' (or 'prompt'), 'chosen', 'rejected', and "
                  "optionally 'id', 'gold_answer' (or 'answer'), 'problem_id', 'source', 'meta'")


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; errors name the line. Lines are split on ``\n`` only
    (U+2028 may sit inside a JSON string) and a UTF-8 byte-order mark is ignored."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise PairDataError(f"Pairs file {path} {what}; give {PAIR_FILE_HELP}.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PairDataError(f"Pairs file {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as "
                            "UTF-8.") from None
    rows = []
    for number, line in split_json_lines(text):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except json.JSONDecodeError as exc:
            raise PairDataError(f"{path}, line {number}: not valid JSON ({exc.msg}); each line must be one "
                                "JSON object.") from exc
        except JsonInputError as exc:
            raise PairDataError(f"{path}, line {number}: {exc}.") from None
        if not isinstance(row, dict):
            raise PairDataError(f"{path}, line {number}: expected a JSON object with 'question', 'chosen' "
                                f"and 'rejected', got {type(row).__name__}.")
        rows.append((number, row))
    if not rows:
        raise PairDataError(f"Pairs file {path} is empty; give {PAIR_FILE_HELP}.")
    return rows


def _text_field(path: Path, number: int, row: Mapping[str, Any], names: Sequence[str]) -> str:
    """The first of ``names`` present in ``row``, as non-empty text."""
    present = [n for n in names if row.get(n) is not None]
    label = " or ".join(repr(n) for n in names)
    if not present:
        raise PairDataError(f"{path}, line {number}: missing field {label}; every row needs 'question' (or "
                            "'prompt'), 'chosen' and 'rejected'.")
    value = row[present[0]]
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise PairDataError(f"{path}, line {number}: field {present[0]!r} must be non-empty text, got {shown}.")
    return value


def _question_id(question: str) -> str:
    """A problem id for a row without one: rows with the same question share it, so :func:`split_pairs` never
    puts one question on both sides."""
    return "q-" + hashlib.sha256(question.strip().encode()).hexdigest()[:12]


def _pair_from_row(path: Path, number: int, row: Mapping[str, Any]) -> PreferencePair:
    question = _text_field(path, number, row, ("question", "prompt"))
    chosen = _text_field(path, number, row, ("chosen",))
    rejected = _text_field(path, number, row, ("rejected",))
    if chosen == rejected:
        raise PairDataError(f"{path}, line {number}: 'chosen' and 'rejected' are the same text, which teaches "
                            "nothing; fix or remove the row.")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise PairDataError(f"{path}, line {number}: 'meta' must be a JSON object, got {type(meta).__name__}.")
    gold = row.get("gold_answer", row.get("answer"))
    return PreferencePair(
        id=str(row.get("id") if row.get("id") is not None else f"{path.stem}/{number}"),
        problem_id=str(row.get("problem_id") or _question_id(question)), question=question, chosen=chosen,
        rejected=rejected, gold_answer="" if gold is None else str(gold),
        source=str(row.get("source") or f"file:{path}"), meta=meta)


def load_pairs(path: str | os.PathLike[str]) -> list[PreferencePair]:
    """Read preference pairs from a JSONL file (see :data:`PAIR_FILE_HELP`).

    Rows written by :func:`save_pairs` load back identically; hand-written rows get an id
    ``<file stem>/<line>``, a problem id from their question, and source ``file:<path>``. A ``prompt`` is
    taken as the raw question: the trainer still applies the model's prompt format.

    Raises:
        PairDataError: Missing or empty file, a line that is not a JSON object, a missing or empty field,
            ``chosen == rejected``, or an id used twice; the message names the line and the fix.
    """
    path = Path(path)
    pairs = []
    first_line: dict[str, int] = {}
    for number, row in _read_lines(path):
        pair = _pair_from_row(path, number, row)
        if pair.id in first_line:
            raise PairDataError(f"{path}, line {number}: id {pair.id!r} is already used on line "
                                f"{first_line[pair.id]}; ids must be unique, rename or remove one.")
        first_line[pair.id] = number
        pairs.append(pair)
    return pairs


def save_pairs(pairs: Iterable[PreferencePair], path: str | os.PathLike[str]) -> Path:
    """Write pairs as JSONL, atomically (temporary file in the same folder, then ``os.replace``), so a reader
    never sees half a file and an interrupted save keeps the old one."""
    lines = [json.dumps(pair.to_dict(), ensure_ascii=False) + "\n" for pair in pairs]
    return atomic_write_text(path, "".join(lines))


__all__ = ["PAIR_FILE_HELP", "load_pairs", "save_pairs"]
