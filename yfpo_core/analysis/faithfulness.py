"""Faithfulness curves: which attribution method finds the units the answer depends on most?

For every method, :func:`faithfulness_curves` ranks the units on the *locate* problems, then zeroes the
method's top-k units for each k (1, 5, 10, 20, 50, 100, 200, capped by how many units exist) and measures
answer-ranking accuracy and gold log-prob on *held-out* problems (never the ones the ranking was made
on; overlapping ids are refused). Each point has a control: ``n_random`` random sets with as many units
in each layer as the method's top-k, none of them in it (:func:`yfpo_core.analysis.interventions.random_unit_sets`),
so a curve that falls faster than its random band found units that matter beyond their layer. k = 0 is
the unablated model.

:func:`method_overlap` compares the methods' rankings: the Jaccard index of their top-100 sets and the
Spearman correlation of their full score vectors.

Under ``torchrun`` / ``accelerate launch`` (:func:`faithfulness_curves_sharded`) the locate problems and
the held-out problems are both sharded over the processes; rank 0 reduces, as in one process.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from yfpo_core.scoring.evaluate import RankingReport, answer_ranking
from yfpo_core.analysis.interventions import Intervention, intervened, random_unit_sets
from yfpo_core.distributed import Distributed
from yfpo_core.models.base import LoadedModel
from yfpo_core.attribution.registry import METHODS as ATTRIBUTION_METHODS, check_methods
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units.unit import Unit

KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 200)
CURVE_METRICS: tuple[str, ...] = ("ranking_accuracy", "gold_logprob")
OVERLAP_K = 100


def capped_ks(ks: Sequence[int], n_units: int) -> list[int]:
    """``ks`` cut to the units that exist, without repeats, ascending (k >= 1)."""
    if any(k < 1 for k in ks):
        raise ValueError("every k must be at least 1 (k = 0, the unablated model, is always measured)")
    return sorted({min(int(k), n_units) for k in ks})


def split_problems(problems: Sequence[Problem], n_locate: int) -> tuple[list[Problem], list[Problem]]:
    """The first ``n_locate`` problems to locate on, the rest held out (an error when either is empty)."""
    if not 0 < n_locate < len(problems):
        raise ValueError(f"cannot hold out problems: {len(problems)} problems, {n_locate} to locate on; "
                         "locate on fewer or load more")
    return list(problems[:n_locate]), list(problems[n_locate:])


def zeroed_metrics(model: LoadedModel, problems: Sequence[Problem], units: Sequence[Unit], sae: Any = None
                   ) -> dict[str, float]:
    """Answer-ranking accuracy and mean gold log-prob with ``units`` zeroed (none: the plain model)."""
    return curve_metrics(zeroed_rows(model, problems, units, sae))


def zeroed_rows(model: LoadedModel, problems: Sequence[Problem], units: Sequence[Unit], sae: Any = None
                ) -> list[dict[str, Any]]:
    """One answer-ranking row per problem with ``units`` zeroed (none: the plain model)."""
    if not problems:
        return []
    with intervened(model, units, Intervention("zero"), sae) if units else nullcontext():
        return answer_ranking(model, problems).rows


class HeldOutStates:
    """The held-out problems' answer ranking under many zeroed sets, each starting at its lowest block.

    Why: zeroing units in block ``l`` changes nothing below it, so one pass per problem keeps the residual
    at every block's input (:func:`~yfpo_core.scoring.logprobs.every_layer_states`) and each condition runs
    only the blocks from its lowest one up; the rows equal :func:`zeroed_rows`'s to float rounding (a
    test checks it). With nothing zeroed, only the last block runs."""

    def __init__(self, model: LoadedModel, problems: Sequence[Problem], sae: Any = None) -> None:
        from yfpo_core.scoring.evaluate import build_ranking_item
        from yfpo_core.scoring.logprobs import every_layer_states

        self.model, self.sae = model, sae
        self.items = []
        with model.lock, torch.no_grad():
            for problem in problems:
                item = build_ranking_item(problem, model.prompt_format)
                continuations = [model.encode(c) for c in item.continuations]
                states = every_layer_states(model.model, model.encode_prompt(item.context), continuations,
                                            model.pad_token_id)
                self.items.append((problem, item, states))

    def first_block(self, units: Sequence[Unit]) -> int:
        """The lowest block a zeroed set changes (the last block when the set is empty; a neuron's block, or
        the block of the hook an SAE reads and writes; 0 for a hook outside the blocks)."""
        from yfpo_core.units.unit import block_of

        if not units:
            return self.model.model.cfg.n_layers - 1
        blocks = [block_of(u.hook_name) for u in units]
        return 0 if None in blocks else min(b for b in blocks if b is not None)

    def rows(self, units: Sequence[Unit]) -> list[dict[str, Any]]:
        """One answer-ranking row per problem with ``units`` zeroed."""
        from yfpo_core.scoring.evaluate import ranking_row
        from yfpo_core.scoring.logprobs import continuation_logprobs_from_states

        start = self.first_block(units)
        with intervened(self.model, units, Intervention("zero"), self.sae) if units else nullcontext(), \
                torch.no_grad():
            return [ranking_row(problem, item, continuation_logprobs_from_states(self.model.model, states[start]))
                    for problem, item, states in self.items]


def curve_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The curves' metrics over answer-ranking rows."""
    summary = RankingReport(rows=list(rows)).summary()
    return {metric: float(summary[metric]) for metric in CURVE_METRICS}


@dataclass
class CurvePoint:
    """One method at one k: the metrics with its top-k zeroed and with each random set zeroed."""

    method: str
    k: int
    tested: dict[str, float]
    random: list[dict[str, float]]
    units: list[str] = field(default_factory=list)  # labels of the zeroed top-k
    random_units: list[list[str]] = field(default_factory=list)  # labels of each random set

    def random_mean(self, metric: str) -> float:
        return statistics.mean(r[metric] for r in self.random) if self.random else float("nan")

    def random_std(self, metric: str) -> float:
        return statistics.stdev(r[metric] for r in self.random) if len(self.random) > 1 else float("nan")


@dataclass
class FaithfulnessReport:
    """Every method's curve, the unablated baseline, the methods' overlap and what the run cost."""

    baseline: dict[str, float]
    points: list[CurvePoint]
    overlap: list[dict[str, Any]]
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    processes: int = 1  # how many processes of a data-parallel run computed it

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(p.method for p in self.points))

    def curve(self, method: str) -> list[CurvePoint]:
        return [p for p in self.points if p.method == method]

    def rows(self) -> list[dict[str, Any]]:
        """One row per method and k (k = 0 is the baseline), with the random sets' mean and spread."""
        out = []
        for method in self.methods:
            out.append({"method": method, "k": 0, **{m: self.baseline[m] for m in CURVE_METRICS},
                        **{f"random_{m}_{s}": (self.baseline[m] if s == "mean" else 0.0)
                           for m in CURVE_METRICS for s in ("mean", "std")}, "n_random": 0})
            for p in self.curve(method):
                out.append({"method": method, "k": p.k, **p.tested,
                            **{f"random_{m}_{s}": (p.random_mean(m) if s == "mean" else p.random_std(m))
                               for m in CURVE_METRICS for s in ("mean", "std")}, "n_random": len(p.random)})
        return out

    def to_csv(self) -> str:
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["method", "k"])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"format": "yfpo-faithfulness", "version": 1, "settings": self.settings, "baseline": self.baseline,
                "points": [{"method": p.method, "k": p.k, "tested": p.tested, "random": p.random, "units": p.units,
                            "random_units": p.random_units} for p in self.points],
                "rows": self.rows(), "overlap": self.overlap, "seconds": self.seconds, "processes": self.processes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaithfulnessReport:
        points = [CurvePoint(p["method"], int(p["k"]), dict(p["tested"]), list(p["random"]), list(p.get("units", [])),
                             list(p.get("random_units", []))) for p in data["points"]]
        return cls(dict(data["baseline"]), points, list(data["overlap"]), dict(data["settings"]),
                   dict(data.get("seconds", {})), int(data.get("processes", 1)))


def _ranks(values: torch.Tensor) -> torch.Tensor:
    order = values.argsort()
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (ties broken by position)."""
    ra, rb = _ranks(a.flatten().double()), _ranks(b.flatten().double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float(ra @ rb) / denominator if denominator > 0 else float("nan")


def method_overlap(results: dict[str, Any], k: int = OVERLAP_K, rank_by: str = "value") -> list[dict[str, Any]]:
    """For every pair of methods (an :class:`AttributionResult` each): Jaccard of the top-``k`` sets and the
    Spearman correlation of all scores."""
    names = list(results)
    tops = {name: {s.unit for s in results[name].top(k, rank_by)} for name in names}
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            union = tops[a] | tops[b]
            rows.append({"method_a": a, "method_b": b, "k": min(k, len(tops[a])),
                         "jaccard": len(tops[a] & tops[b]) / len(union) if union else float("nan"),
                         "spearman": spearman(results[a].scores, results[b].scores)})
    return rows


def faithfulness_curves(model: LoadedModel, locate: Sequence[Problem], heldout: Sequence[Problem],
                        methods: Sequence[str] = ATTRIBUTION_METHODS, *, target: str = "answer_logprob",
                        ks: Sequence[int] = KS, n_random: int = 2, seed: int = 0, rank_by: str = "value",
                        layers: Sequence[int] | None = None, sae: Any = None, steps: int = 4, batch_size: int = 1,
                        results: dict[str, Any] | None = None,
                        progress: ProgressCallback | None = None) -> FaithfulnessReport:
    """Faithfulness curves of ``methods`` (see the module docstring).

    Args:
        locate: Problems the units are ranked on.
        heldout: Problems the curves are measured on (no id in common with ``locate``).
        ks: Set sizes (capped by the number of units).
        n_random: Random same-layer sets per point.
        layers: Rank only the neurons of these layers (default all); ``sae`` ranks its features instead.
        batch_size: Locate problems per attribution pass (AttnLRP, grad x act). Larger is faster, but a
            problem's scores then depend on which problems share its pass (float rounding), and units whose
            scores nearly tie (there are many near zero) can trade places in the ranking and in the
            Spearman overlap. One at a time (the default) gives the same scores bit for bit however the
            problems are split over processes.
        results: Attribution results already computed on ``locate`` (by method); the rest are computed.
        progress: Called after each attribution and each evaluation.
    """
    report_ = faithfulness_curves_sharded(Distributed(), model, locate, heldout, methods, target=target, ks=ks,
                                          n_random=n_random, seed=seed, rank_by=rank_by, layers=layers, sae=sae,
                                          steps=steps, batch_size=batch_size, results=results, progress=progress)
    assert report_ is not None  # a single process is rank 0
    return report_


def faithfulness_curves_sharded(dist: Distributed, model: LoadedModel, locate: Sequence[Problem],
                                heldout: Sequence[Problem], methods: Sequence[str] = ATTRIBUTION_METHODS, *,
                                target: str = "answer_logprob", ks: Sequence[int] = KS, n_random: int = 2,
                                seed: int = 0, rank_by: str = "value", layers: Sequence[int] | None = None,
                                sae: Any = None, steps: int = 4, batch_size: int = 1,
                                results: dict[str, Any] | None = None, progress: ProgressCallback | None = None
                                ) -> FaithfulnessReport | None:
    """:func:`faithfulness_curves` as one process of a data-parallel run.

    Each method ranks the units with :func:`~yfpo_core.attribution.attribute_sharded` (every process scores
    its share of the locate problems, rank 0 reduces) and rank 0 sends the ranking to every process; the
    random sets are drawn from ``seed`` on every process (the same sets); each process then ranks the answers
    of its share of the held-out problems under every condition (none, each top-k, each random set) and
    rank 0 computes every point's metrics from all problems' rows in problem order, as one process would.
    ``results`` counts on rank 0 only. Returns the report on rank 0 and ``None`` elsewhere; ``progress``
    counts this process's share."""
    from yfpo_core.attribution import attribute_sharded
    from yfpo_core.units.space import neuron_space

    shared = {p.id for p in locate} & {p.id for p in heldout}
    if shared:
        raise ValueError(f"{len(shared)} held-out problems are also locate problems (e.g. {sorted(shared)[0]}): "
                         "the curves must be measured on problems the sets were not located on")
    if not heldout:
        raise ValueError("faithfulness curves need held-out problems")
    check_methods(methods)
    if sae is not None:
        from yfpo_core.saes.sae import SAESpace

        space = SAESpace(sae)
    else:
        space = neuron_space(model.model, layers)
    n_units = space.n_rows * space.width
    ks = capped_ks(ks, n_units)
    widths = {hook: space.width for hook in space.unit_hook_names}
    results = dict(results or {})
    todo = dist.exchange([m for m in methods if m not in results])[0]  # rank 0's results decide, for all
    total = len(todo) + 1 + len(methods) * len(ks) * (1 + n_random)
    done, seconds = 0, {"attribution": 0.0, "evaluation": 0.0}

    def step(message: str) -> None:
        nonlocal done
        done += 1
        report(progress, done, total, message)

    for method in todo:
        started = time.perf_counter()
        result = attribute_sharded(dist, model, list(locate), method, target, units=space, steps=steps,
                                   batch_size=batch_size)
        if result is not None:
            results[method] = result
        seconds["attribution"] += time.perf_counter() - started
        step(f"{method}: ranked")
    started = time.perf_counter()
    top = {m: [s.unit for s in results[m].top(max(ks), rank_by)] for m in methods} if dist.is_main else None
    ranked: dict[str, list[Unit]] = dist.exchange(top)[0]  # rank 0's ranking, on every process
    conditions: list[tuple[str, int, list[Unit], list[list[Unit]]]] = []  # method, k, its top-k, its random sets
    for method in methods:
        for k in ks:
            units = ranked[method][:k]
            try:
                sets = random_unit_sets(units, widths, n_random, seed=seed + 1000 * k, exclude=units)
            except ValueError:  # the top-k fill a layer: no disjoint random set of the same layers exists
                sets = []
            conditions.append((method, k, units, sets))
    mine = dist.shard_by_cost([p.size for p in heldout])
    scorer = HeldOutStates(model, [heldout[i] for i in mine], sae)
    columns = [scorer.rows([])]  # per condition, one row per problem of the shard
    step("baseline")
    for method, k, units, sets in conditions:
        columns.append(scorer.rows(units))
        step(f"{method} top {k}")
        for j, s in enumerate(sets):
            columns.append(scorer.rows(s))
            step(f"{method} top {k}: random set {j + 1}/{n_random}")
    gathered = dist.gather(mine, [tuple(column[j] for column in columns) for j in range(len(mine))])
    if gathered is None:
        return None
    metrics = iter([curve_metrics([per_problem[c] for per_problem in gathered]) for c in range(len(columns))])
    baseline = next(metrics)
    points = []
    for method, k, units, sets in conditions:
        tested = next(metrics)
        randoms = [next(metrics) for _ in sets]
        points.append(CurvePoint(method, k, tested, randoms, [u.label for u in units],
                                 [[u.label for u in s] for s in sets]))
    seconds["evaluation"] = time.perf_counter() - started
    settings = {"model": model.name, "model_fingerprint": model.fingerprint, "methods": list(methods),
                "target": target, "ks": ks, "n_random": n_random, "seed": seed, "rank_by": rank_by,
                "batch_size": batch_size,
                "units": space.to_dict() if sae is None else {"kind": "sae_feature", "sae_id": sae.sae_id},
                "n_units": n_units, "locate_ids": [p.id for p in locate], "heldout_ids": [p.id for p in heldout]}
    overlap = method_overlap({m: results[m] for m in methods}, rank_by=rank_by)
    return FaithfulnessReport(baseline, points, overlap, settings, {k: round(v, 2) for k, v in seconds.items()},
                              processes=dist.world)


def faithfulness_figure(report_: FaithfulnessReport, metric: str = "gold_logprob"):
    """One line per method over k (log axis; k = 0 drawn at the left edge as the unablated model) and a
    grey band: the random sets of every method pooled, mean ± one standard deviation at each k."""
    import plotly.graph_objects as go

    if metric not in CURVE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CURVE_METRICS)}")
    ks = sorted({p.k for p in report_.points})
    pooled = {k: [r[metric] for p in report_.points if p.k == k for r in p.random] for k in ks}
    band_k = [k for k in ks if pooled[k]]
    mean = [statistics.mean(pooled[k]) for k in band_k]
    std = [statistics.stdev(pooled[k]) if len(pooled[k]) > 1 else 0.0 for k in band_k]
    fig = go.Figure()
    if band_k:
        fig.add_trace(go.Scatter(x=band_k + band_k[::-1], y=[m + s for m, s in zip(mean, std, strict=True)]
                                 + [m - s for m, s in zip(mean, std, strict=True)][::-1], fill="toself",
                                 fillcolor="rgba(150,150,150,0.25)", line={"width": 0}, hoverinfo="skip",
                                 name="random same-layer sets (±1 sd)"))
        fig.add_trace(go.Scatter(x=band_k, y=mean, mode="lines", line={"color": "grey", "dash": "dot"},
                                 name="random sets, mean"))
    x0 = 0.7  # where k = 0 (the unablated model) is drawn on the log axis
    for method in report_.methods:
        curve = report_.curve(method)
        fig.add_trace(go.Scatter(x=[x0] + [p.k for p in curve], y=[report_.baseline[metric]]
                                 + [p.tested[metric] for p in curve], mode="lines+markers", name=method))
    label = {"gold_logprob": "gold log-prob (nats)", "ranking_accuracy": "answer-ranking accuracy"}[metric]
    fig.update_layout(height=420, title=f"Held-out {label} with each method's top-k units zeroed",
                      xaxis_title="k (units zeroed; leftmost point: none)", yaxis_title=label,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_xaxes(type="log")
    return fig
