"""On-policy preference pairs: the model's own sampled responses, judged by their final answer.

Pairs of the model's own texts keep the DPO reference log-probabilities in a realistic range; a weak model
that is never right can still get pairs with ``fallback_gold`` (gold response against its own wrong ones).
Sampling is :func:`yfpo_core.scoring.generation.sample_responses`, looked up here at call time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from yfpo_core.models.base import LoadedModel
from yfpo_core.models.prompts import PromptFormat
from yfpo_core.problems.answers import answers_match, extract_answer, format_number
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.scoring.generation import sample_responses
from yfpo_core.training.pairs import PairDataError, PreferencePair, problem_seed

Sampler = Callable[..., list[str]]


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def pair_indices(n_chosen: int, n_rejected: int, cap: int) -> list[tuple[int, int]]:
    """Up to ``cap`` distinct (chosen, rejected) index pairs, spreading over different texts first: with two
    of each, (0, 0) and (1, 1) before (0, 1), so that two pairs share no text when they need not."""
    order = [(k % n_chosen, k % n_rejected) for k in range(max(n_chosen, n_rejected))]
    order += [(i, j) for i in range(n_chosen) for j in range(n_rejected)]
    return list(dict.fromkeys(order))[:cap]


def _check_sampling_options(samples: int, temperature: float, max_new_tokens: int, max_pairs_per_problem: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise PairDataError(f"samples must be a whole number of at least 1, got {samples!r}; 4 is a good start.")
    if not temperature > 0:
        raise PairDataError(f"temperature must be above 0 for sampling, got {temperature!r}; try 0.8.")
    if max_new_tokens < 1 or max_pairs_per_problem < 1:
        raise PairDataError(f"max_new_tokens ({max_new_tokens}) and max_pairs_per_problem "
                            f"({max_pairs_per_problem}) must be at least 1.")


def on_policy_pairs(model: LoadedModel, problems: Sequence[Problem], *, samples: int = 4, temperature: float = 0.8,
                    max_new_tokens: int = 256, seed: int = 0, max_pairs_per_problem: int = 2,
                    fallback_gold: bool = False, progress: ProgressCallback | None = None,
                    sampler: Sampler | None = None) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Pairs from the model's own samples: a correct response (chosen) against a wrong one (rejected).

    Each problem gets ``samples`` responses (:func:`sample_responses`), judged by their extracted final
    answer. A problem with correct and wrong responses gives up to ``max_pairs_per_problem`` pairs of
    distinct texts (source ``"on-policy"``). With ``fallback_gold``, a problem with only wrong responses
    gives the gold response against them (source ``"on-policy-gold"``). Empty responses are never used:
    a pair with an empty side has no tokens to compare.

    Args:
        model: The model to sample from (its prompt format decides the prompts).
        problems: Problems with gold solutions and numeric answers.
        samples: Responses per problem.
        temperature: Sampling temperature (> 0).
        max_new_tokens: Most tokens per response.
        seed: Seeds the sampling, per problem (see the module docstring).
        max_pairs_per_problem: Cap on pairs per problem, so that easy-to-sample problems do not dominate.
        fallback_gold: Pair the gold response with wrong samples when no sample is correct.
        progress: Called with (done, total, message) after each problem.
        sampler: Replaces :func:`sample_responses` (same signature), e.g. a cached or scripted sampler.

    Returns:
        The pairs and stats: ``problems``, ``samples`` (responses drawn), ``correct_rate``, ``pairs``,
        ``pairs_on_policy``, ``pairs_gold_fallback``, ``problems_skipped`` (with ``skipped_all_correct``,
        ``skipped_no_correct``, ``skipped_no_usable``), ``empty_samples`` and ``seconds``.
    """
    _check_sampling_options(samples, temperature, max_new_tokens, max_pairs_per_problem)
    draw = sampler if sampler is not None else sample_responses
    started = time.perf_counter()
    pairs: list[PreferencePair] = []
    counts = {"samples": 0, "correct": 0, "empty_samples": 0, "skipped_all_correct": 0, "skipped_no_correct": 0,
              "skipped_no_usable": 0, "pairs_on_policy": 0, "pairs_gold_fallback": 0}
    for n, problem in enumerate(problems, start=1):
        texts = draw(model, model.prompt_format.prompt(problem.question), samples=samples, temperature=temperature,
                     max_new_tokens=max_new_tokens, seed=problem_seed(seed, problem.id))
        new = _problem_pairs(model.prompt_format, problem, texts, max_pairs_per_problem, fallback_gold, counts,
                             {"temperature": temperature, "seed": seed})
        pairs.extend(new)
        report(progress, n, len(problems), f"{len(pairs)} pairs")
    n_problems = len(problems)
    skipped = counts["skipped_all_correct"] + counts["skipped_no_correct"] + counts["skipped_no_usable"]
    stats = {"problems": n_problems, "correct_rate": counts["correct"] / max(counts["samples"], 1),
             "pairs": len(pairs), "problems_skipped": skipped, **counts,
             "seconds": round(time.perf_counter() - started, 3)}
    return pairs, stats


def _problem_pairs(prompt_format: PromptFormat, problem: Problem, texts: Sequence[str], cap: int,
                   fallback_gold: bool, counts: dict[str, int], meta: dict[str, Any]) -> list[PreferencePair]:
    """The pairs of one problem from its sampled texts; updates ``counts``."""
    counts["samples"] += len(texts)
    answers = [extract_answer(t) for t in texts]
    correct_flags = [answers_match(a, problem.answer) for a in answers]
    counts["correct"] += sum(correct_flags)
    counts["empty_samples"] += sum(not t.strip() for t in texts)
    usable = [(t, a, ok) for t, a, ok in zip(texts, answers, correct_flags, strict=True) if t.strip()]
    correct = _unique(t for t, _, ok in usable if ok)
    wrong = _unique(t for t, _, ok in usable if not ok)
    answer_of = {t: (format_number(a) if a is not None else None) for t, a, _ in usable}
    if correct and wrong:
        source, chosen_texts = "on-policy", correct
    elif wrong and fallback_gold:
        source, chosen_texts = "on-policy-gold", [prompt_format.response(problem.solution)]
    else:
        reason = ("skipped_all_correct" if correct else "skipped_no_usable" if not wrong else "skipped_no_correct")
        counts[reason] += 1
        return []
    pairs = []
    for i, j in pair_indices(len(chosen_texts), len(wrong), cap):
        chosen, rejected = chosen_texts[i], wrong[j]
        if chosen == rejected:  # a gold response the model reproduced but whose answer extraction failed
            continue
        pairs.append(PreferencePair(
            id=f"{problem.id}#{source}-{len(pairs)}", problem_id=problem.id, question=problem.question,
            chosen=chosen, rejected=rejected, gold_answer=problem.answer, source=source,
            meta={**meta, "chosen_answer": answer_of.get(chosen, problem.answer),
                  "rejected_answer": answer_of[rejected], "n_correct": len(correct), "n_wrong": len(wrong)}))
    counts["pairs_on_policy" if source == "on-policy" else "pairs_gold_fallback"] += len(pairs)
    return pairs


__all__ = ["Sampler", "on_policy_pairs", "pair_indices", "sample_responses"]
