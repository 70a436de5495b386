"""Preference pairs for DPO/YFPO training: made from gold solutions, sampled from a model, or read from a file.

A :class:`PreferencePair` holds a raw question and two responses in *model form* (what
``prompt_format.response`` gives: calculator notes stripped, no end-of-response marker); the trainer applies
the model's prompt format, so one pairs file serves every model family.

Three ways to get pairs:

* :func:`corrupted_pairs`: the gold response against a minimally corrupted copy. ``"final"`` rewrites the
  final answer from the point where the solution states it (the cut of
  :func:`yfpo_core.scoring.evaluate.build_ranking_item`, so training contrasts exactly what answer ranking
  measures) with a nearby wrong answer from :func:`~yfpo_core.scoring.evaluate.distractor_answers`. ``"step"``
  changes one intermediate result and nothing else, so the rejected text has a wrong step but, often, the
  right answer: a preference that a pure answer check cannot express. No model needed; instant.
* :func:`~yfpo_core.training.on_policy.on_policy_pairs`: responses sampled from the model itself, judged by
  their final answer. Pairs of the model's own texts keep the DPO reference log-probabilities in a realistic
  range; a weak model that is never right can still get pairs with ``fallback_gold`` (gold response against
  its own wrong ones).
* :func:`~yfpo_core.training.pairs_io.load_pairs`: a user's JSONL file, validated line by line with messages
  that say how to fix it.

Every random choice uses a private RNG seeded from ``(seed, problem id)``, so a problem's pair does not
change when other problems are added, removed or reordered.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from yfpo_core.errors import YfpoError
from yfpo_core.models.prompts import PromptFormat
from yfpo_core.problems.answers import NumberMatch, find_numbers, format_number
from yfpo_core.problems.base import Problem, TextRecord
from yfpo_core.scoring.evaluate import build_ranking_item, distractor_answers, render_like

CorruptionMode = Literal["final", "step", "mixed"]
CORRUPTION_MODES: tuple[str, ...] = ("final", "step", "mixed")



class PairDataError(YfpoError):
    """Preference pairs cannot be made or read (bad file, bad row, bad option)."""


@dataclass(frozen=True)
class PreferencePair(TextRecord):
    """One preference: for ``question``, the response ``chosen`` is preferred over ``rejected``.

    Attributes:
        id: Unique within a pair set, e.g. ``"toy/0007#corrupt-final"``.
        problem_id: The problem it comes from; :func:`split_pairs` keeps each problem on one side.
        question: The raw question (the trainer wraps it in the model's prompt format).
        chosen: The preferred response in model form, without the end-of-response marker.
        rejected: The dispreferred response, same form.
        gold_answer: The problem's answer as text (``""`` when a pairs file does not give one).
        source: ``"corrupt-final"``, ``"corrupt-step"``, ``"on-policy"``, ``"on-policy-gold"`` or
            ``"file:<path>"``.
        meta: JSON-serialisable details of how the pair was made (what was replaced, sampled answers...).
    """

    id: str
    problem_id: str
    question: str
    chosen: str
    rejected: str
    gold_answer: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    OPTIONAL_TEXT = ("gold_answer",)  # a pairs file may leave it out


def _problem_rng(seed: int, problem_id: str, purpose: str) -> random.Random:
    """A private RNG per (seed, problem): a problem's choices do not depend on which other problems run."""
    return random.Random(f"{seed}/{purpose}/{problem_id}")


def problem_seed(seed: int, problem_id: str) -> int:
    """A torch seed per (seed, problem), stable across runs (unlike ``hash(str)``)."""
    digest = hashlib.sha256(f"{seed}/sample/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# -- corrupted pairs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _GoldSplit:
    """A gold response split where the final answer is stated (the answer-ranking cut)."""

    gold: Fraction
    response: str  # the chosen text
    cut: int  # index in ``response`` where the final answer's statement starts
    answers: tuple[Fraction, ...]  # gold first, then the distractors, as in RankingItem
    wrong_responses: tuple[str, ...]  # ``response`` with the tail's answer replaced, one per distractor


def _split_gold(problem: Problem, prompt_format: PromptFormat) -> _GoldSplit:
    """The gold response and its final-answer corruptions, taken from :func:`build_ranking_item` so that
    the training contrast is exactly the answer-ranking contrast."""
    try:
        item = build_ranking_item(problem, prompt_format)
    except ValueError as exc:
        raise PairDataError(f"Problem {problem.id}: its answer {problem.answer!r} is not a number, so no wrong "
                            "answer can be made; fix the answer or leave the problem out.") from exc
    prompt = prompt_format.prompt(problem.question)
    prefix = item.context[len(prompt):]
    end = prompt_format.end_of_response

    def strip_end(text: str) -> str:
        return text[: len(text) - len(end)] if end and text.endswith(end) else text

    responses = [prefix + strip_end(c) for c in item.continuations]
    return _GoldSplit(gold=item.answers[0], response=responses[0], cut=len(prefix), answers=item.answers,
                      wrong_responses=tuple(responses[1:]))


def _final_corruption(problem: Problem, split: _GoldSplit, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """The gold response with the final answer replaced by a random distractor from its statement on."""
    k = rng.randrange(len(split.wrong_responses))
    rejected = split.wrong_responses[k]
    if rejected == split.response:
        raise PairDataError(f"Problem {problem.id}: its solution never states the answer {problem.answer} after "
                            "its reasoning, so it cannot be corrupted; fix the solution's '#### N' line or its "
                            "answer.")
    return rejected, {"mode": "final", "wrong_answer": format_number(split.answers[k + 1])}


def intermediate_steps(response: str, before: int, gold: Fraction) -> list[NumberMatch]:
    """The intermediate results of a response: numbers written right after ``=`` (a currency sign may sit in
    between) that end before ``before`` (the final answer's statement) and differ from the gold answer.

    Results after ``=`` are what a reasoning step computes, so changing one makes a wrong step; operands
    are left alone because a changed operand is a misread question, not a wrong step.
    """
    steps = []
    for m in find_numbers(response):
        if m.end > before or m.value == gold:
            continue
        written = response[m.start: m.end]
        if any(sign in written for sign in "$€£"):  # "-$5": rewriting would drop the currency sign
            continue
        if response[: m.start].rstrip(" $€£").endswith("="):
            steps.append(m)
    return steps


def _step_corruption(split: _GoldSplit, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The gold response with one intermediate result replaced by a nearby wrong value; ``None`` if it has
    no intermediate result. Later lines keep the right value, so exactly one step is wrong."""
    steps = intermediate_steps(split.response, split.cut, split.gold)
    if not steps:
        return None
    step = steps[rng.randrange(len(steps))]
    wrong = rng.choice(distractor_answers(step.value))
    original = split.response[step.start: step.end]
    rewritten = render_like(original, wrong)
    rejected = split.response[: step.start] + rewritten + split.response[step.end:]
    return rejected, {"mode": "step", "position": step.start, "original_value": format_number(step.value),
                      "wrong_value": format_number(wrong), "original_text": original, "wrong_text": rewritten}


def corrupted_pairs(problems: Iterable[Problem], prompt_format: PromptFormat, *, mode: CorruptionMode = "final",
                    seed: int = 0) -> list[PreferencePair]:
    """Gold response (chosen) against a corrupted copy (rejected), one pair per problem.

    Args:
        problems: Problems with numeric answers and gold solutions.
        prompt_format: The model family's format; responses are written as ``prompt_format.response`` does.
        mode: ``"final"``: the final answer replaced from its statement on by a nearby wrong answer (one of
            :func:`~yfpo_core.scoring.evaluate.distractor_answers`), in the original style. ``"step"``: one
            intermediate result replaced by a nearby wrong value, that occurrence only; a problem with no
            intermediate result falls back to ``"final"`` (``meta["fallback"]`` says so). ``"mixed"``:
            ``"final"`` for even-indexed problems, ``"step"`` for odd ones.
        seed: Seeds the choice of distractor and step (per problem, see the module docstring).

    Returns:
        The pairs, in problem order; ``source`` is what was actually done (``"corrupt-final"`` or
        ``"corrupt-step"``), ``meta["requested_mode"]`` what was asked.

    Raises:
        PairDataError: Unknown mode, a non-numeric answer, or a solution that never states its answer.
    """
    if mode not in CORRUPTION_MODES:
        raise PairDataError(f"Unknown corruption mode {mode!r}; use one of: {', '.join(CORRUPTION_MODES)}.")
    pairs = []
    for i, problem in enumerate(problems):
        wanted = mode if mode != "mixed" else ("final", "step")[i % 2]
        split = _split_gold(problem, prompt_format)
        rng = _problem_rng(seed, problem.id, "corrupt")
        corruption = _step_corruption(split, rng) if wanted == "step" else None
        meta: dict[str, Any] = {"requested_mode": mode}
        if corruption is None:
            corruption = _final_corruption(problem, split, rng)
            if wanted == "step":
                meta["fallback"] = "no intermediate step: corrupted the final answer instead"
        rejected, details = corruption
        meta.update(details)
        source = f"corrupt-{details['mode']}"
        pairs.append(PreferencePair(id=f"{problem.id}#{source}", problem_id=problem.id, question=problem.question,
                                    chosen=split.response, rejected=rejected, gold_answer=problem.answer,
                                    source=source, meta=meta))
    return pairs


# -- splitting ---------------------------------------------------------------------------------------------
def split_pairs(pairs: Sequence[PreferencePair], held_out_fraction: float, seed: int = 0
                ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split into (train, held out) by problem, so no problem is on both sides (several pairs of one problem
    on both sides would measure memorisation, not generalisation).

    About ``held_out_fraction`` of the problems (rounded; at least one when the fraction is above 0 and
    there are two problems or more) are held out, chosen with ``random.Random(seed)``. Each side keeps the
    input order.
    """
    if not 0 <= held_out_fraction <= 1:
        raise PairDataError(f"held_out_fraction must be between 0 and 1, got {held_out_fraction!r}; e.g. 0.1.")
    problem_ids = sorted(dict.fromkeys(p.problem_id for p in pairs))
    random.Random(seed).shuffle(problem_ids)
    n_held = round(held_out_fraction * len(problem_ids))
    if held_out_fraction > 0 and n_held == 0 and len(problem_ids) > 1:
        n_held = 1
    held_ids = set(problem_ids[:n_held])
    return [p for p in pairs if p.problem_id not in held_ids], [p for p in pairs if p.problem_id in held_ids]


__all__ = ["CORRUPTION_MODES", "PairDataError", "PreferencePair", "corrupted_pairs", "intermediate_steps",
           "problem_seed", "split_pairs"]
