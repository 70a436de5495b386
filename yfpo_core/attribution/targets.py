"""What an attribution explains: a scalar computed from the model's logits on one problem.

Targets (all teacher-forced on the gold solution, using the split of :func:`yfpo_core.scoring.evaluate.build_ranking_item`):

* ``answer_logprob``: log p of the tokens of the final answer where the reasoning states it
  (e.g. ``" 72"`` in ``"... 48+24 = 72 clips"``), given everything before;
* ``solution_logprob``: log p of the whole gold response given the prompt;
* ``logit_diff``: at the first token where the gold answer and the nearest wrong one (gold+1) differ,
  logit(gold token) - logit(wrong token). Linear in the logits, so relevance conservation can be checked
  against it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float

from yfpo_core.problems.answers import find_numbers
from yfpo_core.errors import ProblemDataError
from yfpo_core.scoring.evaluate import build_ranking_item
from yfpo_core.models.base import LoadedModel
from yfpo_core.attribution.registry import TARGETS
from yfpo_core.problems.base import Problem

TargetName = Literal["answer_logprob", "solution_logprob", "logit_diff"]


class ProblemTooLongError(ProblemDataError, ValueError):
    """A problem does not fit the model's context: the user can drop it (a ``ValueError`` too, as before)."""


@dataclass(frozen=True)
class PreparedProblem:
    """One problem as token ids, with what the target reads and where the contrast texts are.

    Attributes:
        problem_id: The problem's id.
        tokens: Prompt and gold solution (up to what the target needs), as fed to the model.
        positions: Logit positions the target reads (position ``t`` predicts token ``t + 1``).
        target_tokens: The token whose log-prob or logit is read at each position.
        contrast_tokens: For ``logit_diff``, the wrong token at each position; otherwise empty.
        response_start: Index of the first response token in ``tokens`` (prompt tokens come before).
        gold_tokens: The ranking context followed by the gold continuation.
        wrong_tokens: The same context followed by the wrong answer's continuation (gold+1); with
            ``gold_tokens``, the correct-vs-wrong contrast.
        tail_start: Index in ``gold_tokens`` and ``wrong_tokens`` where the continuations start.
    """

    problem_id: str
    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    target_tokens: tuple[int, ...]
    contrast_tokens: tuple[int, ...]
    response_start: int
    gold_tokens: tuple[int, ...]
    wrong_tokens: tuple[int, ...]
    tail_start: int


def prepare_problem(loaded: LoadedModel, problem: Problem, target: str) -> PreparedProblem:
    """Token ids and target positions of ``problem`` for ``target`` (see the module docstring)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    fmt = loaded.prompt_format
    item = build_ranking_item(problem, fmt)
    context = loaded.encode_prompt(item.context)
    gold_tail = loaded.encode(item.continuations[0])
    wrong_tail = loaded.encode(item.continuations[1])
    response_start = len(loaded.encode_prompt(fmt.prompt(problem.question)))
    gold, wrong = tuple(context + gold_tail), tuple(context + wrong_tail)
    limit = loaded.model.cfg.n_ctx
    longest = max(len(gold), len(wrong), len(loaded.encode_prompt(fmt.prompt(problem.question))) +
                  len(loaded.encode(fmt.response(problem.solution) + fmt.end_of_response)))
    if longest > limit:
        raise ProblemTooLongError(f"problem {problem.id} needs {longest} tokens but {loaded.name} reads at most "
                                  f"{limit}; leave it out of the problem set or use a model with a longer context")

    if target == "solution_logprob":
        prompt = loaded.encode_prompt(fmt.prompt(problem.question))
        response = loaded.encode(fmt.response(problem.solution) + fmt.end_of_response)
        tokens = prompt + response
        positions = tuple(range(len(prompt) - 1, len(tokens) - 1))
        return PreparedProblem(problem.id, tuple(tokens), positions, tuple(response), (), len(prompt), gold, wrong,
                               len(context))
    if target == "answer_logprob":
        first_number = find_numbers(item.continuations[0])
        answer_ids = loaded.encode(item.continuations[0][: first_number[0].end]) if first_number else gold_tail
        if gold_tail[: len(answer_ids)] != answer_ids:  # tokenizer merged across the cut: use the whole tail
            answer_ids = gold_tail
        tokens = context + gold_tail
        positions = tuple(range(len(context) - 1, len(context) - 1 + len(answer_ids)))
        return PreparedProblem(problem.id, tuple(tokens), positions, tuple(answer_ids), (), response_start, gold, wrong,
                               len(context))
    # logit_diff: the first position where the gold and wrong continuations differ
    j = next(i for i, (g, w) in enumerate(zip(gold_tail, wrong_tail, strict=False)) if g != w)
    tokens = context + gold_tail
    return PreparedProblem(problem.id, tuple(tokens), (len(context) - 1 + j,), (gold_tail[j],), (wrong_tail[j],),
                           response_start, gold, wrong, len(context))


def target_value(logits: Float[torch.Tensor, "pos vocab"], prepared: PreparedProblem) -> torch.Tensor:
    """The scalar target from one sequence's logits (differentiable)."""
    positions = torch.tensor(prepared.positions, device=logits.device)
    return target_from_rows(logits[positions], prepared)


def target_from_rows(rows: Float[torch.Tensor, "n_positions vocab"], prepared: PreparedProblem) -> torch.Tensor:
    """The scalar target from the logits at ``prepared.positions`` only (one row per position, in order).

    Why: the target reads a handful of positions, so the unembedding (a fifth of a small model's work,
    forward and backward) need only run there (see :func:`yfpo_core.attribution.methods.gradient_relevance_batch`).
    """
    chosen = torch.tensor(prepared.target_tokens, device=rows.device)
    rows = rows.float()
    if prepared.contrast_tokens:
        wrong = torch.tensor(prepared.contrast_tokens, device=rows.device)
        return (rows.gather(-1, chosen[:, None]) - rows.gather(-1, wrong[:, None])).sum()
    return (rows.gather(-1, chosen[:, None]).squeeze(-1) - torch.logsumexp(rows, dim=-1)).sum()
