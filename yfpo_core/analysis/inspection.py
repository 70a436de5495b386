"""What one unit does: where it fires, how often, what it writes, and what removing it costs.

* :func:`unit_activations` runs the problems (prompt + gold solution) once and keeps the unit's activation
  at every token; :func:`profile_unit` turns that into the top-activating problems and tokens with
  context, a histogram and the firing density.
* :func:`logit_effect` reads the unit's output weights through the unembedding (the direct path,
  ignoring the final norm's scale): the tokens it promotes and suppresses most.
* :func:`intervention_effect` measures answer-ranking accuracy and gold log-prob with the unit zeroed or
  scaled (the per-unit version of the ablation test).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from yfpo_core.scoring.evaluate import answer_ranking
from yfpo_core.analysis.interventions import Intervention, intervened
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units.space import check
from yfpo_core.units.unit import Unit


@dataclass
class UnitActivations:
    """A unit's activation on every token of every problem (prompt + gold solution)."""

    unit: Unit
    problem_ids: list[str]
    tokens: list[list[str]]
    values: list[torch.Tensor]  # one [pos] tensor per problem
    response_starts: list[int]

    def flat(self) -> torch.Tensor:
        return torch.cat(self.values) if self.values else torch.empty(0)


@dataclass
class UnitProfile:
    """Everything the Unit page and ``yfpo inspect`` show about one unit."""

    unit: Unit
    top_examples: list[dict[str, Any]]
    histogram_counts: list[int]
    histogram_edges: list[float]
    density: float          # fraction of tokens where the unit is active (above ``threshold``)
    threshold: float
    mean: float
    std: float
    max: float
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)


def space_for(model: LoadedModel, unit: Unit, sae: Any):
    """The unit space ``unit`` lives in (its SAE's features, or the MLP neurons of its hook), after checking that
    ``unit`` exists there."""
    from yfpo_core.units.space import UnitSpace

    if unit.kind == "sae_feature":
        if sae is None:
            raise ValueError(f"{unit.label} is an SAE feature: pass its SAE (sae=load_sae(...))")
        from yfpo_core.saes.sae import SAESpace

        check(unit, model, sae.d_sae)
        return SAESpace(sae)
    check(unit, model)
    return UnitSpace("neuron", (unit.hook_name,), int(model.model.cfg.d_mlp))


@torch.no_grad()
def unit_activations(model: LoadedModel, unit: Unit, problems: Sequence[Problem], sae: Any = None,
                     progress: ProgressCallback | None = None) -> UnitActivations:
    """Activation of ``unit`` (a neuron, or a feature of ``sae``) on each token of each problem's prompt and
    gold solution."""
    from yfpo_core.attribution.methods import activations

    space = space_for(model, unit, sae)
    fmt = model.prompt_format
    ids, tokens, values, starts = [], [], [], []
    with model.lock:
        for i, problem in enumerate(problems):
            prompt = model.encode_prompt(fmt.prompt(problem.question))
            sequence = prompt + model.encode(fmt.response(problem.solution))
            values.append(activations(model, space, tuple(sequence))[:, 0, unit.index].float().cpu())
            tokens.append([model.decode([t]) for t in sequence])
            ids.append(problem.id)
            starts.append(len(prompt))
            report(progress, i + 1, len(problems), unit.short_label)
    return UnitActivations(unit, ids, tokens, values, starts)


def logit_effect(model: LoadedModel, unit: Unit, k: int = 10, sae: Any = None
                 ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The ``k`` tokens whose logits the unit's output direction raises most, and the ``k`` it lowers most."""
    if unit.kind == "sae_feature":
        from yfpo_core.saes.sae import feature_logit_effect

        return feature_logit_effect(model, sae, unit.index, k)
    check(unit, model)
    with torch.no_grad():
        direction = model.model.blocks[unit.layer].mlp.W_out[unit.index]  # [d_model]
        effect = (direction @ model.model.W_U).float().cpu()  # [vocab]
        effect = effect - effect.mean()
    top = torch.topk(effect, k)
    bottom = torch.topk(-effect, k)
    return ([(model.decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices, strict=True)],
            [(model.decode([int(i)]), float(-v)) for v, i in zip(bottom.values, bottom.indices, strict=True)])


def profile_unit(model: LoadedModel, unit: Unit, problems: Sequence[Problem], *, top_n: int = 10,
                 context: int = 8, bins: int = 40, threshold: float = 0.0, sae: Any = None,
                 activations: UnitActivations | None = None, progress: ProgressCallback | None = None) -> UnitProfile:
    """Top-activating problems and tokens (with ``context`` tokens either side), histogram, density,
    logit effect. Pass ``activations`` to reuse a previous :func:`unit_activations` run."""
    acts = activations or unit_activations(model, unit, problems, sae=sae, progress=progress)
    flat = acts.flat()
    examples = []
    for pid, toks, vals, start in zip(acts.problem_ids, acts.tokens, acts.values, acts.response_starts, strict=True):
        pos = int(vals.argmax())
        lo, hi = max(0, pos - context), min(len(toks), pos + context + 1)
        examples.append({"problem_id": pid, "max_activation": float(vals[pos]), "position": pos,
                         "token": toks[pos], "in_response": pos >= start,
                         "context": [(toks[j], float(vals[j])) for j in range(lo, hi)]})
    examples.sort(key=lambda e: e["max_activation"], reverse=True)
    counts, edges = torch.histogram(flat, bins=bins) if flat.numel() else (torch.zeros(bins), torch.zeros(bins + 1))
    promoted, suppressed = logit_effect(model, unit, sae=sae)
    return UnitProfile(unit=unit, top_examples=examples[:top_n], histogram_counts=[int(c) for c in counts],
                       histogram_edges=[float(e) for e in edges], density=float((flat > threshold).float().mean()),
                       threshold=threshold, mean=float(flat.mean()), std=float(flat.std()), max=float(flat.max()),
                       promoted=promoted, suppressed=suppressed)


def intervention_effect(model: LoadedModel, units: Sequence[Unit], problems: Sequence[Problem],
                        interventions: Sequence[Intervention] = (Intervention("zero"), Intervention("scale", factor=2.0)),
                        sae: Any = None, progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
    """Answer-ranking accuracy and gold log-prob without intervention and with each intervention."""
    rows = []
    steps = [None, *interventions]
    for i, intervention in enumerate(steps):
        context = intervened(model, units, intervention, sae) if intervention else nullcontext()
        with context:
            summary = answer_ranking(model, problems).summary()
        label = "none" if intervention is None else (
            f"scale x{intervention.factor:g}" if intervention.kind == "scale" else intervention.kind)
        rows.append({"intervention": label, "ranking_accuracy": summary["ranking_accuracy"],
                     "gold_logprob": summary["gold_logprob"], "mean_margin": summary["mean_margin"]})
        report(progress, i + 1, len(steps), label)
    return rows
