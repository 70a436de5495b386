"""Toy word problems and non-math texts (yfpo_core.problems.synthetic): deterministic, exact, in the
toy alphabet."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from yfpo_core.problems.answers import extract_answer
from yfpo_core.problems.synthetic import TOY_ALPHABET, TOY_KINDS, generate_toy_nonmath, generate_toy_problems
from yfpo_core.models.prompts import PlainPromptFormat
from yfpo_core.training.toy_pretraining import training_text


def test_problems_are_deterministic_and_prefix_stable():
    a, b = generate_toy_problems(60, seed=3), generate_toy_problems(60, seed=3)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert [p.to_dict() for p in generate_toy_problems(20, seed=3)] == [p.to_dict() for p in a[:20]]
    assert [p.question for p in generate_toy_problems(60, seed=4)] != [p.question for p in a]
    assert a[7].id == "toy/s3-00007" and a[7].source == "toy"
    assert len({p.id for p in a}) == 60
    assert [p.meta["kind"] for p in a[:8]] == [*TOY_KINDS, *TOY_KINDS]  # balanced, in order
    assert {p.meta["kind"] for p in generate_toy_problems(10, kinds=["mul"])} == {"mul"}
    with pytest.raises(ValueError):
        generate_toy_problems(3, kinds=["div"])


def test_problem_arithmetic_and_answers():
    for problem in generate_toy_problems(400, seed=11):
        numbers = problem.meta["numbers"]
        kind = problem.meta["kind"]
        if kind == "add":
            expected, lines = numbers[0] + numbers[1], [f"{numbers[0]}+{numbers[1]}"]
        elif kind == "sub":
            expected, lines = numbers[0] - numbers[1], [f"{numbers[0]}-{numbers[1]}"]
        elif kind == "mul":
            assert all(2 <= n <= 10 for n in numbers)
            expected, lines = numbers[0] * numbers[1], [f"{numbers[0]}*{numbers[1]}"]
        else:
            a, b, c = numbers
            first, second = problem.meta["ops"]
            mid = a + b if first == "+" else a - b
            expected = mid + c if second == "+" else mid - c
            assert mid >= 0
            lines = [f"{a}{first}{b}", f"{mid}{second}{c}"]
        assert expected >= 0, problem
        assert problem.answer == str(expected)
        assert problem.solution.endswith(f"#### {expected}")
        assert re.fullmatch(r"#### (\d+)", problem.solution.split(". ")[-1]).group(1) == problem.answer
        assert extract_answer(problem.solution) == Fraction(expected)
        for line in lines:
            assert f"{line}=" in problem.solution
        # the operands appear in the question, in order
        assert [int(n) for n in re.findall(r"\d+", problem.question)] == numbers


def test_nonmath_texts_have_no_digits_and_the_format():
    texts = generate_toy_nonmath(300, seed=5)
    assert texts == generate_toy_nonmath(300, seed=5)
    assert len(set(texts)) > 200
    for text in texts:
        assert not re.search(r"\d", text)
        assert re.fullmatch(r"Q: [^\n]+\nA: [^\n]+\n", text)
        assert set(text) <= set(TOY_ALPHABET)


def test_every_text_is_in_the_alphabet():
    fmt = PlainPromptFormat()
    chars = set()
    for problem in generate_toy_problems(800, seed=1):
        chars |= set(training_text(problem.question, problem.solution, fmt))
    assert chars <= set(TOY_ALPHABET)
    assert set("0123456789+-*=#") <= chars
