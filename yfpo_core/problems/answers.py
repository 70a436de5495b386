"""Final-answer extraction and comparison for GSM8K-style solutions.

GSM8K solutions end with ``#### <answer>``; models often do not. :func:`extract_answer` takes the number
after the last ``####`` when there is one, else the last number in the text (the convention of the
GSM8K paper's evaluation and of lm-eval's "flexible extract"). Numbers may carry thousands separators,
a currency sign, a sign, decimals or a trailing period: ``"$1,234.50."`` reads as ``1234.5``.

Answers are compared as exact rationals (:class:`fractions.Fraction`), so ``"18"``, ``"18.0"`` and
``"18.00"`` are the same answer and there is no float rounding.

The text after ``####`` is read by :func:`parse_final_answer`, which is stricter than "the first number":
the first non-blank line there must hold exactly one number, written as people write final answers:
``18``, ``-4``, ``$1,234.50``, ``1 000`` (space or comma thousands groups), ``1/2``, ``1e3``. Anything
else (``1 2``, ``18 or 19``, ``5000`` digits) is refused, because reading ``1/2`` or ``1 000`` as ``1``
would make grading silently use a wrong gold answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from yfpo_core.errors import YfpoError
from yfpo_core.problems.base import ANSWER_MARKER

# A number as people write it: optional sign, optional currency, digits with optional thousands
# separators (1,234,567), optional decimals. A plain ".5" is accepted too.
NUMBER_PATTERN = re.compile(
    r"(?P<sign>[-−]?)\s?[$€£]?\s?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
)
MAX_DIGITS = 100  # longer digit runs are not answers (and Python refuses int() of over 4300 digits)
MAX_EXPONENT = 30  # 1e30 is an answer; 1e999999 would be a very large exact rational
# One final answer: sign, currency, digits with optional thousands groups (comma, space, no-break or thin
# space; the same separator throughout), decimals, then optionally a denominator or a decimal exponent.
FINAL_ANSWER_PATTERN = re.compile(
    r"(?P<sign>[-−+]?)\s?[$€£]?\s?"
    r"(?P<int>\d{1,3}(?P<sep>[, \u00a0\u2009\u202f])\d{3}(?:(?P=sep)\d{3})*|\d+|(?=\.\d))"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:\s?/\s?(?P<den>\d+)|[eE](?P<exp>[-+]?\d+))?"
)


class AnswerFormatError(YfpoError, ValueError):
    """The text after ``####`` is not one readable number; ``str(exc)`` says why (without the file)."""


@dataclass(frozen=True)
class NumberMatch:
    """A number found in text: its value and the character span of its digits (sign included)."""

    value: Fraction
    start: int
    end: int


def parse_number(text: str) -> Fraction | None:
    """Parse one number written like ``"-1,234.5"``, ``"$18"`` or ``"1/3"`` (what :func:`format_number`
    writes); ``None`` if ``text`` is not exactly one number."""
    try:
        return parse_final_answer(text)
    except AnswerFormatError:
        return None


def find_numbers(text: str) -> list[NumberMatch]:
    """Every number in ``text``, left to right, with the span of its sign and digits. Digit runs longer than
    :data:`MAX_DIGITS` are not numbers anyone grades and are skipped."""
    found = []
    for m in NUMBER_PATTERN.finditer(text):
        digits = m.group("num").replace(",", "")
        if len(digits) > MAX_DIGITS + 1:
            continue
        value = Fraction(digits)
        start = m.start("num")
        if m.group("sign"):
            # A minus directly before the number (or before its currency sign) is a sign only when it
            # is not a subtraction: "5 - 3" is two positives, "-3" and "= -3" are negative.
            before = text[: m.start("sign")].rstrip()
            if not before or before[-1] in "=(:#\n,":
                value = -value
                start = m.start("sign")
        found.append(NumberMatch(value=value, start=start, end=m.end("num")))
    return found


def parse_final_answer(text: str) -> Fraction:
    """The one number of a final answer (the text after ``####``, or an answer cell).

    Reads the first non-blank line; it must hold exactly one number (see the module docstring), optionally
    with words around it (``"18 dollars"``, ``"**18**"``).

    Raises:
        AnswerFormatError: No number, several numbers, or a number too long to be an answer.
    """
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    shown = line if len(line) <= 40 else line[:37] + "..."
    match = next((m for m in FINAL_ANSWER_PATTERN.finditer(line) if m.group(0).strip(" $€£+-−")), None)
    if match is None:
        raise AnswerFormatError(f"{shown!r} has no number")
    rest = line[: match.start()] + " " + line[match.end():]
    if any(ch.isdigit() for ch in rest):
        raise AnswerFormatError(f"{shown!r} holds more than one number; write one number, like 18, 1/2, 1000 or 1e3")
    sep = match.group("sep") or ""
    whole = match.group("int").replace(sep, "") if sep else match.group("int")
    frac, den, exp = match.group("frac") or "", match.group("den"), match.group("exp")
    if len(whole) + len(frac) + len(den or "") > MAX_DIGITS:
        raise AnswerFormatError(f"the answer has {len(whole) + len(frac) + len(den or ''):,} digits, more than "
                                f"the {MAX_DIGITS} an answer may have")
    value = Fraction(f"{whole or '0'}.{frac}" if frac else whole)
    if den is not None:
        if int(den) == 0:
            raise AnswerFormatError(f"{shown!r} divides by zero")
        value /= int(den)
    if exp is not None:
        if abs(int(exp)) > MAX_EXPONENT:
            raise AnswerFormatError(f"{shown!r} has the exponent {exp}; at most {MAX_EXPONENT} either way")
        value *= Fraction(10) ** int(exp)
    return -value if match.group("sign") in ("-", "−") else value


def extract_answer(text: str) -> Fraction | None:
    """The final numeric answer of a solution or a model output, or ``None`` if there is none.

    After the last ``####``: its one number (:func:`parse_final_answer`), or ``None`` when that line is
    ambiguous (an ambiguous final answer is not a correct one). Without a ``####`` (or with no number after
    it): the last number anywhere in the text.
    """
    marker = text.rfind(ANSWER_MARKER)
    if marker >= 0:
        try:
            return parse_final_answer(text[marker + len(ANSWER_MARKER):])
        except AnswerFormatError as exc:
            if "has no number" not in str(exc):
                return None
    numbers = find_numbers(text)
    return numbers[-1].value if numbers else None


def format_number(value: Fraction) -> str:
    """Canonical text of an answer: ``18``, ``-4``, ``3.5``; non-terminating fractions as ``1/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:  # not a finite decimal
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    scaled = value
    while scaled.denominator != 1:
        scaled *= 10
        digits += 1
    sign = "-" if scaled < 0 else ""
    magnitude = str(abs(scaled.numerator)).rjust(digits + 1, "0")
    return f"{sign}{magnitude[:-digits]}.{magnitude[-digits:]}"


def answers_match(predicted: Fraction | None, gold: Fraction | str) -> bool:
    """Exact match of a predicted answer with the gold one (``None`` never matches)."""
    if predicted is None:
        return False
    gold_value = gold if isinstance(gold, Fraction) else parse_number(gold)
    return gold_value is not None and predicted == gold_value
