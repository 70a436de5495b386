"""Held-out metrics of a policy whose lower blocks are frozen: answer ranking and the probe set's margin.

Both read the held-out problems through the frozen lower blocks once (per base model, start layer and
problem list, shared by every run from the same base) and then run only the trainable blocks, so the
evaluation of each step costs what those blocks cost:

* **Answer ranking** (``eval/ranking_accuracy``, ``eval/gold_logprob``, ``eval/mean_margin``): the same
  numbers as :func:`yfpo_core.scoring.evaluate.answer_ranking` on the policy (:mod:`yfpo_core.scoring.logprobs`'
  ``continuation_states``; tested to 1e-5).
* **The probe's neuron margin** (``eval/neuron_margin``): the user's set (never the random control that a
  run may train on) on pairs made from the held-out problems (gold solution against a wrong final answer),
  with the training readout's pooling, statistics and signs. It tells whether the units' preference for
  the right answer moved on problems the run never saw.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from yfpo_core.progress import ProgressCallback, phase, report
from yfpo_core.scoring.evaluate import RankingReport, build_ranking_item, exact_match, ranking_row
from yfpo_core.scoring.logprobs import continuation_logprobs, continuation_logprobs_from_states, continuation_states
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import sequence_length
from yfpo_core.training.shared_cache import digest, shared

PROBE_BATCH_PAIRS = 8


class HeldOutEval:
    """Held-out ranking and probe margin for one trainer (see the module docstring)."""

    def __init__(self, trainer: Any) -> None:
        # A weak reference: the trainer owns this object, and a cycle would keep the trainer's model copy
        # (hundreds of MB) alive until Python's cycle collector happens to run.
        self.trainer = weakref.proxy(trainer)
        self._states: list | None = None
        self._probe_batches: list | None = None
        self.last: dict[str, list] = {}  # per-problem rows of the latest evaluation (for paired statistics)

    def _ranking_states(self, progress: ProgressCallback | None = None) -> list:
        t = self.trainer
        base = t.policy
        key = ("ranking-states", t.base_fingerprint, t.start_layer,
               tuple(p.id + p.question + p.solution for p in t.eval_problems))

        def make() -> list:
            out, frozen = [], phase(progress, "frozen blocks", len(t.eval_problems)) if t.start_layer >= 1 else None
            for problem in t.eval_problems:
                item = build_ranking_item(problem, base.prompt_format)
                context = base.encode_prompt(item.context)
                continuations = [base.encode(c) for c in item.continuations]
                states = continuation_states(t.model, context, continuations, t.start_layer,
                                             base.pad_token_id) if t.start_layer >= 1 else (context, continuations)
                out.append((problem, item, states))
                report(frozen, len(out), len(t.eval_problems))
            return out

        if self._states is None:
            self._states = shared(key, make)
        return self._states

    @torch.no_grad()
    def ranking(self, progress: ProgressCallback | None = None) -> dict[str, float]:
        t = self.trainer
        ranked = RankingReport()
        items = self._ranking_states(progress)
        scoring = phase(progress, "answer ranking", len(items))
        for problem, item, states in items:
            if isinstance(states, tuple):  # nothing frozen below: the whole model runs
                scores = continuation_logprobs(t.model, *states, t.policy.pad_token_id)
            else:
                scores = continuation_logprobs_from_states(t.model, states)
            ranked.rows.append(ranking_row(problem, item, scores))
            report(scoring, len(ranked.rows), len(items))
        self.last["ranking"] = [{k: r[k] for k in ("id", "correct", "gold_logprob", "margin")} for r in ranked.rows]
        summary = ranked.summary()
        return {M.EVAL_RANKING_ACCURACY: summary["ranking_accuracy"], M.EVAL_GOLD_LOGPROB: summary["gold_logprob"],
                M.EVAL_MEAN_MARGIN: summary["mean_margin"]}

    def _held_out_batches(self) -> list:
        from yfpo_core.training.batching import make_batches
        from yfpo_core.training.pairs import corrupted_pairs

        t = self.trainer
        if self._probe_batches is None:
            pairs = corrupted_pairs(t.eval_problems, t.policy.prompt_format, mode="final", seed=0)
            max_length = sequence_length(t.config.max_length, t.model.cfg.n_ctx)
            self._probe_batches = [b.to(t.device) for b in make_batches(t.policy, pairs, PROBE_BATCH_PAIRS,
                                                                         max_length)] if pairs else []
        return self._probe_batches

    @torch.no_grad()
    def probe_margin(self, progress: ProgressCallback | None = None) -> float | None:
        """Mean probe margin over the held-out pairs under the current policy (None without a probe set)."""
        t = self.trainer
        if not t.probe_layout.units:
            return None
        values, batches = [], self._held_out_batches()
        margins = phase(progress, "neuron margin", len(batches))
        for batch in batches:
            acts = t.unit_activations(batch, t.probe_layout)
            values.append(t.probe_readout.margin(acts, batch))
            report(margins, len(values), len(batches))
        if not values:
            return None
        per_pair = torch.cat(values)
        self.last["neuron_margin"] = [{"id": pid, "neuron_margin": float(v)} for pid, v in
                                      zip([i for b in self._held_out_batches() for i in b.pair_ids], per_pair,
                                          strict=True)]
        return float(per_pair.mean())

    def metrics(self) -> dict[str, float]:
        out = self.ranking()
        margin = self.probe_margin()
        if margin is not None:
            out[M.EVAL_NEURON_MARGIN] = margin
        return out


@torch.no_grad()
def evaluate_policy(trainer: Any, exact: bool = False, progress: ProgressCallback | None = None) -> dict[str, float]:
    """Held-out answer ranking, the probe's margin (and exact match when ``exact``) of the current policy.

    Before the first step the policy is the base model, so each part is shared with every run from the
    same base (:func:`~yfpo_core.training.shared_cache.shared`), keyed by exactly what it depends on: the
    ranking and exact match by the problems only (the same for every arm and seed of an experiment), the probe
    margin also by the probe units and their readout (statistics and signs come from the run's training pairs).
    ``progress`` hears each part (answer ranking, neuron margin, exact match) with its count."""
    fresh = trainer.steps_taken == 0

    def once(key: tuple, make):  # the base model's value is shared; a trained policy's is its own
        return shared(key, make) if fresh else make()

    out: dict[str, float] = {}
    held_out = trainer.held_out
    if held_out is not None:
        problems = tuple(p.id + p.question + p.solution for p in trainer.eval_problems)
        ranking, rows = once(("eval-ranking", trainer.base_fingerprint, problems),
                             lambda: (held_out.ranking(progress), held_out.last["ranking"]))
        out.update(ranking)
        held_out.last["ranking"] = rows
        if trainer.probe_layout.units:
            r = trainer.probe_readout
            key = ("eval-probe", trainer.base_fingerprint, trainer.start_layer, problems,
                   trainer.units_key(trainer.probe_layout.groups_from(0), trainer.probe_layout),
                   digest(r.mean, r.std, r.signs), r.pooling, r.standardize)

            def probe() -> tuple[float | None, list]:
                margin = held_out.probe_margin(progress)
                return margin, held_out.last.get("neuron_margin", []) if margin is not None else []

            margin, rows = once(key, probe)
            if margin is not None:
                out[M.EVAL_NEURON_MARGIN] = margin
                held_out.last["neuron_margin"] = rows
    if exact and trainer.exact_problems:
        key = ("eval-exact", trainer.base_fingerprint, tuple(p.id + p.question for p in trainer.exact_problems))
        accuracy, rows = once(key, lambda: _exact_match(trainer, phase(progress, "exact match")))
        out[M.EVAL_EXACT_MATCH] = accuracy
        if held_out is not None:
            held_out.last["exact"] = rows
    return out


def _exact_match(trainer: Any, progress: ProgressCallback | None = None) -> tuple[float, list[dict[str, Any]]]:
    result = exact_match(trainer.policy, trainer.exact_problems, progress=progress)
    return result.accuracy, [{"id": r["id"], "correct": r["correct"]} for r in result.rows]
