"""Changing units during the forward pass, and the test that tells whether a ranking means anything.

:func:`intervention_hooks` turns a set of units and an :class:`Intervention` (zero, mean, scale or clamp)
into TransformerLens forward hooks that any scorer accepts. :func:`ablation_test` ablates the top units
of a ranking and several random sets of the same size drawn from the same layers (same number of units
per layer), and reports the change in answer-ranking accuracy and gold log-prob with the spread of the
random sets: a located set matters when its effect is far outside that spread.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from yfpo_core.evaluate import answer_ranking, build_ranking_item
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units import Unit

InterventionKind = Literal["zero", "mean", "scale", "clamp"]
METRICS = ("ranking_accuracy", "gold_logprob", "mean_margin")


@dataclass(frozen=True)
class Intervention:
    """What to do to each selected unit's activation.

    ``zero``: set to 0. ``mean``: set to its mean over reference text (``means``). ``scale``: multiply by
    ``factor``. ``clamp``: set to ``value``.
    """

    kind: InterventionKind = "zero"
    factor: float = 0.0
    value: float = 0.0
    means: dict[str, torch.Tensor] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "mean", "scale", "clamp"):
            raise ValueError(f"unknown intervention {self.kind!r}: use zero, mean, scale or clamp")


def group_by_hook(units: Sequence[Unit]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for unit in units:
        if unit.kind != "neuron":
            raise NotImplementedError("interventions on SAE features need the SAE spliced in (see saes.py)")
        groups[unit.hook_name].append(unit.index)
    return dict(groups)


def intervention_hooks(units: Sequence[Unit], intervention: Intervention) -> list[tuple[str, Callable]]:
    """Forward hooks applying ``intervention`` to ``units`` (neurons, grouped by their hook)."""
    if intervention.kind == "mean" and intervention.means is None:
        raise ValueError("a mean ablation needs the units' means (see unit_means)")
    hooks = []
    for hook_name, indices in group_by_hook(units).items():
        index = torch.tensor(sorted(set(indices)))

        def apply(x: torch.Tensor, hook: Any, index: torch.Tensor = index) -> torch.Tensor:
            idx = index.to(x.device)
            x = x.clone()
            if intervention.kind == "zero":
                x[..., idx] = 0.0
            elif intervention.kind == "scale":
                x[..., idx] = x[..., idx] * intervention.factor
            elif intervention.kind == "clamp":
                x[..., idx] = intervention.value
            else:
                x[..., idx] = intervention.means[hook.name].to(x.device, x.dtype)[idx]
            return x

        hooks.append((hook_name, apply))
    return hooks


@torch.no_grad()
def unit_means(model: LoadedModel, problems: Sequence[Problem], hook_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Mean activation of every unit at ``hook_names`` over all tokens of the problems' ranking contexts
    (question and gold solution up to the answer): the reference for mean ablation."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for problem in problems:
        item = build_ranking_item(problem, model.prompt_format)
        tokens = torch.tensor([model.encode_prompt(item.context)], device=model.model.cfg.device)
        _, cache = model.model.run_with_cache(tokens, names_filter=lambda n: n in hook_names, return_type=None)
        for name in hook_names:
            sums[name] = sums.get(name, 0) + cache[name][0].sum(0).float().cpu()
        count += tokens.shape[1]
    return {name: total / count for name, total in sums.items()}


def random_unit_sets(units: Sequence[Unit], widths: dict[str, int], n_sets: int, seed: int = 0,
                     exclude: Sequence[Unit] = ()) -> list[list[Unit]]:
    """``n_sets`` random sets with as many units per hook as ``units`` has, none of them in ``exclude``."""
    rng = random.Random(seed)
    banned = {(u.hook_name, u.index) for u in exclude}
    per_hook = {hook: len(indices) for hook, indices in group_by_hook(units).items()}
    sets = []
    for _ in range(n_sets):
        chosen = []
        for hook, count in per_hook.items():
            pool = [i for i in range(widths[hook]) if (hook, i) not in banned]
            if len(pool) < count:
                raise ValueError(f"{hook} has only {len(pool)} units outside the set; cannot draw {count}")
            chosen += [Unit("neuron", hook, i) for i in rng.sample(pool, count)]
        sets.append(chosen)
    return sets


@dataclass
class AblationReport:
    """Metrics with no intervention, with the tested set, and with each random set of the same size."""

    n_units: int
    intervention: str
    baseline: dict[str, float]
    tested: dict[str, float]
    random: list[dict[str, float]]

    def effect(self, metric: str) -> float:
        return self.tested[metric] - self.baseline[metric]

    def random_effects(self, metric: str) -> list[float]:
        return [r[metric] - self.baseline[metric] for r in self.random]

    def z_score(self, metric: str) -> float:
        """How many random-set standard deviations the tested effect lies from the random mean."""
        effects = self.random_effects(metric)
        if len(effects) < 2:
            return float("nan")
        spread, gap = statistics.stdev(effects), self.effect(metric) - statistics.mean(effects)
        if spread > 0:
            return gap / spread
        return 0.0 if gap == 0 else float("inf") if gap > 0 else float("-inf")

    def rows(self) -> list[dict[str, Any]]:
        """One row per metric: baseline, the tested set's effect, the random sets' effect mean ± std, z."""
        out = []
        for metric in METRICS:
            effects = self.random_effects(metric)
            out.append({
                "metric": metric, "baseline": self.baseline[metric], "tested_set": self.tested[metric],
                "effect": self.effect(metric),
                "random_effect_mean": statistics.mean(effects) if effects else float("nan"),
                "random_effect_std": statistics.stdev(effects) if len(effects) > 1 else float("nan"),
                "z": self.z_score(metric),
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n_units": self.n_units, "intervention": self.intervention, "baseline": self.baseline,
                "tested": self.tested, "random": self.random, "rows": self.rows()}


def _metrics(model: LoadedModel, problems: Sequence[Problem], hooks) -> dict[str, float]:
    summary = answer_ranking(model, problems, fwd_hooks=hooks).summary()
    return {"ranking_accuracy": summary["ranking_accuracy"], "gold_logprob": summary["gold_logprob"],
            "mean_margin": summary["mean_margin"]}


def ablation_test(model: LoadedModel, problems: Sequence[Problem], units: Sequence[Unit], *,
                  intervention: Intervention | None = None, n_random: int = 5, seed: int = 0,
                  progress: ProgressCallback | None = None) -> AblationReport:
    """Ablate ``units`` and ``n_random`` random same-size, same-layer sets; compare ranking metrics."""
    if not units:
        raise ValueError("the ablation test needs at least one unit")
    intervention = intervention or Intervention("zero")
    widths = {hook: _width(model, hook) for hook in group_by_hook(units)}
    if intervention.kind == "mean" and intervention.means is None:
        intervention = Intervention("mean", means=unit_means(model, problems, list(widths)))
    random_sets = random_unit_sets(units, widths, n_random, seed=seed, exclude=units)
    total = 2 + n_random
    baseline = _metrics(model, problems, None)
    report(progress, 1, total, "baseline")
    tested = _metrics(model, problems, intervention_hooks(units, intervention))
    report(progress, 2, total, "tested set")
    randoms = []
    for i, random_set in enumerate(random_sets):
        randoms.append(_metrics(model, problems, intervention_hooks(random_set, intervention)))
        report(progress, 3 + i, total, f"random set {i + 1}/{n_random}")
    return AblationReport(n_units=len(units), intervention=intervention.kind, baseline=baseline, tested=tested,
                          random=randoms)


def _width(model: LoadedModel, hook_name: str) -> int:
    if hook_name.endswith("mlp.hook_post"):
        return int(model.model.cfg.d_mlp)
    raise ValueError(f"unknown width for {hook_name}")
