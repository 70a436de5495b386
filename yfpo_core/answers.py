"""Final-answer extraction and comparison for GSM8K-style solutions.

GSM8K solutions end with ``#### <answer>``; models often do not. :func:`extract_answer` takes the number
after the last ``####`` when there is one, else the last number in the text (the convention of the
GSM8K paper's evaluation and of lm-eval's "flexible extract"). Numbers may carry thousands separators,
a currency sign, a sign, decimals or a trailing period: ``"$1,234.50."`` reads as ``1234.5``.

Answers are compared as exact rationals (:class:`fractions.Fraction`), so ``"18"``, ``"18.0"`` and
``"18.00"`` are the same answer and there is no float rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from yfpo_core.problems.base import ANSWER_MARKER

# A number as people write it: optional sign, optional currency, digits with optional thousands
# separators (1,234,567), optional decimals. A plain ".5" is accepted too.
NUMBER_PATTERN = re.compile(
    r"(?P<sign>[-−]?)\s?[$€£]?\s?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
)


@dataclass(frozen=True)
class NumberMatch:
    """A number found in text: its value and the character span of its digits (sign included)."""

    value: Fraction
    start: int
    end: int


def parse_number(text: str) -> Fraction | None:
    """Parse one number written like ``"-1,234.5"`` or ``"$18"``; ``None`` if ``text`` holds no number."""
    matches = find_numbers(text)
    return matches[0].value if len(matches) == 1 else None


def find_numbers(text: str) -> list[NumberMatch]:
    """Every number in ``text``, left to right, with the span of its sign and digits."""
    found = []
    for m in NUMBER_PATTERN.finditer(text):
        digits = m.group("num").replace(",", "")
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


def extract_answer(text: str) -> Fraction | None:
    """The final numeric answer of a solution or a model output, or ``None`` if there is none.

    Uses the first number after the last ``####``; otherwise the last number anywhere in the text.
    """
    marker = text.rfind(ANSWER_MARKER)
    if marker >= 0:
        after = find_numbers(text[marker + len(ANSWER_MARKER):])
        if after:
            return after[0].value
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
