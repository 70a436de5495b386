"""Problems from a user's file: JSONL, JSON, CSV or Parquet (source ``file:<path>``).

Data source: whatever the user brings. Each row needs a ``question`` and an ``answer``; the answer is
either a full GSM8K-style solution ending in ``#### N`` or a bare number (``18``, ``3.5``, ``$1,200``).
Optional columns: ``id`` (defaults to ``"<file stem>/<row>"``) and ``solution`` (the reasoning; when it
is given, ``answer`` may be the bare number). Column names match case-insensitively. Other columns are
kept in ``meta`` for filtering.

Rows count from 1 as a user sees them: the first record of a JSONL file, the first object of a JSON list,
the first row under a CSV header. Every problem found is a :class:`ProblemDataError` that names the file,
the row (and the line of a JSONL file) and the fix, because a user can fix a file but not a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from yfpo_core.problems.answers import AnswerFormatError, format_number, parse_final_answer
from yfpo_core.errors import ProblemDataError
from yfpo_core.jsonio import JsonInputError, parse_json, split_json_lines
from yfpo_core.problems.base import ANSWER_MARKER, Problem

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
REQUIRED_COLUMNS = ("question", "answer")
OPTIONAL_COLUMNS = ("id", "solution")
MAX_QUESTION_CHARS = 20_000  # GSM8K questions are under 1,000; a longer one would be cut to the model's context
FORMAT_HINT = ("each row needs a 'question' and an 'answer' (a number, or a solution ending in '#### N'); "
               "'id' and 'solution' are optional")


@dataclass(frozen=True)
class _Row:
    """One record of the file with its position, before validation."""

    number: int  # 1-based record number, as the user counts rows
    line: int | None  # 1-based line in a JSONL file, else None
    values: Mapping[str, Any]

    def where(self) -> str:
        return f"row {self.number}" + (f" (line {self.line})" if self.line is not None else "")


def _fail(path: Path, message: str) -> ProblemDataError:
    return ProblemDataError(f"Problem file {path}: {message}")


def is_problem_file(source: str) -> bool:
    """Whether ``source`` names a file this module reads (by its extension), existing or not."""
    return Path(source).suffix.lower() in SUPPORTED_EXTENSIONS


def _to_python(value: Any) -> Any:
    """A plain Python value for a cell: numpy scalars unwrapped, NaN and None as ``None``."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cell_text(value: Any) -> str:
    """A cell as text: ``None`` is empty, whole floats lose their ``.0`` (``18.0`` from Parquet is 18).

    Raises:
        TypeError: The cell is a list, an object or a boolean (JSON ``[18]``, ``{"a": 1}``, ``true``), which
            ``str()`` would quietly turn into text holding a number.
    """
    value = _to_python(value)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = {bool: "a boolean", list: "a list", dict: "an object"}.get(type(value), f"a {type(value).__name__}")
        raise TypeError(kind)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_jsonl(path: Path, text: str) -> Iterator[_Row]:
    number = 0
    for line_number, line in split_json_lines(text):  # on "\n" only: U+2028 is legal inside a JSON string
        if not line.strip():
            continue
        number += 1
        try:
            record = parse_json(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, f"line {line_number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                              "fix that line so it holds one JSON object, like "
                              '{"question": "...", "answer": "18"}.') from exc
        except JsonInputError as exc:
            raise _fail(path, f"line {line_number}: {exc}.") from None
        if not isinstance(record, dict):
            raise _fail(path, f"line {line_number} holds a JSON {type(record).__name__}, not an object; write "
                              'one object per line, like {"question": "...", "answer": "18"}.')
        yield _Row(number=number, line=line_number, values=record)


def _read_json(path: Path, text: str) -> Iterator[_Row]:
    try:
        data = parse_json(text)
    except JsonInputError as exc:
        raise _fail(path, f"{exc}; write a list of objects, like "
                          '[{"question": "...", "answer": "18"}].') from None
    except json.JSONDecodeError as exc:
        hint = "fix the JSON so the file holds one list of objects"
        if exc.msg == "Extra data":
            hint = "it looks like one object per line: rename the file to .jsonl"
        raise _fail(path, f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                          f"{hint}.") from exc
    if not isinstance(data, list):
        raise _fail(path, f"holds a JSON {type(data).__name__}, not a list; write a list of objects, like "
                          '[{"question": "...", "answer": "18"}].')
    for number, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise _fail(path, f"row {number} is a JSON {type(record).__name__}, not an object; every item of "
                              'the list must be an object like {"question": "...", "answer": "18"}.')
        yield _Row(number=number, line=None, values=record)


def _read_table(path: Path) -> Iterator[_Row]:
    """CSV or Parquet through pandas; CSV cells are read as text so ``1,200`` and ids keep their form."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise _fail(path, f"is empty; {FORMAT_HINT}.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise _fail(path, f"cannot be read as CSV ({reason}); save it as UTF-8 CSV with a header row.") from exc
    except (OSError, ValueError, ImportError) as exc:  # pyarrow errors derive from these
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(path, f"cannot be read as {path.suffix.lower()[1:]} ({reason}); re-export the file.") from exc
    columns = [str(c) for c in frame.columns]
    for number, values in enumerate(frame.itertuples(index=False, name=None), start=1):
        yield _Row(number=number, line=None, values=dict(zip(columns, values)))


def _read_rows(path: Path) -> tuple[list[_Row], list[str]]:
    """All records of the file, and the column names seen (in order of first appearance)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(path, "is not UTF-8 text; save it with UTF-8 encoding.") from exc
        if not text.strip():
            raise _fail(path, f"is empty; {FORMAT_HINT}.")
        rows = list(_read_jsonl(path, text) if suffix == ".jsonl" else _read_json(path, text))
    else:
        if path.stat().st_size == 0:
            raise _fail(path, f"is empty; {FORMAT_HINT}.")
        rows = list(_read_table(path))
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(str(k) for k in row.values))
    if suffix in (".csv", ".parquet") and not rows:
        import pandas as pd

        header = pd.read_csv(path, nrows=0) if suffix == ".csv" else pd.read_parquet(path)
        columns.update(dict.fromkeys(str(c) for c in header.columns))
    return rows, list(columns)


def _column_map(path: Path, columns: list[str]) -> dict[str, str]:
    """Map our column names to the file's (case-insensitive), or say which required ones are missing."""
    by_lower: dict[str, str] = {}
    for column in columns:
        by_lower.setdefault(column.strip().lower(), column)
    missing = [c for c in REQUIRED_COLUMNS if c not in by_lower]
    if missing:
        found = ", ".join(repr(c) for c in columns) if columns else "none"
        raise _fail(path, f"is missing the column(s) {', '.join(repr(c) for c in missing)}; its columns are: "
                          f"{found}. Rename the columns: {FORMAT_HINT}.")
    return {name: by_lower[name] for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if name in by_lower}


def _answer_and_solution(path: Path, row: _Row, answer_text: str, solution_text: str) -> tuple[str, str]:
    """The canonical answer and the GSM8K-format solution of one row, or a clear error."""
    fix = "write the final answer as one number (like 18, 1/2, 1000 or 1e3) or end the solution with '#### 18'"
    marked = answer_text.rfind(ANSWER_MARKER)
    if marked >= 0:  # a full solution in the answer column
        try:
            value = parse_final_answer(answer_text[marked + len(ANSWER_MARKER):])
        except AnswerFormatError as exc:
            raise _fail(path, f"{row.where()}: the answer after '{ANSWER_MARKER}' cannot be read: {exc}; "
                              f"{fix}.") from None
        solution = solution_text or answer_text
    else:
        try:
            value = parse_final_answer(answer_text)
        except AnswerFormatError as exc:
            raise _fail(path, f"{row.where()}: the answer cannot be read: {exc}; {fix}.") from None
        solution = solution_text
    answer = format_number(value)
    if not solution:
        return answer, f"{ANSWER_MARKER} {answer}"
    marker = solution.rfind(ANSWER_MARKER)
    if marker < 0:
        return answer, f"{solution}\n{ANSWER_MARKER} {answer}"
    try:
        stated: Fraction | None = parse_final_answer(solution[marker + len(ANSWER_MARKER):])
    except AnswerFormatError:
        stated = None
    if stated != value:
        raise _fail(path, f"{row.where()}: the solution ends in "
                          f"'{solution[marker:].strip()[:40]}' but the answer is {answer}; make them agree.")
    return answer, solution


def _meta_value(value: Any) -> Any:
    """A JSON-friendly copy of an extra column's cell (kept in ``meta``)."""
    value = _to_python(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def load_problem_file(path: str | Path) -> list[Problem]:
    """Read and validate a problem file.

    Args:
        path: A ``.jsonl``, ``.json`` (a list of objects), ``.csv`` or ``.parquet`` file.

    Returns:
        The problems in file order.

    Raises:
        ProblemDataError: The file is missing, empty, of an unknown type, lacks a column, or a row has an
            empty question, an answer without a number, or a duplicate id.
    """
    path = Path(path)
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise _fail(path, f"{where}; check the path (relative paths start at {Path.cwd()}).")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise _fail(path, f"has the unknown extension {path.suffix or '(none)'!r}; save it as "
                          f"{', '.join(SUPPORTED_EXTENSIONS)}.")
    rows, columns = _read_rows(path)
    column_of = _column_map(path, columns)
    if not rows:
        raise _fail(path, f"has no rows; {FORMAT_HINT}.")
    extra_columns = [c for c in columns if c not in column_of.values()]
    source = f"file:{path.resolve()}"
    problems: list[Problem] = []
    first_row_of_id: dict[str, int] = {}
    for row in rows:
        def cell(name: str, row: _Row = row) -> str:
            if name not in column_of:
                return ""
            try:
                return _cell_text(row.values.get(column_of[name]))
            except TypeError as exc:
                raise _fail(path, f"{row.where()}: the {name} is {exc}, not text or a number; write it as text "
                                  "(or the answer as a number, like 18).") from None

        question = cell("question")
        if not question:
            raise _fail(path, f"{row.where()}: the question is empty; fill it in or delete the row.")
        if len(question) > MAX_QUESTION_CHARS:
            raise _fail(path, f"{row.where()}: the question has {len(question):,} characters, more than the "
                              f"{MAX_QUESTION_CHARS:,} a problem may have (models see a few thousand); shorten it.")
        answer_text = cell("answer")
        if not answer_text:
            raise _fail(path, f"{row.where()}: the answer is empty; write the final answer as a number "
                              "(like 18) or a solution ending in '#### 18'.")
        answer, solution = _answer_and_solution(path, row, answer_text, cell("solution"))
        problem_id = cell("id") or f"{path.stem}/{row.number}"
        if problem_id in first_row_of_id:
            raise _fail(path, f"{row.where()}: the id {problem_id!r} is already used by row "
                              f"{first_row_of_id[problem_id]}; give every row its own id, or drop the 'id' "
                              "column to number rows automatically.")
        first_row_of_id[problem_id] = row.number
        meta: dict[str, Any] = {c: _meta_value(row.values.get(c)) for c in extra_columns if c in row.values}
        meta.update({"file": str(path), "row": row.number})  # ours win over same-named extra columns
        if row.line is not None:
            meta["line"] = row.line
        problems.append(Problem(id=problem_id, question=question, solution=solution, answer=answer,
                                source=source, meta=meta))
    return problems
