"""Preference pairs: corrupted gold solutions, on-policy samples, pair files and problem-level splits."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from tests import helpers
from yfpo_core.problems.answers import extract_answer, find_numbers, format_number, parse_number
from yfpo_core.errors import YfpoError
from yfpo_core.scoring.evaluate import build_ranking_item, distractor_answers
from yfpo_core.problems import load_problems
from yfpo_core.problems.base import Problem
from yfpo_core.models.prompts import PlainPromptFormat
from yfpo_core.scoring.generation import sample_responses
from yfpo_core.training import on_policy
from yfpo_core.training.on_policy import on_policy_pairs, pair_indices
from yfpo_core.training.pairs import PairDataError, PreferencePair, corrupted_pairs, intermediate_steps, split_pairs
from yfpo_core.training.pairs_io import load_pairs, save_pairs

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


# -- on-policy pairs ----------------------------------------------------------------------------------------
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


def test_hf_twin_sampling_is_seeded_and_cut(one_thread):
    from transformers import GPT2Config, GPT2LMHeadModel

    from yfpo_core.models.base import LoadedModel
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, toy_tokenizer

    tok = toy_tokenizer()
    twin = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok), n_positions=128,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))
    model = LoadedModel(name="twin-test", model=build_toy_model(toy_config_kwargs(TINY_ARCH)), tokenizer=tok,
                        prompt_format=FMT, prepend_bos=True, source="test", fingerprint="-",
                        hf_twin_loader=lambda: twin)
    state = torch.random.get_rng_state()
    texts = sample_responses(model, "Q: How many?\nA: ", samples=3, temperature=0.8, max_new_tokens=16, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(texts) == 3 and all("\n" not in t for t in texts)
    assert sample_responses(model, "Q: How many?\nA: ", samples=3, temperature=0.8, max_new_tokens=16,
                            seed=5) == texts
    assert sample_responses(model, "Q: How many?\nA: ", samples=3, temperature=0.8, max_new_tokens=16,
                            seed=6) != texts


# -- files --------------------------------------------------------------------------------------------------
def test_saved_pairs_load_back_identically(tmp_path, gsm):
    pairs = corrupted_pairs(gsm[:5], FMT, mode="mixed")
    pairs.append(PreferencePair(id="x#1", problem_id="x", question="Q? ünïcode", chosen="a = 1", rejected="a = 2",
                                gold_answer="1", source="on-policy", meta={"n": [1, 2], "t": 0.8}))
    path = save_pairs(pairs, tmp_path / "sub" / "pairs.jsonl")
    assert load_pairs(path) == pairs
    assert [PreferencePair.from_dict(p.to_dict()) for p in pairs] == pairs
    save_pairs(pairs[:2], path)  # overwrite in place, no temporary file left behind
    assert load_pairs(path) == pairs[:2] and [f.name for f in path.parent.iterdir()] == ["pairs.jsonl"]


def test_user_rows_get_ids_problem_ids_and_source(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "answer": 4},
            {},  # written below as a blank line
            {"question": "What is 2+2?", "chosen": "2+2=4", "rejected": "2+2=22", "id": "b"}]
    path.write_text("\n".join(json.dumps(r) if r else "   " for r in rows) + "\n")
    first, second = load_pairs(path)
    assert (first.id, first.question, first.gold_answer, first.source) == ("mine/1", "What is 2+2?", "4",
                                                                          f"file:{path}")
    assert second.id == "b" and second.gold_answer == "" and second.meta == {}
    assert first.problem_id == second.problem_id  # same question, same problem: kept together by split_pairs


@pytest.mark.parametrize("content, message", [
    ("", r"empty\.jsonl is empty; give a JSONL file"),
    ("\n  \n", r"empty\.jsonl is empty"),
    ('{"question": "q", "chosen": "a", "rejected": "b"}\n{"question": "q", "chosen": \n',
     r"line 2: not valid JSON .*each line must be one JSON object"),
    ('["q", "a", "b"]\n', r"line 1: expected a JSON object .* got list"),
    ('{"question": "q", "chosen": "a"}\n', r"line 1: missing field 'rejected'"),
    ('{"chosen": "a", "rejected": "b"}\n', r"line 1: missing field 'question' or 'prompt'"),
    ('{"question": "q", "chosen": " ", "rejected": "b"}\n', r"line 1: field 'chosen' must be non-empty text"),
    ('{"question": "q", "chosen": 3, "rejected": "b"}\n', r"line 1: field 'chosen' must be non-empty text"),
    ('{"question": "q", "chosen": "same", "rejected": "same"}\n', r"line 1: 'chosen' and 'rejected' are the same"),
    ('{"question": "q", "chosen": "a", "rejected": "b", "meta": 1}\n', r"line 1: 'meta' must be a JSON object"),
    ('{"id": "p", "question": "q", "chosen": "a", "rejected": "b"}\n\n'
     '{"id": "p", "question": "r", "chosen": "a", "rejected": "b"}\n',
     r"line 3: id 'p' is already used on line 1; ids must be unique"),
])
def test_bad_pair_files_say_where_and_how_to_fix(tmp_path, content, message):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(PairDataError, match=message) as err:
        load_pairs(path)
    assert isinstance(err.value, YfpoError)


def test_missing_pair_file(tmp_path):
    with pytest.raises(PairDataError, match=r"nope\.jsonl does not exist; give a JSONL file"):
        load_pairs(tmp_path / "nope.jsonl")


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
