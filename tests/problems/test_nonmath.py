"""The non-math contrast set must really be free of mathematics, or math-neuron scores are biased."""

from __future__ import annotations

import re

import pytest

from yfpo_core.problems.nonmath import load_nonmath_texts

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds "
    "thousand thousands million millions billion dozen dozens score "
    "first second third fourth fifth sixth seventh eighth ninth tenth twelfth hundredth "
    "half halves quarter quarters third thirds once twice thrice double triple single both pair couple "
    "number numbers count sum total plus minus times equals equal percent percentage calculate "
    "average multiply divide divided fraction decimal digit "
    "inch inches mile miles meter meters kilometer kilometers kilogram kilograms gram grams ounce ounces "
    "liter liters gallon gallons dollar dollars cent cents decade decades century centuries"
).split()
# Everyday words that are units only in a measurement ("feet", "day", "week") are allowed: the rule is no
# quantities, not no time. "second" stays banned because it is also an ordinal.


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return load_nonmath_texts()


def test_at_least_100_distinct_passages(texts):
    assert len(texts) >= 100
    assert len(set(texts)) == len(texts)


def test_no_digits(texts):
    assert [t for t in texts if re.search(r"\d", t)] == []


def test_no_number_words_arithmetic_or_units(texts):
    pattern = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
    offenders = {t: pattern.findall(t) for t in texts if pattern.search(t)}
    assert offenders == {}
    assert [t for t in texts if re.search(r"[+=×÷%<>*/^]", t)] == []


def test_passages_are_short_everyday_prose(texts):
    for t in texts:
        sentences = re.findall(r"[.!?](?:\s|$)", t)
        assert 2 <= len(sentences) <= 4, t
        assert t[0].isupper() and t[-1] in ".!?", t


def test_limit(texts):
    assert load_nonmath_texts(5) == texts[:5]
    assert load_nonmath_texts(0) == []
    with pytest.raises(ValueError):
        load_nonmath_texts(-1)
