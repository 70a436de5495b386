"""Locating the units that carry the math: one entry point, :func:`attribute`, for every method.

``attribute(model, problems, method, target)`` scores every unit of a :class:`UnitSpace` (by default all
MLP neurons, ``blocks.L.mlp.hook_post[i]``) on each problem, streaming with a progress callback, and
returns an :class:`AttributionResult` with the mean score, the per-problem scores and, when they fit in
memory, per-token maps for drill-down. Methods (details in :mod:`yfpo_core.attribution.methods`):

====================== ===========================================================================
``attnlrp``            AttnLRP relevance (Achtibat et al. 2024), one modified backward pass
``grad_x_act``         activation x gradient
``integrated_gradients`` activation x path-averaged gradient, ``steps`` points per layer
``activation``         mean activation on the problems
``contrast_math_nonmath`` standardised difference of per-text mean activation, math vs non-math (MathNeuro-style)
``contrast_correct_wrong`` activation on the gold answer's continuation minus on a wrong answer's
====================== ===========================================================================

Targets are in :mod:`yfpo_core.attribution.targets`. Why a ranking means anything is a separate
question, answered by the ablation test in :mod:`yfpo_core.interventions`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

import torch

from yfpo_core.attribution.methods import (
    ProblemScores,
    activations,
    contrast_correct_wrong,
    gradient_relevance,
    integrated_gradients,
    mean_activation,
)
from yfpo_core.attribution.result import AttributionResult, UnitScore
from yfpo_core.attribution.space import UnitSpace, neuron_space
from yfpo_core.attribution.targets import TARGETS, PreparedProblem, prepare_problem
from yfpo_core.models.base import LoadedModel
from yfpo_core.names import ATTRIBUTION_METHODS
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report

METHODS: tuple[str, ...] = ATTRIBUTION_METHODS
TOKEN_MAP_BUDGET_BYTES = 256 * 2**20  # keep per-token maps (fp16) up to this size

__all__ = ["METHODS", "TARGETS", "AttributionResult", "UnitScore", "UnitSpace", "attribute", "neuron_space",
           "default_contrast_texts", "token_scores"]


def default_contrast_texts(loaded: LoadedModel, n: int) -> list[str]:
    """Non-math texts in the model's own format: the toy model's digit-free facts, or everyday passages
    wrapped in the prompt format (so template tokens appear in both groups and cancel)."""
    if loaded.native_problems == "toy":
        from yfpo_core.problems.synthetic import generate_toy_nonmath

        return generate_toy_nonmath(n, seed=0)
    from yfpo_core.problems.nonmath import load_nonmath_texts

    return [loaded.prompt_format.prompt(t) for t in load_nonmath_texts(limit=n)]


def _score_problem(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem, method: str,
                   steps: int) -> ProblemScores:
    if method in ("attnlrp", "grad_x_act"):
        return gradient_relevance(loaded, space, prepared, lrp=method == "attnlrp")
    if method == "integrated_gradients":
        return integrated_gradients(loaded, space, prepared, steps=steps)
    if method in ("activation", "contrast_math_nonmath"):
        return mean_activation(loaded, space, prepared)
    if method == "contrast_correct_wrong":
        return contrast_correct_wrong(loaded, space, prepared)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _standardised_difference(math: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """(mean_math - mean_other) / pooled standard deviation, with texts as the samples (``[texts, rows, width]``).

    Texts, not tokens, are the independent samples: a unit that fires on every digit has a small
    token-level effect size (digits are a few percent of tokens) but the same mean in every math text and
    zero in every non-math text, which is exactly the selectivity sought.
    """
    variance = (math.var(0, unbiased=True) * (len(math) - 1) + other.var(0, unbiased=True) * (len(other) - 1)) / max(
        len(math) + len(other) - 2, 1)
    return (math.mean(0) - other.mean(0)) / variance.sqrt().clamp_min(1e-6)


def attribute(model: LoadedModel, problems: Sequence[Problem], method: str = "attnlrp",
              target: str = "answer_logprob", *, units: UnitSpace | None = None, layers: Sequence[int] | None = None,
              steps: int = 8, contrast_texts: Sequence[str] | None = None, normalize: bool = False,
              keep_token_scores: bool | None = None, progress: ProgressCallback | None = None) -> AttributionResult:
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
        progress: Called after each problem.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not problems:
        raise ValueError("attribution needs at least one problem")
    space = units or neuron_space(model.model, layers)
    started = time.perf_counter()
    prepared = [prepare_problem(model, p, target) for p in problems]
    if keep_token_scores is None:
        size = sum(len(p.tokens) for p in prepared) * space.n_rows * space.width * 2
        keep_token_scores = size <= TOKEN_MAP_BUDGET_BYTES
    texts = list(contrast_texts) if contrast_texts is not None else (
        default_contrast_texts(model, len(problems)) if method == "contrast_math_nonmath" else [])
    total_steps = len(prepared) + len(texts)

    totals, token_maps, token_strings, extras, other_means = [], {}, {}, [], []
    with model.lock:
        for i, item in enumerate(prepared):
            scores = _score_problem(model, space, item, method, steps)
            total = scores.total
            if normalize:
                total = total / total.abs().sum().clamp_min(1e-12)
            totals.append(total.float().cpu())
            extras.append(scores.extras)
            if keep_token_scores:
                token_maps[item.problem_id] = scores.tokens.float().cpu()
                token_strings[item.problem_id] = [model.decode([t]) for t in scores.token_ids]
            report(progress, i + 1, total_steps, f"{method} {item.problem_id}")
        for j, text in enumerate(texts):
            other_means.append(activations(model, space, tuple(model.encode_prompt(text))).float().mean(0).cpu())
            report(progress, len(prepared) + j + 1, total_steps, "non-math texts")

    per_problem = torch.stack(totals)
    if method == "contrast_math_nonmath":
        if len(other_means) < 2 or len(per_problem) < 2:
            raise ValueError("contrast_math_nonmath needs at least 2 problems and 2 non-math texts")
        others = torch.stack(other_means)
        scores = _standardised_difference(per_problem, others)
        per_problem = per_problem - others.mean(0)  # each problem's mean activation above the non-math mean
    else:
        scores = per_problem.mean(0)
    params = {"steps": steps, "normalize": normalize, "n_problems": len(problems), "n_contrast_texts": len(texts),
              "seconds": round(time.perf_counter() - started, 2)}
    budgets = [e["relevance_budget"] for e in extras if "relevance_budget" in e]
    if budgets:
        params["relevance_budget_mean"] = float(torch.tensor(budgets).nanmean())
        params["relevance_budget"] = budgets
    return AttributionResult(
        scores=scores.float().cpu(), per_problem=per_problem, problem_ids=[p.problem_id for p in prepared],
        space=space, method=method, target=target, model_name=model.name, model_fingerprint=model.fingerprint,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), params=params,
        token_scores=token_maps, tokens=token_strings)


def token_scores(model: LoadedModel, problem: Problem, method: str, target: str = "answer_logprob",
                 units: UnitSpace | None = None, steps: int = 8) -> tuple[list[str], torch.Tensor]:
    """Per-token scores ``[pos, rows, width]`` of one problem (and its token strings), for drill-down."""
    space = units or neuron_space(model.model)
    prepared = prepare_problem(model, problem, target)
    with model.lock:
        scores = _score_problem(model, space, prepared, "activation" if method == "contrast_math_nonmath" else method,
                                steps)
    return [model.decode([t]) for t in scores.token_ids], scores.tokens.float().cpu()
