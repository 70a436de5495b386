"""Corrupted preference pairs and problem-level splits (yfpo_core.training.pairs). On-policy pairs are tested in
test_on_policy.py, pair files in test_pairs_io.py."""

from __future__ import annotations

from fractions import Fraction

import pytest

from yfpo_core.models.prompts import PlainPromptFormat
from yfpo_core.problems import load_problems
from yfpo_core.problems.answers import extract_answer, find_numbers, format_number, parse_number
from yfpo_core.problems.base import Problem
from yfpo_core.scoring.evaluate import build_ranking_item, distractor_answers
from yfpo_core.training.pairs import PairDataError, corrupted_pairs, intermediate_steps, split_pairs

FMT = PlainPromptFormat()
TINY_ARCH = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32}


@pytest.fixture(scope="module")
def gsm():
    return load_problems("gsm8k-test-100", limit=20)


@pytest.fixture(scope="module")
def toy():
    return load_problems("toy", n=50)


@pytest.fixture(params=["gsm", "toy"])
def problems(request, gsm, toy):
    return {"gsm": gsm, "toy": toy}[request.param]


def _final_cut(problem: Problem) -> int:
    """Where the answer-ranking item cuts the gold response (start of the final statement)."""
    item = build_ranking_item(problem, FMT)
    return len(item.context) - len(FMT.prompt(problem.question))


def _changed_numbers(a: str, b: str) -> list[tuple[int, Fraction, Fraction]]:
    """(index, value in a, value in b) of each number that differs; both texts must have as many numbers."""
    na, nb = find_numbers(a), find_numbers(b)
    assert len(na) == len(nb), (a, b)
    return [(i, x.value, y.value) for i, (x, y) in enumerate(zip(na, nb, strict=True)) if x.value != y.value]


# -- corrupted pairs ----------------------------------------------------------------------------------------
def test_final_mode_replaces_the_final_answer_with_a_nearby_one(problems):
    pairs = corrupted_pairs(problems, FMT, mode="final", seed=0)
    assert [p.problem_id for p in pairs] == [p.id for p in problems]
    for pair, problem in zip(pairs, problems, strict=True):
        gold = parse_number(problem.answer)
        assert pair.source == "corrupt-final" and pair.question == problem.question
        assert pair.chosen == FMT.response(problem.solution) and pair.rejected != pair.chosen
        assert extract_answer(pair.chosen) == gold
        wrong = extract_answer(pair.rejected)
        assert wrong != gold and wrong in distractor_answers(gold)
        assert pair.meta["wrong_answer"] == format_number(wrong)
        # Nothing before the final statement changes; after it, exactly the gold values do.
        cut = _final_cut(problem)
        assert pair.rejected[:cut] == pair.chosen[:cut]
        changes = _changed_numbers(pair.chosen, pair.rejected)
        assert changes and all(old == gold and new == wrong for _, old, new in changes)


def test_step_mode_changes_exactly_one_intermediate_result(problems):
    pairs = corrupted_pairs(problems, FMT, mode="step", seed=0)
    steps = [p for p in pairs if p.source == "corrupt-step"]
    assert len(steps) >= len(pairs) // 4  # gsm: almost all; toy: the two-step problems
    for pair, problem in zip(pairs, problems, strict=True):
        assert pair.rejected != pair.chosen and pair.chosen == FMT.response(problem.solution)
        if pair.source != "corrupt-step":
            assert pair.meta["fallback"].startswith("no intermediate step") and pair.meta["requested_mode"] == "step"
            assert not intermediate_steps(pair.chosen, _final_cut(problem), parse_number(problem.answer))
            continue
        ((index, old, new),) = _changed_numbers(pair.chosen, pair.rejected)
        start = find_numbers(pair.chosen)[index].start
        assert start == pair.meta["position"] < _final_cut(problem)
        assert pair.chosen[:start].rstrip(" $").endswith("=")
        assert new in distractor_answers(old) and old != parse_number(problem.answer)
        # Later lines are untouched: the texts agree after the changed number.
        tail = len(pair.chosen) - start - len(pair.meta["original_text"])
        assert pair.rejected[len(pair.rejected) - tail:] == pair.chosen[len(pair.chosen) - tail:]
        assert extract_answer(pair.rejected) == extract_answer(pair.chosen)  # wrong step, same final answer


def test_toy_step_mode_uses_two_step_problems_and_falls_back_on_one_step(toy):
    for pair, problem in zip(corrupted_pairs(toy, FMT, mode="step"), toy, strict=True):
        expected = "corrupt-step" if problem.meta["kind"] == "two_step" else "corrupt-final"
        assert pair.source == expected, problem.solution


def test_mixed_mode_alternates(problems):
    pairs = corrupted_pairs(problems, FMT, mode="mixed", seed=0)
    assert all(p.meta["requested_mode"] == "mixed" for p in pairs)
    assert all(p.source == "corrupt-final" and "fallback" not in p.meta for p in pairs[0::2])
    odd = pairs[1::2]
    assert all(p.source == "corrupt-step" or "fallback" in p.meta for p in odd)
    assert any(p.source == "corrupt-step" for p in odd)


@pytest.mark.parametrize("mode", ["final", "step", "mixed"])
def test_corruption_is_deterministic_per_seed_and_per_problem(gsm, mode):
    first = corrupted_pairs(gsm, FMT, mode=mode, seed=3)
    assert corrupted_pairs(gsm, FMT, mode=mode, seed=3) == first
    assert corrupted_pairs(gsm, FMT, mode=mode, seed=4) != first
    if mode != "mixed":  # a problem's pair does not depend on the other problems
        assert corrupted_pairs(gsm[6:12], FMT, mode=mode, seed=3) == first[6:12]


def test_intermediate_steps_are_results_after_equals_before_the_final_statement():
    text = "So a = 5 and 5 * 2 = $10. Then 3 + 4 = 7 more, 40 + 2 = 42.\n#### 42"
    steps = intermediate_steps(text, text.index("42."), Fraction(42))
    assert [s.value for s in steps] == [5, 10, 7]
    assert intermediate_steps(text, text.index("10."), Fraction(42)) == steps[:1]  # only before the cut
    assert [s.value for s in intermediate_steps(text, len(text), Fraction(7))] == [5, 10, 42]  # never the gold


def test_corruption_errors_name_the_problem_and_the_fix(toy):
    with pytest.raises(PairDataError, match="use one of: final, step, mixed"):
        corrupted_pairs(toy[:2], FMT, mode="answer")  # type: ignore[arg-type]
    bad = Problem(id="mine/1", question="How many?", solution="Some.\n#### many", answer="many", source="x")
    with pytest.raises(PairDataError, match=r"mine/1.*not a number.*fix the answer"):
        corrupted_pairs([bad], FMT)
    unstated = Problem(id="mine/2", question="How many?", solution="It is 3.\n#### 3", answer="4", source="x")
    with pytest.raises(PairDataError, match=r"mine/2.*never states the answer 4"):
        corrupted_pairs([unstated], FMT)


# -- splitting ----------------------------------------------------------------------------------------------
def test_split_keeps_each_problem_on_one_side(toy):
    pairs = corrupted_pairs(toy[:20], FMT, mode="final") + corrupted_pairs(toy[:20], FMT, mode="step", seed=1)
    pairs = [p for p in pairs if p.source == "corrupt-step"] + [p for p in pairs if p.source == "corrupt-final"]
    pairs = list({p.id: p for p in pairs}.values())  # ids must be unique; a problem may still have two pairs
    train, held = split_pairs(pairs, 0.25, seed=0)
    assert len(train) + len(held) == len(pairs)
    assert not {p.problem_id for p in train} & {p.problem_id for p in held}
    assert len({p.problem_id for p in held}) == 5
    assert split_pairs(pairs, 0.25, seed=0) == (train, held) and split_pairs(pairs, 0.25, seed=1) != (train, held)
    assert [p for p in pairs if p in train] == train  # input order kept
    assert split_pairs(pairs, 0.0, seed=0) == (pairs, [])
    assert len({p.problem_id for p in split_pairs(pairs, 0.01, seed=0)[1]}) == 1  # at least one held out
    with pytest.raises(PairDataError, match="held_out_fraction must be between 0 and 1"):
        split_pairs(pairs, 1.5, seed=0)
