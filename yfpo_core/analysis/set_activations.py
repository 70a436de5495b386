"""What a *set* of units does token by token, and how training moved it: the views the app draws.

The core's per-unit tools (:mod:`yfpo_core.analysis.inspection`) run the model once per unit. A neuron set has
tens of units, so these helpers read every unit of a set from a single forward (or backward) pass per
problem, through :func:`yfpo_core.attribution.token_scores` restricted to the layers the set touches:

* :func:`set_token_activations`: each unit's activation at every token of a problem's prompt and gold
  solution (the Problems page heatmap);
* :func:`set_token_relevance`: each unit's attribution relevance at every token, from a kept
  :class:`~yfpo_core.attribution.AttributionResult` map or recomputed for that one problem;
* :func:`compare_activations`: each unit's mean activation over the gold-solution tokens under several
  models (base vs. a fine-tuned checkpoint: did YFPO move the units it rewarded?).

Only MLP neurons for now; SAE features need the SAE spliced in (see ``UnitSpace.installed``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from yfpo_core.attribution import AttributionResult, UnitSpace, token_scores
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units.space import check
from yfpo_core.units.unit import Unit

__all__ = ["TokenMap", "compare_activations", "set_token_activations", "set_token_relevance"]


@dataclass
class TokenMap:
    """Per-token values of several units on one problem.

    Attributes:
        problem_id: The problem.
        tokens: The token strings, prompt first.
        units: The units, one column each of ``values``.
        values: ``[pos, n_units]``; NaN for a unit the source does not cover.
        response_start: Index of the first token of the gold solution (tokens before it are the prompt).
        kind: ``"activation"`` or ``"relevance"``.
        method: For relevance, the attribution method and target (``"grad_x_act / answer_logprob"``).
    """

    problem_id: str
    tokens: list[str]
    units: list[Unit]
    values: Float[torch.Tensor, "pos units"]
    response_start: int
    kind: str
    method: str = ""

    def response(self) -> TokenMap:
        """The same map cut to the gold solution's tokens."""
        return TokenMap(self.problem_id, self.tokens[self.response_start:], self.units,
                        self.values[self.response_start:], 0, self.kind, self.method)


def _neurons(units: Sequence[Unit]) -> list[Unit]:
    bad = [u.label for u in units if u.kind != "neuron"]
    if bad:
        raise ValueError(f"only MLP neurons can be read per token for now, not {', '.join(bad[:3])}")
    return list(units)


def space_for(model: LoadedModel, units: Sequence[Unit]) -> UnitSpace:
    hooks = tuple(sorted({u.hook_name for u in units}, key=lambda h: int(h.split(".")[1])))
    for u in units:
        check(u, model)
    return UnitSpace("neuron", hooks, int(model.model.cfg.d_mlp))


def _columns(space: UnitSpace, maps: torch.Tensor, units: Sequence[Unit]) -> torch.Tensor:
    """``[pos, rows, width]`` -> ``[pos, n_units]`` (NaN where a unit's hook is not a row of ``space``)."""
    out = torch.full((maps.shape[0], len(units)), float("nan"))
    rows = {h: i for i, h in enumerate(space.unit_hook_names)}
    for j, u in enumerate(units):
        if u.hook_name in rows and u.index < maps.shape[2]:
            out[:, j] = maps[:, rows[u.hook_name], u.index].float()
    return out


def _response_start(model: LoadedModel, problem: Problem) -> int:
    return len(model.encode_prompt(model.prompt_format.prompt(problem.question)))


def set_token_activations(model: LoadedModel, units: Sequence[Unit], problem: Problem) -> TokenMap:
    """Activation of each unit at every token of ``problem``'s prompt + gold solution (one forward pass)."""
    units = _neurons(units)
    if not units:
        raise ValueError("the set is empty: add units first")
    space = space_for(model, units)
    tokens, maps = token_scores(model, problem, "activation", "solution_logprob", units=space)
    return TokenMap(problem.id, tokens, units, _columns(space, maps, units), _response_start(model, problem),
                    "activation")


def set_token_relevance(model: LoadedModel, units: Sequence[Unit], problem: Problem, *,
                        result: AttributionResult | None = None, method: str = "grad_x_act",
                        target: str = "answer_logprob", steps: int = 8) -> TokenMap:
    """Relevance of each unit at every token of ``problem``.

    With ``result``, its kept per-token map is used when it has one for the problem (no model call), else
    the problem is recomputed with the result's method and target on the layers of ``units``. Without a
    result, ``method`` and ``target`` say how to compute it.
    """
    units = _neurons(units)
    if not units:
        raise ValueError("no units given")
    if result is not None:
        method, target = result.method, result.target
        if problem.id in result.token_scores:
            return TokenMap(problem.id, list(result.tokens[problem.id]), units,
                            _columns(result.space, result.token_scores[problem.id], units),
                            _response_start(model, problem), "relevance", f"{method} / {target}")
    space = space_for(model, units)
    tokens, maps = token_scores(model, problem, method, target, units=space, steps=steps)
    return TokenMap(problem.id, tokens, units, _columns(space, maps, units), _response_start(model, problem),
                    "relevance", f"{method} / {target}")


def compare_activations(models: Mapping[str, LoadedModel], units: Sequence[Unit], problems: Sequence[Problem], *,
                        progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
    """Mean activation of each unit over the gold-solution tokens of ``problems``, under each model.

    Returns one row per (unit, model): ``{"unit", "short", "model", "mean_activation", "per_problem"}``, where
    ``per_problem`` holds the mean over that problem's solution tokens (the solution is what the trainer's
    neuron margin pools over, so this is the quantity YFPO pushes).
    """
    units = _neurons(units)
    if not units or not problems:
        raise ValueError("compare_activations needs at least one unit and one problem")
    total, done = len(models) * len(problems), 0
    rows = []
    for name, model in models.items():
        per_problem = []
        for problem in problems:
            tmap = set_token_activations(model, units, problem).response()
            per_problem.append(tmap.values.mean(0) if len(tmap.tokens) else torch.full((len(units),), float("nan")))
            done += 1
            report(progress, done, total, f"{name}: {problem.id}")
        stacked = torch.stack(per_problem)  # [problems, units]
        for j, unit in enumerate(units):
            rows.append({"unit": unit.label, "short": unit.short_label, "model": name,
                         "mean_activation": float(stacked[:, j].mean()),
                         "per_problem": [float(v) for v in stacked[:, j]]})
    return rows
