"""Locating the units that carry the math: :func:`attribute`, one entry point for every method.

``attribute(model, problems, method, target)`` scores every unit of a :class:`UnitSpace` (by default all
MLP neurons, ``blocks.L.mlp.hook_post[i]``) on each problem, streaming with a progress callback, and
returns an :class:`AttributionResult` with the mean score, the per-problem scores and, when they fit in
memory, per-token maps for drill-down. The methods are listed in :mod:`yfpo_core.attribution.registry`
and computed in :mod:`yfpo_core.attribution.methods`; :data:`SCORERS` maps each name to its computation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from yfpo_core.attribution.methods import (
    ProblemScores,
    activations,
    contrast_correct_wrong,
    gradient_relevance,
    gradient_relevance_batch,
    integrated_gradients,
    mean_activation,
)
from yfpo_core.attribution.result import AttributionResult
from yfpo_core.units.space import UnitSpace, neuron_space
from yfpo_core.attribution.registry import BATCHED_METHODS, METHODS, check_methods
from yfpo_core.attribution.targets import PreparedProblem, prepare_problem
from yfpo_core.distributed import Distributed
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report

TOKEN_MAP_BUDGET_BYTES = 256 * 2**20  # keep per-token maps (fp16) up to this size
DEFAULT_BATCH_SIZE = 4  # problems per pass (bench/attribution.py measures 1 vs more)

__all__ = ["SCORERS", "attribute", "attribute_sharded", "default_contrast_texts", "token_scores"]


def default_contrast_texts(loaded: LoadedModel, n: int) -> list[str]:
    """Non-math texts in the model's own format: the toy model's digit-free facts, or everyday passages
    wrapped in the prompt format (so template tokens appear in both groups and cancel)."""
    if loaded.native_problems == "toy":
        from yfpo_core.problems.synthetic import generate_toy_nonmath

        return generate_toy_nonmath(n, seed=0)
    from yfpo_core.problems.nonmath import load_nonmath_texts

    return [loaded.prompt_format.prompt(t) for t in load_nonmath_texts(limit=n)]


Scorer = Callable[[LoadedModel, UnitSpace, PreparedProblem, int], ProblemScores]
# Each method's computation on one problem (the last argument is ``steps``). contrast_math_nonmath scores
# the problems by their mean activation; :func:`_combine` then contrasts them with the non-math texts.
SCORERS: dict[str, Scorer] = {
    "attnlrp": lambda loaded, space, prepared, steps: gradient_relevance(loaded, space, prepared, lrp=True),
    "grad_x_act": lambda loaded, space, prepared, steps: gradient_relevance(loaded, space, prepared, lrp=False),
    "integrated_gradients": lambda loaded, space, prepared, steps: integrated_gradients(loaded, space, prepared,
                                                                                         steps=steps),
    "activation": lambda loaded, space, prepared, steps: mean_activation(loaded, space, prepared),
    "contrast_math_nonmath": lambda loaded, space, prepared, steps: mean_activation(loaded, space, prepared),
    "contrast_correct_wrong": lambda loaded, space, prepared, steps: contrast_correct_wrong(loaded, space, prepared),
}
assert set(SCORERS) == set(METHODS), "every method of the registry needs its computation here"


def _score_problem(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem, method: str,
                   steps: int) -> ProblemScores:
    check_methods([method])
    return SCORERS[method](loaded, space, prepared, steps)


def _standardised_difference(math: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """(mean_math - mean_other) / pooled standard deviation, with texts as the samples (``[texts, rows, width]``).

    Texts, not tokens, are the independent samples: a unit that fires on every digit has a small
    token-level effect size (digits are a few percent of tokens) but the same mean in every math text and
    zero in every non-math text, which is exactly the selectivity sought.
    """
    variance = (math.var(0, unbiased=True) * (len(math) - 1) + other.var(0, unbiased=True) * (len(other) - 1)) / max(
        len(math) + len(other) - 2, 1)
    return (math.mean(0) - other.mean(0)) / variance.sqrt().clamp_min(1e-6)


@dataclass
class _Scored:
    """What the map step sends to rank 0 for one problem (the reduce, :func:`_combine`, needs no more)."""

    total: torch.Tensor
    extras: dict[str, float]
    tokens: torch.Tensor | None = None
    token_strings: list[str] | None = None


def attribute(model: LoadedModel, problems: Sequence[Problem], method: str = "attnlrp",
              target: str = "answer_logprob", *, units: UnitSpace | None = None, layers: Sequence[int] | None = None,
              steps: int = 8, contrast_texts: Sequence[str] | None = None, normalize: bool = False,
              keep_token_scores: bool | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
              progress: ProgressCallback | None = None) -> AttributionResult:
    """Score every unit over ``problems`` (see the module docstring).

    Args:
        model: The model.
        problems: The problem set; scores are means over it.
        method: One of :data:`METHODS`.
        target: One of :data:`TARGETS` (used by the gradient methods; the others ignore it).
        units: Which units (default: all MLP neurons, or those of ``layers``).
        steps: Integrated-gradients path points.
        contrast_texts: Non-math texts for ``contrast_math_nonmath`` (default: :func:`default_contrast_texts`).
        normalize: Divide each problem's scores by their total absolute value, so that every problem
            weighs the same whatever the size of its target.
        keep_token_scores: Keep per-token maps (default: when they fit in 256 MB as fp16).
        batch_size: Problems per forward+backward pass for ``attnlrp`` and ``grad_x_act`` (same scores as
            one at a time, to float rounding; see :func:`~yfpo_core.attribution.methods.gradient_relevance_batch`).
        progress: Called after each problem.
    """
    result = attribute_sharded(Distributed(), model, problems, method, target, units=units, layers=layers,
                               steps=steps, contrast_texts=contrast_texts, normalize=normalize,
                               keep_token_scores=keep_token_scores, batch_size=batch_size, progress=progress)
    assert result is not None  # a single process is rank 0
    return result


def attribute_sharded(dist: Distributed, model: LoadedModel, problems: Sequence[Problem], method: str = "attnlrp",
                      target: str = "answer_logprob", *, units: UnitSpace | None = None,
                      layers: Sequence[int] | None = None, steps: int = 8,
                      contrast_texts: Sequence[str] | None = None, normalize: bool = False,
                      keep_token_scores: bool | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                      progress: ProgressCallback | None = None) -> AttributionResult | None:
    """:func:`attribute` as one process of a data-parallel run: this process scores its share of the problems
    (and of the contrast texts), rank 0 gathers every problem's scores and reduces them exactly as one
    process would. Returns the result on rank 0 and ``None`` on the others; ``progress`` counts this
    process's share."""
    check_methods([method])
    if not problems:
        raise ValueError("attribution needs at least one problem")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    space = units or neuron_space(model.model, layers)
    started = time.perf_counter()
    mine = dist.shard_by_cost([p.size for p in problems])
    prepared = [prepare_problem(model, problems[i], target) for i in mine]
    if keep_token_scores is None:
        map_bytes = sum(dist.exchange(sum(len(p.tokens) for p in prepared) * space.n_rows * space.width * 2))
        keep_token_scores = map_bytes <= TOKEN_MAP_BUDGET_BYTES
    texts = list(contrast_texts) if contrast_texts is not None else (
        default_contrast_texts(model, len(problems)) if method == "contrast_math_nonmath" else [])
    my_texts = dist.shard(len(texts))
    total_steps = len(prepared) + len(my_texts)

    size = batch_size if method in BATCHED_METHODS else 1
    scored: list[_Scored | None] = [None] * len(prepared)
    other_means: list[torch.Tensor] = []
    done = 0
    report(progress, 0, total_steps, method)
    if model.lock.acquire(blocking=False):
        model.lock.release()
    else:  # say so, rather than nothing, while another analysis holds the model
        report(progress, 0, total_steps, f"{method}: waiting for the model (another analysis is using it)")
    with model.lock:
        for batch in _batches(prepared, size):
            items = [prepared[k] for k in batch]
            what = f"problem {done + 1}" if len(batch) == 1 else f"problems {done + 1}-{done + len(batch)} (one pass)"
            report(progress, done, total_steps, f"{method}: {what} of {len(prepared)}")
            for k, scores in zip(batch, _score_batch(model, space, items, method, steps), strict=True):
                total = scores.total
                if normalize:
                    total = total / total.abs().sum().clamp_min(1e-12)
                scored[k] = _Scored(total.float().cpu(), scores.extras)
                if keep_token_scores:
                    scored[k].tokens = scores.tokens.float().cpu()
                    scored[k].token_strings = [model.decode([t]) for t in scores.token_ids]
            done += len(batch)
            report(progress, done, total_steps, f"{method} {items[-1].problem_id}")
        for j in my_texts:
            other_means.append(activations(model, space, tuple(model.encode_prompt(texts[j]))).float().mean(0).cpu())
            report(progress, len(prepared) + len(other_means), total_steps, "non-math texts")
    gathered = dist.gather(mine, scored)
    gathered_texts = dist.gather(my_texts, other_means)
    if gathered is None or gathered_texts is None:
        return None
    return _combine(model, space, problems, method, target, gathered, gathered_texts,
                    {"steps": steps, "normalize": normalize, "n_problems": len(problems), "n_contrast_texts": len(texts),
                     "batch_size": batch_size, "processes": dist.world,
                     "seconds": round(time.perf_counter() - started, 2)})


def _batches(prepared: Sequence[PreparedProblem], size: int) -> list[list[int]]:
    """Indices into ``prepared`` in groups of ``size``, sorted by length so that rows need little padding
    (deterministic: ties broken by position)."""
    order = sorted(range(len(prepared)), key=lambda k: (len(prepared[k].tokens), k)) if size > 1 else \
        list(range(len(prepared)))
    return [order[j: j + size] for j in range(0, len(order), size)]


def _score_batch(loaded: LoadedModel, space: UnitSpace, batch: list[PreparedProblem], method: str,
                 steps: int) -> list[ProblemScores]:
    if method in BATCHED_METHODS:
        return gradient_relevance_batch(loaded, space, batch, lrp=method == "attnlrp")
    return [_score_problem(loaded, space, item, method, steps) for item in batch]


def _combine(model: LoadedModel, space: UnitSpace, problems: Sequence[Problem], method: str, target: str,
             scored: list[_Scored], other_means: list[torch.Tensor], params: dict) -> AttributionResult:
    """The reduce: per-problem scores (in problem order) into means, contrasts and the result."""
    per_problem = torch.stack([s.total for s in scored])
    if method == "contrast_math_nonmath":
        if len(other_means) < 2 or len(per_problem) < 2:
            raise ValueError("contrast_math_nonmath needs at least 2 problems and 2 non-math texts")
        others = torch.stack(other_means)
        scores = _standardised_difference(per_problem, others)
        per_problem = per_problem - others.mean(0)  # each problem's mean activation above the non-math mean
    else:
        scores = per_problem.mean(0)
    budgets = [s.extras["relevance_budget"] for s in scored if "relevance_budget" in s.extras]
    if budgets:
        params["relevance_budget_mean"] = float(torch.tensor(budgets).nanmean())
        params["relevance_budget"] = budgets
    ids = [p.id for p in problems]
    return AttributionResult(
        scores=scores.float().cpu(), per_problem=per_problem, problem_ids=ids,
        space=space, method=method, target=target, model_name=model.name, model_fingerprint=model.fingerprint,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), params=params,
        token_scores={pid: s.tokens for pid, s in zip(ids, scored, strict=True) if s.tokens is not None},
        tokens={pid: s.token_strings for pid, s in zip(ids, scored, strict=True) if s.token_strings is not None})


def token_scores(model: LoadedModel, problem: Problem, method: str, target: str = "answer_logprob",
                 units: UnitSpace | None = None, steps: int = 8) -> tuple[list[str], torch.Tensor]:
    """Per-token scores ``[pos, rows, width]`` of one problem (and its token strings), for drill-down."""
    space = units or neuron_space(model.model)
    prepared = prepare_problem(model, problem, target)
    with model.lock:
        scores = _score_problem(model, space, prepared, "activation" if method == "contrast_math_nonmath" else method,
                                steps)
    return [model.decode([t]) for t in scores.token_ids], scores.tokens.float().cpu()
