"""On-policy preference pairs (yfpo_core.training.on_policy): a random model, a scripted sampler, options."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from yfpo_core.models.prompts import PlainPromptFormat
from yfpo_core.problems import load_problems
from yfpo_core.problems.answers import extract_answer, parse_number
from yfpo_core.problems.base import Problem
from yfpo_core.training import on_policy
from yfpo_core.training.on_policy import on_policy_pairs, pair_indices
from yfpo_core.training.pairs import PairDataError

FMT = PlainPromptFormat()
TINY_ARCH = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32}


@pytest.fixture(scope="module")
def toy():
    return load_problems("toy", n=50)


@pytest.fixture
def one_thread():
    """Tiny models run op by op; a second torch thread only adds contention on a busy 2-core machine
    (measured: 2.1 s vs 0.04 s for 32 sampled tokens)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_toy(one_thread):
    return helpers.tiny_toy(**TINY_ARCH)


def test_on_policy_with_gold_fallback_on_a_random_model(tiny_toy, toy):
    problems = toy[:3]
    state = torch.random.get_rng_state()
    calls = []
    pairs, stats = on_policy_pairs(tiny_toy, problems, samples=3, max_new_tokens=12, seed=0, fallback_gold=True,
                                   progress=lambda done, total, msg="": calls.append((done, total)))
    assert torch.equal(torch.random.get_rng_state(), state)  # sampling does not touch the global RNG
    assert calls[-1] == (3, 3)
    assert stats["problems"] == 3 and stats["samples"] == 9 and 0 <= stats["correct_rate"] <= 1
    assert stats["pairs"] == len(pairs) == stats["pairs_on_policy"] + stats["pairs_gold_fallback"] > 0
    with_pairs = {p.problem_id for p in pairs}
    assert stats["problems_skipped"] == 3 - len(with_pairs)
    by_id = {p.id: p for p in problems}
    for pair in pairs:
        assert pair.source in ("on-policy", "on-policy-gold") and pair.chosen != pair.rejected
        assert pair.rejected.strip() and "\n" not in pair.rejected  # cut at the end of the response
        assert extract_answer(pair.rejected) != parse_number(pair.gold_answer)
        if pair.source == "on-policy-gold":
            assert pair.chosen == FMT.response(by_id[pair.problem_id].solution)
    assert len(pairs) <= 2 * len(with_pairs) and len({p.id for p in pairs}) == len(pairs)
    again, _ = on_policy_pairs(tiny_toy, problems, samples=3, max_new_tokens=12, seed=0, fallback_gold=True)
    other, _ = on_policy_pairs(tiny_toy, problems, samples=3, max_new_tokens=12, seed=1, fallback_gold=True)
    assert again == pairs and other != pairs


def test_on_policy_without_fallback_skips_problems_the_model_never_solves(tiny_toy, toy):
    pairs, stats = on_policy_pairs(tiny_toy, toy[:2], samples=2, max_new_tokens=8, seed=0)
    assert stats["correct"] == 0 and pairs == []  # a random model writes no correct answer in 8 characters
    assert stats["problems_skipped"] == 2 == stats["skipped_no_correct"] + stats["skipped_no_usable"]


SCRIPTED = {  # sampled texts by gold answer of the first three toy problems
    "22": ["4+18=22. #### 22", "4+18=23. #### 23", "4+18=22. #### 22", "", "4+18=21. #### 21"],
    "25": ["71-46=25. #### 25"] * 5,
    "12": ["4*3=13. #### 13", "4*3=11. #### 11", "", "", ""],
}


PROMPT_ONLY = type("PromptOnly", (), {"prompt_format": FMT})()  # all on_policy_pairs needs besides the sampler


def _scripted_sampler(problems: list[Problem], seen: list):
    by_prompt = {FMT.prompt(p.question): SCRIPTED[p.answer] for p in problems}

    def sampler(model, prompt, *, samples, temperature, max_new_tokens, seed):
        seen.append((samples, temperature, max_new_tokens, seed))
        return by_prompt[prompt][:samples]
    return sampler


def test_on_policy_pairs_correct_against_wrong_with_a_scripted_sampler(monkeypatch):
    # Hand-written problems, so the scripted samples stay in step with them whatever the generator makes.
    problems = [Problem(id=f"hand/{i}", question=q, solution=s, answer=a, source="hand")
                for i, (q, s, a) in enumerate([("Ann has 4 pens and buys 18. How many pens?", "4+18=22. #### 22", "22"),
                                               ("Bo had 71 cards and gave 46 away. How many are left?",
                                                "71-46=25. #### 25", "25"),
                                               ("4 boxes hold 3 eggs each. How many eggs?", "4*3=12. #### 12", "12")])]
    seen: list = []
    monkeypatch.setattr(on_policy, "sample_responses", _scripted_sampler(problems, seen))
    pairs, stats = on_policy_pairs(PROMPT_ONLY, problems, samples=5, temperature=0.5, max_new_tokens=9, seed=7)
    assert [s[:3] for s in seen] == [(5, 0.5, 9)] * 3 and len({s[3] for s in seen}) == 3
    # Problem 22: one distinct correct text, two distinct wrong ones -> two pairs, no duplicates.
    assert [(p.chosen, p.rejected) for p in pairs] == [("4+18=22. #### 22", "4+18=23. #### 23"),
                                                     ("4+18=22. #### 22", "4+18=21. #### 21")]
    assert all(p.source == "on-policy" and p.problem_id == problems[0].id for p in pairs)
    assert pairs[0].meta["chosen_answer"] == "22" and pairs[0].meta["rejected_answer"] == "23"
    assert stats == {**stats, "problems": 3, "samples": 15, "correct": 7, "pairs": 2, "pairs_on_policy": 2,
                     "pairs_gold_fallback": 0, "empty_samples": 4, "problems_skipped": 2,
                     "skipped_all_correct": 1, "skipped_no_correct": 1, "skipped_no_usable": 0}
    assert stats["correct_rate"] == pytest.approx(7 / 15)
    # With the gold fallback the never-solved problem (answer 12) pairs gold against a wrong text.
    pairs, stats = on_policy_pairs(PROMPT_ONLY, problems, samples=5, fallback_gold=True, max_pairs_per_problem=1)
    assert [p.source for p in pairs] == ["on-policy", "on-policy-gold"] and stats["pairs_gold_fallback"] == 1
    assert pairs[1].chosen == "4*3=12. #### 12" and pairs[1].rejected == "4*3=13. #### 13"
    # An explicit sampler argument wins over the module's.
    pairs, _ = on_policy_pairs(PROMPT_ONLY, problems[1:2], samples=1, fallback_gold=True,
                               sampler=lambda *args, **kwargs: ["71-46=0. #### 0"])
    assert [p.rejected for p in pairs] == ["71-46=0. #### 0"]


def test_pairs_spread_over_distinct_texts():
    assert pair_indices(2, 2, 2) == [(0, 0), (1, 1)]
    assert pair_indices(1, 3, 5) == [(0, 0), (0, 1), (0, 2)]
    assert pair_indices(2, 3, 4) == [(0, 0), (1, 1), (0, 2), (0, 1)]


def test_sampling_options_are_checked(toy):
    with pytest.raises(PairDataError, match="samples must be"):
        on_policy_pairs(PROMPT_ONLY, toy[:1], samples=0)
    with pytest.raises(PairDataError, match="temperature must be above 0"):
        on_policy_pairs(PROMPT_ONLY, toy[:1], temperature=0)
