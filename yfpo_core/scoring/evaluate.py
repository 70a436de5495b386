"""Scoring a model on math problems: answer ranking (fast, teacher-forced) and exact match (generation).

**Answer-ranking accuracy.** The model reads the question and the gold solution up to the point where
the reasoning states the final answer (its last mention before ``####``), e.g.
``"... 1 foot / 10 feet * 100% ="``. We then compare
log p(rest of the gold solution) with log p(the same rest with the answer replaced by a nearby wrong
one) for the distractors gold+1, gold-1, gold+2 and gold+10 (see :func:`distractor_answers`). A
problem counts as correct when the gold continuation scores strictly highest. Cutting where the
reasoning states the answer, rather than after ``####``, makes the model compute the last step instead of
copying a number it has just read; the continuation ends with the model's end-of-response text, so a
shorter number does not win just by being a prefix of a longer one. One forward pass of the context
plus one small batch per problem (:mod:`yfpo_core.scoring.logprobs`) makes this cheap enough for live plots.

**Exact match.** Greedy generation (:mod:`yfpo_core.scoring.generation`), then :func:`extract_answer` compared
with the gold answer. Slower and truer. :func:`stream_exact_match` does one problem token by token, for a UI
that shows the answer as it is written.

Both take optional TransformerLens forward hooks, so an ablation or a scaled unit is measured with the
same code as the clean model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

from yfpo_core.problems.answers import NumberMatch, answers_match, extract_answer, find_numbers, format_number, parse_number
from yfpo_core.scoring.generation import Generation, finish_generation, greedy_generate, stream_hf, stream_tl
from yfpo_core.scoring.logprobs import continuation_logprobs
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import ANSWER_MARKER, Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.models.prompts import PromptFormat

ForwardHooks = Sequence[tuple[str | Callable[[str], bool], Callable[..., Any]]]

DISTRACTOR_OFFSETS: tuple[int, ...] = (1, -1, 2, 10)


def distractor_answers(gold: Fraction) -> list[Fraction]:
    """Nearby wrong answers: gold+1, gold-1, gold+2, gold+10 (non-negative golds get +3 instead of -1
    when gold-1 would be negative, so a distractor is never implausible just by its sign)."""
    out = []
    for offset in DISTRACTOR_OFFSETS:
        candidate = gold + offset
        if candidate < 0 <= gold:
            candidate = gold + 3
        out.append(candidate)
    return out


@dataclass(frozen=True)
class RankingItem:
    """The texts compared for one problem: a shared context and one continuation per candidate answer.

    ``continuations[0]`` is the gold one; the rest use ``answers[1:]``.
    """

    problem_id: str
    context: str
    continuations: tuple[str, ...]
    answers: tuple[Fraction, ...]


def render_like(original: str, value: Fraction) -> str:
    """Write ``value`` in the style of ``original``: same decimals, same thousands separators."""
    decimals = len(original.split(".")[1]) if "." in original else 0
    if value.denominator != 1 or decimals:
        text = f"{float(value):.{max(decimals, 1) if value.denominator != 1 else decimals}f}"
    else:
        text = str(value.numerator)
    if "," in original:
        whole, _, frac = text.partition(".")
        sign = "-" if whole.startswith("-") else ""
        whole = f"{int(whole.lstrip('-')):,}"
        text = sign + whole + (f".{frac}" if frac else "")
    return text


def _replace_answers(text: str, gold: Fraction, value: Fraction) -> str:
    """Every number in ``text`` equal to ``gold`` rewritten as ``value`` (right to left keeps spans valid)."""
    for match in reversed(find_numbers(text)):
        if match.value == gold:
            text = text[: match.start] + render_like(text[match.start: match.end], value) + text[match.end:]
    return text


def build_ranking_item(problem: Problem, prompt_format: PromptFormat) -> RankingItem:
    """Split a problem's gold response where its reasoning states the final answer (the last mention of the
    answer's value before ``####``; see the module doc)."""
    gold = parse_number(problem.answer)
    if gold is None:
        raise ValueError(f"problem {problem.id}: answer {problem.answer!r} is not a number")
    response = prompt_format.response(problem.solution)
    marker = response.rfind(ANSWER_MARKER)
    reasoning = response[:marker] if marker >= 0 else response
    stated: list[NumberMatch] = [m for m in find_numbers(reasoning) if m.value == gold]
    if stated:
        cut = stated[-1].start
    elif marker >= 0:
        cut = marker + len(ANSWER_MARKER)
    else:
        cut = len(response)
        response = f"{response}\n{ANSWER_MARKER} {format_number(gold)}"
    # Move the cut back over spaces so that a BPE tokenizer sees " 72" as in the joined text.
    while cut > 0 and response[cut - 1] == " ":
        cut -= 1
    tail = response[cut:] + prompt_format.end_of_response
    context = prompt_format.prompt(problem.question) + response[:cut]
    answers = (gold, *distractor_answers(gold))
    continuations = tuple(tail if a == gold else _replace_answers(tail, gold, a) for a in answers)
    return RankingItem(problem_id=problem.id, context=context, continuations=continuations, answers=answers)


@dataclass
class ProblemRows:
    """Evaluation results, one row per problem: what the ranking and the exact-match reports share."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def mean(self, key: str) -> float:
        """The mean of ``key`` over the rows (0 without rows)."""
        return sum(r[key] for r in self.rows) / max(len(self.rows), 1)

    @property
    def accuracy(self) -> float:
        """Fraction of problems marked correct: for ranking, the gold continuation scores strictly above
        every distractor; for exact match, the generated answer equals the gold one."""
        return self.mean("correct")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)


@dataclass
class RankingReport(ProblemRows):
    """Answer-ranking results: one row per problem plus the summary numbers."""

    @property
    def pairwise_accuracy(self) -> float:
        """Fraction of (problem, distractor) pairs the gold continuation wins."""
        return sum(r["pairwise_wins"] for r in self.rows) / max(sum(r["n_distractors"] for r in self.rows), 1)

    @property
    def mean_margin(self) -> float:
        """Mean of log p(gold) - max log p(distractor), in nats."""
        return self.mean("margin")

    @property
    def mean_gold_logprob(self) -> float:
        return self.mean("gold_logprob")

    def summary(self) -> dict[str, float]:
        return {"ranking_accuracy": self.accuracy, "pairwise_accuracy": self.pairwise_accuracy,
                "mean_margin": self.mean_margin, "gold_logprob": self.mean_gold_logprob,
                "n_problems": float(len(self.rows))}


def _hooks_context(loaded: LoadedModel, fwd_hooks: ForwardHooks | None):
    return loaded.model.hooks(fwd_hooks=list(fwd_hooks)) if fwd_hooks else nullcontext()


def ranking_row(problem: Problem, item: RankingItem, scores: torch.Tensor) -> dict[str, Any]:
    """One problem's row of a :class:`RankingReport` from its candidates' log-probs (gold first)."""
    gold, others = float(scores[0]), scores[1:]
    return {
        "id": problem.id, "gold": problem.answer, "correct": bool(gold > float(others.max())),
        "gold_logprob": gold, "margin": gold - float(others.max()),
        "pairwise_wins": int((scores[0] > others).sum()), "n_distractors": len(others),
        "best_wrong": format_number(item.answers[1 + int(others.argmax())]),
        "candidates": {format_number(a): float(s) for a, s in zip(item.answers, scores, strict=True)},
    }


@torch.no_grad()
def answer_ranking(loaded: LoadedModel, problems: Sequence[Problem], *, fwd_hooks: ForwardHooks | None = None,
                   progress: ProgressCallback | None = None) -> RankingReport:
    """Answer-ranking accuracy of ``loaded`` on ``problems`` (see the module docstring)."""
    result = RankingReport()
    cut: list[str] = []
    with loaded.lock, _hooks_context(loaded, fwd_hooks):
        for i, problem in enumerate(problems):
            item = build_ranking_item(problem, loaded.prompt_format)
            context_ids = loaded.encode_prompt(item.context)
            continuation_ids = [loaded.encode(c) for c in item.continuations]
            if len(context_ids) + max(map(len, continuation_ids)) > loaded.model.cfg.n_ctx:
                cut.append(problem.id)  # scored on the window the model can see: say so
            scores = continuation_logprobs(loaded.model, context_ids, continuation_ids, loaded.pad_token_id)
            result.rows.append({**ranking_row(problem, item, scores), "context_cut": bool(cut and cut[-1] == problem.id)})
            report(progress, i + 1, len(problems), f"acc {result.accuracy:.2f}")
    if cut:
        warnings.warn(f"{len(cut)} of {len(problems)} problems do not fit the context of {loaded.name} "
                      f"({loaded.model.cfg.n_ctx} tokens) and were scored on their last {loaded.model.cfg.n_ctx} "
                      f"tokens only (the start of the question is not seen): {', '.join(cut[:5])}"
                      f"{' ...' if len(cut) > 5 else ''}", ContextCutWarning, stacklevel=2)
    return result


class ContextCutWarning(UserWarning):
    """A problem was longer than the model's context and was scored on its end only."""


@dataclass
class ExactMatchReport(ProblemRows):
    """Exact-match results: one row per problem (generated text included) plus the accuracy."""

    def summary(self) -> dict[str, float]:
        return {"exact_match": self.accuracy, "n_problems": float(len(self.rows))}


def exact_match(loaded: LoadedModel, problems: Sequence[Problem], *, max_new_tokens: int = 256,
                batch_size: int = 8, fwd_hooks: ForwardHooks | None = None,
                progress: ProgressCallback | None = None) -> ExactMatchReport:
    """Greedy-generation exact match. With ``fwd_hooks`` the TransformerLens path is used (hooks do not
    reach the Hugging Face twin)."""
    prompts = [loaded.prompt_format.prompt(p.question) for p in problems]
    target = loaded if not fwd_hooks else loaded.with_model(loaded.model, name=loaded.name)
    # The TransformerLens model is shared (hooks are global state); the HF twin path never touches it.
    uses_tl = bool(fwd_hooks) or not loaded.has_hf_twin
    with loaded.lock if uses_tl else nullcontext(), _hooks_context(loaded, fwd_hooks):
        generations = greedy_generate(target, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                      progress=progress)
    return ExactMatchReport([exact_match_row(problem, gen) for problem, gen in zip(problems, generations, strict=True)])


def exact_match_row(problem: Problem, gen: Generation) -> dict[str, Any]:
    """One problem's exact-match row: the answer extracted from ``gen`` against the gold one."""
    predicted = extract_answer(gen.text)
    return {"id": problem.id, "gold": problem.answer,
            "predicted": format_number(predicted) if predicted is not None else None,
            "correct": answers_match(predicted, problem.answer), "output": gen.text,
            "stop_reason": gen.stop_reason, "new_tokens": gen.n_new_tokens}


def stream_exact_match(loaded: LoadedModel, problem: Problem, *, max_new_tokens: int = 256,
                       on_text: Callable[[str], None] | None = None,
                       progress: ProgressCallback | None = None) -> dict[str, Any]:
    """:func:`exact_match`'s row for one problem, generated greedily token by token so that a UI can show the
    answer as it is written: ``on_text(the text so far)`` and ``progress(tokens, max_new_tokens,
    "generating")`` after every token.

    With the model's Hugging Face twin when it is built already (the path :func:`exact_match` takes, several
    times faster on CPU: :func:`~yfpo_core.scoring.generation.stream_hf`), else with the TransformerLens loop
    (:func:`~yfpo_core.scoring.generation.stream_tl`): building the twin takes seconds, and here the first
    token should come after one forward pass of the prompt. Both decode greedily from the same weights (they
    can differ only where two tokens tie to float rounding)."""
    prompt_ids = loaded.encode_prompt(loaded.prompt_format.prompt(problem.question))
    ids: list[int] = []

    def take(token: int) -> None:
        ids.append(token)
        if on_text is not None:
            on_text(loaded.decode(ids))
        report(progress, len(ids), max_new_tokens, "generating")

    report(progress, 0, max_new_tokens, "generating")
    twin = loaded.built_hf_twin()
    if twin is not None:
        ids = stream_hf(loaded, twin, prompt_ids, max_new_tokens, take)
    else:
        with loaded.lock:  # the TransformerLens model is shared: keep others' hooks out of these forward passes
            for token in stream_tl(loaded, prompt_ids, max_new_tokens):
                take(token)
    return exact_match_row(problem, finish_generation(loaded, ids, max_new_tokens))
