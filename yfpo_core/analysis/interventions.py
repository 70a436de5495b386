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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from yfpo_core.distributed import Distributed
from yfpo_core.scoring.evaluate import RankingReport, answer_ranking, build_ranking_item
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, part
from yfpo_core.units.unit import Unit

InterventionKind = Literal["zero", "mean", "scale", "clamp", "add"]
METRICS = ("ranking_accuracy", "gold_logprob", "mean_margin")


@dataclass(frozen=True)
class Intervention:
    """What to do to each selected unit's activation.

    ``zero``: set to 0. ``mean``: set to its mean over reference text (``means``). ``scale``: multiply by
    ``factor``. ``clamp``: set to ``value``. ``add``: add ``value`` (steering, :mod:`yfpo_core.analysis.steering`).
    """

    kind: InterventionKind = "zero"
    factor: float = 0.0
    value: float = 0.0
    means: dict[str, torch.Tensor] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "mean", "scale", "clamp", "add"):
            raise ValueError(f"unknown intervention {self.kind!r}: use zero, mean, scale, clamp or add")


def group_by_hook(units: Sequence[Unit]) -> dict[str, list[int]]:
    """Neuron indices by hook (features are grouped by :func:`intervened` through their SAE)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for unit in units:
        if unit.kind != "neuron":
            raise ValueError(f"{unit.label} is an SAE feature: use intervened(..., sae=...) for features")
        groups[unit.hook_name].append(unit.index)
    return dict(groups)


def _apply(x: torch.Tensor, index: torch.Tensor, intervention: Intervention, means: torch.Tensor | None
           ) -> torch.Tensor:
    idx = index.to(x.device)
    x = x.clone()
    if intervention.kind == "zero":
        x[..., idx] = 0.0
    elif intervention.kind == "scale":
        x[..., idx] = x[..., idx] * intervention.factor
    elif intervention.kind == "clamp":
        x[..., idx] = intervention.value
    elif intervention.kind == "add":
        x[..., idx] = x[..., idx] + intervention.value
    else:
        x[..., idx] = means.to(x.device, x.dtype)[idx]
    return x


@contextmanager
def intervened(model: LoadedModel, units: Sequence[Unit], intervention: Intervention, sae: Any = None
               ) -> Iterator[None]:
    """While active, ``intervention`` applies to ``units`` (neurons through hooks; SAE features through the
    spliced ``sae``, a :class:`yfpo_core.saes.sae.LoadedSAE`). Holds the model's lock."""
    neurons = [u for u in units if u.kind == "neuron"]
    features = [u for u in units if u.kind == "sae_feature"]
    with ExitStack() as stack:
        stack.enter_context(model.lock)
        if neurons:
            stack.enter_context(model.model.hooks(fwd_hooks=intervention_hooks(neurons, intervention)))
        if features:
            if sae is None:
                raise ValueError("interventions on SAE features need the SAE (sae=load_sae(...))")
            from yfpo_core.saes.sae import SAESpace

            space = SAESpace(sae)
            index = torch.tensor(sorted({u.index for u in features}))
            means = intervention.means.get(space.hook_names[0]) if intervention.means else None
            if intervention.kind == "mean" and means is None:
                raise ValueError("a mean ablation needs the features' means (see unit_means)")
            stack.enter_context(space.reading(model.model, lambda name, f: _apply(f, index, intervention, means)))
        yield


def intervention_hooks(units: Sequence[Unit], intervention: Intervention) -> list[tuple[str, Callable]]:
    """Forward hooks applying ``intervention`` to ``units`` (neurons, grouped by their hook)."""
    if intervention.kind == "mean" and intervention.means is None:
        raise ValueError("a mean ablation needs the units' means (see unit_means)")
    hooks = []
    for hook_name, indices in group_by_hook(units).items():
        index = torch.tensor(sorted(set(indices)))

        def apply(x: torch.Tensor, hook: Any, index: torch.Tensor = index) -> torch.Tensor:
            means = intervention.means[hook.name] if intervention.means else None
            return _apply(x, index, intervention, means)

        hooks.append((hook_name, apply))
    return hooks


@torch.no_grad()
def unit_means(model: LoadedModel, problems: Sequence[Problem], space: Any, dist: Distributed | None = None
               ) -> dict[str, torch.Tensor]:
    """Mean activation of every unit of ``space`` (a :class:`UnitSpace`) over all tokens of the problems'
    ranking contexts (question and gold solution up to the answer): the reference for mean ablation.

    With ``dist``, each process sums its share of the problems and every process gets the same means
    (the sums are added in rank order: equal to one process's to float rounding)."""
    from yfpo_core.attribution.methods import activations

    dist = dist or Distributed()
    sums, count = torch.zeros(space.n_rows, space.width), 0
    for i in dist.shard_by_cost([p.size for p in problems]):
        item = build_ranking_item(problems[i], model.prompt_format)
        acts = activations(model, space, tuple(model.encode_prompt(item.context)))  # [pos, rows, width]
        sums = sums + acts.sum(0).float().cpu()
        count += acts.shape[0]
    if dist.world > 1:
        parts = dist.exchange((sums, count))
        sums, count = sum((part[0] for part in parts[1:]), parts[0][0]), sum(part[1] for part in parts)
    mean = sums / max(count, 1)
    return {name: mean[row] for row, name in enumerate(space.hook_names)}


def random_unit_sets(units: Sequence[Unit], widths: dict[str, int], n_sets: int, seed: int = 0,
                     exclude: Sequence[Unit] = ()) -> list[list[Unit]]:
    """``n_sets`` random sets with as many units per hook (and kind) as ``units``, none in ``exclude``.

    ``widths`` maps each hook to its number of units (``d_mlp`` for neurons, ``d_sae`` for features)."""
    rng = random.Random(seed)
    banned = {(u.kind, u.hook_name, u.index) for u in exclude}
    groups: dict[tuple[str, str, str | None], int] = defaultdict(int)
    for u in units:
        groups[(u.kind, u.hook_name, u.sae_id)] += 1
    sets = []
    for _ in range(n_sets):
        chosen = []
        for (kind, hook, sae_id), count in groups.items():
            pool = [i for i in range(widths[hook]) if (kind, hook, i) not in banned]
            if len(pool) < count:
                raise ValueError(f"{hook} has only {len(pool)} units outside the set; cannot draw {count}")
            chosen += [Unit(kind, hook, i, sae_id=sae_id) for i in rng.sample(pool, count)]
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
    processes: int = 1  # how many processes of a data-parallel run computed it

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
                "tested": self.tested, "random": self.random, "rows": self.rows(), "processes": self.processes}


def _metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    summary = RankingReport(rows=list(rows)).summary()
    return {"ranking_accuracy": summary["ranking_accuracy"], "gold_logprob": summary["gold_logprob"],
            "mean_margin": summary["mean_margin"]}


def _ranking_rows(model: LoadedModel, problems: Sequence[Problem], units: Sequence[Unit] | None,
                  intervention: Intervention | None, sae: Any,
                  progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
    context = intervened(model, units, intervention, sae) if units else nullcontext()
    with context:
        return answer_ranking(model, problems, progress=progress).rows


def ablation_test(model: LoadedModel, problems: Sequence[Problem], units: Sequence[Unit], *,
                  intervention: Intervention | None = None, n_random: int = 5, seed: int = 0, sae: Any = None,
                  progress: ProgressCallback | None = None) -> AblationReport:
    """Ablate ``units`` and ``n_random`` random same-size, same-layer sets; compare ranking metrics.

    Neurons and SAE features (with ``sae``, a :class:`yfpo_core.saes.sae.LoadedSAE`) are both supported."""
    report_ = ablation_test_sharded(Distributed(), model, problems, units, intervention=intervention,
                                    n_random=n_random, seed=seed, sae=sae, progress=progress)
    assert report_ is not None  # a single process is rank 0
    return report_


def ablation_test_sharded(dist: Distributed, model: LoadedModel, problems: Sequence[Problem], units: Sequence[Unit],
                          *, intervention: Intervention | None = None, n_random: int = 5, seed: int = 0,
                          sae: Any = None, progress: ProgressCallback | None = None) -> AblationReport | None:
    """:func:`ablation_test` as one process of a data-parallel run: the random sets are drawn from the seed
    on every process (the same sets), each process scores its share of the problems under every
    condition, and rank 0 computes the metrics from all problems' rows in problem order, as one process
    would. Returns the report on rank 0 and ``None`` elsewhere; ``progress`` counts this process's share."""
    if not units:
        raise ValueError("the ablation test needs at least one unit")
    intervention = intervention or Intervention("zero")
    widths = {u.hook_name: _width(model, u, sae) for u in units}
    if intervention.kind == "mean" and intervention.means is None:
        means: dict[str, torch.Tensor] = {}
        if any(u.kind == "neuron" for u in units):
            from yfpo_core.units.space import UnitSpace

            hooks = tuple(sorted({u.hook_name for u in units if u.kind == "neuron"}))
            means |= unit_means(model, problems, UnitSpace("neuron", hooks, int(model.model.cfg.d_mlp)), dist)
        if any(u.kind == "sae_feature" for u in units):
            from yfpo_core.saes.sae import SAESpace

            means |= unit_means(model, problems, SAESpace(sae), dist)
        intervention = Intervention("mean", means=means)
    random_sets = random_unit_sets(units, widths, n_random, seed=seed, exclude=units)
    mine = dist.shard_by_cost([p.size for p in problems])
    shard = [problems[i] for i in mine]
    conditions: list[tuple[str, Sequence[Unit] | None]] = [("baseline", None), ("tested set", units)]
    conditions += [(f"random set {k + 1}/{n_random}", s) for k, s in enumerate(random_sets)]
    columns = []  # one list of rows (one per problem of the shard) per condition
    n, total = len(shard), len(conditions) * len(shard)  # progress counts problems across every condition
    for k, (label, chosen) in enumerate(conditions):
        columns.append(_ranking_rows(model, shard, chosen, intervention if chosen else None, sae,
                                     part(progress, k * n, total, label)))
    gathered = dist.gather(mine, [tuple(column[j] for column in columns) for j in range(len(shard))])
    if gathered is None:
        return None
    metrics = [_metrics([per_problem[k] for per_problem in gathered]) for k in range(len(conditions))]
    return AblationReport(n_units=len(units), intervention=intervention.kind, baseline=metrics[0],
                          tested=metrics[1], random=metrics[2:], processes=dist.world)


def _width(model: LoadedModel, unit: Unit, sae: Any) -> int:
    if unit.kind == "sae_feature":
        if sae is None:
            raise ValueError("feature units need their SAE (sae=load_sae(...))")
        return sae.d_sae
    return int(model.model.cfg.d_mlp)
