"""Reading JSON a user wrote, with the checks every loader needs before it looks at the content.

``json.loads`` alone lets through three things that later crash far from the file: a structure nested so
deeply that walking it (validation, copying, printing) overflows the stack; strings holding lone UTF-16
surrogates (``"\\ud800"``), which load as ``str`` but cannot be written back as UTF-8; and a UTF-8 byte-order
mark, which it refuses outright although editors on Windows write one. :func:`parse_json` handles all
three and raises :class:`JsonInputError` (a ``ValueError``) with a short reason; each loader turns that into
its own error type with the file and the fix. :func:`split_json_lines` splits JSON Lines on ``\\n`` only:
``str.splitlines`` also splits on U+2028 and U+2029, which are legal inside a JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 64  # every format of the project is at most 5 levels deep; 64 leaves room for user metadata


class JsonInputError(ValueError):
    """The text is not JSON this project will read; ``str(exc)`` is the reason, without the file."""


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def split_json_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line of a JSON Lines text, split on ``\\n`` (and ``\\r\\n``)."""
    return [(i, line.removesuffix("\r")) for i, line in enumerate(strip_bom(text).split("\n"), start=1)]


def parse_json(text: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """``json.loads`` of ``text`` (a leading BOM ignored), refusing too-deep nesting and lone surrogates.

    Raises:
        json.JSONDecodeError: The text is not JSON (kept, so callers can report line and column).
        JsonInputError: The JSON nests deeper than :data:`MAX_DEPTH` or holds an unencodable string.
    """
    try:
        data = json.loads(strip_bom(text), object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise JsonInputError(f"it nests lists or objects deeper than {MAX_DEPTH} levels") from None
    check_plain(data)
    return data


def check_plain(data: Any) -> None:
    """Raise :class:`JsonInputError` if ``data`` nests deeper than :data:`MAX_DEPTH` or has a string (key or
    value) that is not valid Unicode. Iterative, so it cannot overflow the stack itself."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, (list, dict)):
            if depth >= MAX_DEPTH:
                raise JsonInputError(f"it nests lists or objects deeper than {MAX_DEPTH} levels (at {path or 'the top'})")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(str(key), path)
                    stack.append((item, depth + 1, f"{path}.{key}" if path else str(key)))
            else:
                stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f" at {path[:80]}" if path else ""
        raise JsonInputError(f"a string{where} holds a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}), "
                             "which is not a character; remove it") from None
