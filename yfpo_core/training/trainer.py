"""The YFPO training loop: DPO plus the selected units' activation-margin reward, on a TransformerLens model.

What makes a step cheap on a CPU (measurements in ``bench/train_step.py``):

* **Reference log-probs once.** The frozen model's log-probs of every pair (and its unit activations,
  for standardisation, the reference margin and variant D) are computed before the first step, or per batch
  as the steps reach it when the run reads no units (:mod:`.reference`).
* **Frozen prefix.** Blocks below the lowest trainable block never change, so their output residual is
  computed once per batch under ``no_grad`` and cached; each step runs only the upper blocks with
  gradients (``start_at_layer``).
* **Unembed only what is scored.** The final norm and the 49k-token unembedding run only at the positions
  that predict response tokens.

The units' activations are read by forward hooks *inside* the policy's graph (``run_with_cache`` would
detach them), so the neuron term has gradients. The trainable part of the model goes through one
``nn.Module`` call (:class:`PolicyForward`), which ``accelerate`` wraps for multi-process training.
The trainer never touches files or UIs: it hands metrics, checkpoint state and the preparation's progress to
its caller (:mod:`yfpo_core.runs`). Its parts: :mod:`.forward` (where units are read), :mod:`.scope` (what trains),
:mod:`.shared_cache`, :mod:`.grad_share`, :mod:`.readout`, :mod:`.heldout` and :mod:`.optimizer_state`.
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, phase, report
from yfpo_core.training import metric_names as M
from yfpo_core.training.batching import PairBatch, make_batches
from yfpo_core.training.config import YFPOConfig, sequence_length
from yfpo_core.training.forward import (
    FROM_TOKENS,
    GroupKey,
    PolicyForward,
    UnitLayout,
    capture_hooks,
    unit_gradients,
)
from yfpo_core.training.grad_share import aux_gradients, vector_dot, vector_norm
from yfpo_core.training.guard import guarded_step
from yfpo_core.training.heldout import HeldOutEval, evaluate_policy
from yfpo_core.training.losses import LossOutput, dpo_loss, yfpo_loss
from yfpo_core.training.optimizer_state import load_optimizer_state, load_trainable, optimizer_state
from yfpo_core.training.reference import reference_work
from yfpo_core.training.readout import (
    UnitReadout,
    response_statistics,
    signs_from_gradient,
    signs_from_scores,
    unit_directions,
)
from yfpo_core.training.scope import frozen_saes, trainable_parameters
from yfpo_core.training.shared_cache import digest, shared
from yfpo_core.units.unit import Unit


class NonFiniteLossError(YfpoError):
    """The loss or the gradient became NaN or infinite; the step was not applied."""


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class YFPOTrainer:
    """Trains a copy of ``base`` (never ``base`` itself, which may be shared by the app's sessions).

    Args:
        config: The run configuration.
        base: The loaded base model (reference policy).
        train_pairs: Preference pairs (objects with ``id``, ``question``, ``chosen``, ``rejected``).
        eval_problems: Held-out problems for ``eval/`` metrics.
        units: The selected units (empty for plain DPO) and their attribution ``scores`` (for signs): MLP
            neurons and SAE features (a feature's value is its SAE's encoder output at the SAE's hook).
        accelerator: An ``accelerate.Accelerator`` (multi-process); ``None`` for a single process.
        saes: sae_id -> :class:`yfpo_core.saes.sae.LoadedSAE` for every SAE the features of ``units`` come from.
            The trainer uses frozen private copies: the SAEs only read the features (the model's forward is
            unchanged), and the neuron term's gradient reaches the model's weights through the SAE's input.
    """

    def __init__(self, config: YFPOConfig, base: LoadedModel, train_pairs: Sequence, eval_problems: Sequence[Problem],
                 units: Sequence[Unit] = (), scores: Sequence[float | None] | None = None, accelerator: Any = None,
                 exact_problems: Sequence[Problem] = (), saes: Mapping[str, Any] | None = None,
                 directions: Sequence[float | None] | None = None, probe_units: Sequence[Unit] | None = None,
                 probe_scores: Sequence[float | None] | None = None,
                 probe_directions: Sequence[float | None] | None = None,
                 progress: ProgressCallback | None = None) -> None:
        if not train_pairs:
            raise YfpoError("no training pairs: check the problem set or the pairs file")
        if config.uses_neuron_term and not units:
            raise YfpoError("lam > 0 (or target_share > 0) needs at least one unit")
        self.config = config
        self.accelerator = accelerator
        self.base_fingerprint = (base.name, base.fingerprint, config.device)
        self.steps_taken = 0  # optimizer steps applied since the policy was copied from the base (or loaded)
        self.rank = accelerator.process_index if accelerator else 0
        self.world = accelerator.num_processes if accelerator else 1
        _seed_everything(config.seed)
        self.layout = UnitLayout.build(list(units), scores, directions)
        # The probe: the set whose held-out margin eval/neuron_margin reports; the user's set even when the
        # run trains on a random control set (or on none, for DPO), so every arm is measured on the same units.
        self.probe_layout = UnitLayout.build(list(probe_units), probe_scores, probe_directions) \
            if probe_units is not None else self.layout
        self.device = torch.device(config.device)
        # Another thread's hooks must not be copied into the policy, nor into the SAEs (the app's, shared).
        with base.lock:
            model = copy.deepcopy(base.model)
            frozen = frozen_saes(self.layout.units + self.probe_layout.units, saes or {})
        model.train(False)  # no dropout in these models; keep eval-mode semantics
        self.saes = {k: sae.to(self.device) for k, sae in frozen.items()}
        # Cache keys name an SAE by its weights and config, not only its id (two folders may share a name).
        self._sae_digest = {k: digest(*sae.state_dict().values()) + str(sorted(sae.cfg.to_dict().items()))
                            for k, sae in self.saes.items()}
        self.params, self.start_layer = trainable_parameters(model, config, self.layout)
        self.policy = base.with_model(model, name=f"{base.name}+yfpo")
        self.eval_problems = list(eval_problems)
        self.exact_problems = list(exact_problems)
        self.units_below = self.layout.groups_below(max(self.start_layer, 0))
        if config.lam > 0 and self.layout.units and not self.layout.groups_from(max(self.start_layer, 0)):
            warnings.warn(f"every unit of the set sits below layer {self.start_layer}, the lowest trainable block "
                          f"(trainable={config.trainable}): training cannot change their activations, so the "
                          "neuron term is a constant and the run trains like DPO. Raise last_k (or use "
                          "trainable=all) to reach the units' layers.", stacklevel=2)
        max_length = sequence_length(config.max_length, model.cfg.n_ctx)
        self.batches = [b.to(self.device) for b in make_batches(base, list(train_pairs), config.batch_pairs,
                                                               max_length)]
        self.forward_module = PolicyForward(model, self.start_layer, self.layout, self.saes)
        groups = [{"params": [p for _, p, m in self.params if m is None], "weight_decay": config.weight_decay},
                  {"params": [p for _, p, m in self.params if m is not None], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
        if accelerator is not None:
            self.forward_module, self.optimizer = accelerator.prepare(self.forward_module, self.optimizer)
        self._prefix: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}
        self.direction_gradient: torch.Tensor | None = None
        self._progress = progress  # the preparation's phases report here (frozen prefix, reference, signs)
        self._reference()
        self.probe_readout = self.readout if self.probe_layout is self.layout else self._probe_readout()
        self.held_out = HeldOutEval(self) if self.eval_problems else None

    # -- one-off work ------------------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self.policy.model

    @torch.no_grad()
    def prefix_for(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Residual at ``start_layer`` and the activations of units below it, for batch ``i`` (cached, and
        shared with other runs from the same base on the same batch)."""
        if i not in self._prefix:
            batch = self.batches[i]
            key = ("prefix", self.base_fingerprint, self.start_layer, self.units_key(self.units_below),
                   digest(batch.tokens))
            self._prefix[i] = shared(key, lambda: self._compute_prefix(i))
        return self._prefix[i]

    def units_key(self, groups: Sequence[GroupKey], layout: UnitLayout | None = None) -> tuple:
        """The cache identity of some unit groups: hook, kind (the SAE's id and weights digest, or None for
        neurons) and indices, so that neurons and features with the same hook and indices never share."""
        layout = layout or self.layout
        return tuple((hook, sae_id, self._sae_digest.get(sae_id) if sae_id else None,
                      tuple(layout.index_by_group[(hook, sae_id)].tolist())) for hook, sae_id in groups)

    def _compute_prefix(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The frozen blocks' output for batch ``i`` (no gradients; the blocks never train)."""
        return self._prefix_of(self.batches[i], self.layout)

    @torch.no_grad()
    def _prefix_of(self, batch: PairBatch, layout: UnitLayout) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Residual at ``start_layer`` of ``batch`` and the activations of ``layout``'s units below it."""
        below = layout.groups_below(max(self.start_layer, 0))
        captured: dict[GroupKey, torch.Tensor] = {}
        resid = None
        if self.start_layer != FROM_TOKENS:
            hooks = capture_hooks(layout, below, self.saes, captured)
            with self.model.hooks(fwd_hooks=hooks):
                resid = self.model(batch.tokens, stop_at_layer=self.start_layer)
        low = torch.cat([captured[g] for g in below], dim=-1) if below else \
            torch.zeros(batch.tokens.shape[0], batch.tokens.shape[1], 0, device=batch.tokens.device)
        return resid, low

    @torch.no_grad()
    def unit_activations(self, batch: PairBatch, layout: UnitLayout) -> torch.Tensor:
        """``layout``'s unit activations on ``batch`` under the current policy, ``[rows, T, u]``: the frozen
        part from a cache shared by every run from the same base, the rest from the trainable blocks."""
        key = ("prefix", self.base_fingerprint, self.start_layer,
               self.units_key(layout.groups_below(max(self.start_layer, 0)), layout), digest(batch.tokens))
        resid, low = shared(key, lambda: self._prefix_of(batch, layout))
        _, high = PolicyForward(self.model, self.start_layer, layout, self.saes)(
            resid, batch.tokens, batch.response_mask, logprobs=False)
        return torch.cat([low, high], dim=-1)

    def policy_pass(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batches[i]
        resid, low = self.prefix_for(i)
        logps, high = self.forward_module(resid, batch.tokens, batch.response_mask)
        return logps, torch.cat([low, high], dim=-1)

    def _reference(self) -> None:
        """Frozen prefix, reference log-probs and unit activations per batch, then the readout (statistics,
        signs); per batch as the steps reach it when no unit is read (:mod:`.reference`)."""
        self.readout, self.ref_logps, self.ref_scores = reference_work(self, self._progress)

    def unit_signs(self, layout: UnitLayout) -> torch.Tensor:
        """Per-unit +1/-1 in ``layout``'s column order, from ``config.sign`` (see :mod:`.readout`)."""
        n = len(layout.units)
        source = self.config.sign
        if n == 0 or source == "none":
            return torch.ones(n)
        if source == "score":
            return signs_from_scores(layout.scores, n)
        if source == "set":
            stored = layout.directions
            if stored is not None and all(v is not None for v in stored):
                return torch.tensor([float(v) for v in stored])  # type: ignore[arg-type]
            warnings.warn("sign=set: the neuron set stores no direction for some units; using the gradient "
                          "sign on the training pairs instead (sign=pairs)", stacklevel=3)
        key = ("directions", self.base_fingerprint, self.start_layer, self.config.pooling,
               self.units_key(layout.groups_from(0), layout),
               digest(*[t for b in self.batches for t in (b.tokens, b.response_mask)]))
        signs_progress = phase(self._progress, "unit signs", len(self.batches))
        def gradients(i: int) -> torch.Tensor:  # [rows, T, u] of batch i
            batch, (resid, _) = self.batches[i], self.prefix_for(i)
            report(signs_progress, i, len(self.batches))
            return unit_gradients(self.model, self.start_layer, layout, self.saes, batch, resid)

        gradient = shared(key, lambda: unit_directions(gradients, self.batches, self.config.pooling))
        if layout is self.layout:
            self.direction_gradient = gradient
        return signs_from_gradient(gradient)

    @property
    def unit_mean(self) -> torch.Tensor:
        """``[u]`` base-model mean of each unit over the training responses (column order)."""
        return self.readout.mean

    @property
    def unit_std(self) -> torch.Tensor:
        return self.readout.std

    def _probe_readout(self) -> UnitReadout:
        """The probe set's readout, made like the training one: base-model statistics on the training
        responses and signs from the training pairs (computed before any step)."""
        acts = [self.unit_activations(b, self.probe_layout) for b in self.batches]
        mean, std = response_statistics(acts, self.batches, len(self.probe_layout.units), self.device)
        return UnitReadout(mean, std, self.unit_signs(self.probe_layout), self.config.pooling, self.config.standardize)

    def _score(self, acts: torch.Tensor, batch: PairBatch) -> torch.Tensor:
        """Activation score A(x, y) of every row of a batch: ``[2 * n_pairs]``."""
        return self.readout.score(acts, batch)

    # -- one step ----------------------------------------------------------------------------------
    def batch_index(self, step: int) -> int:
        """Which batch this process uses at ``step`` (1-based): a seeded permutation per epoch, so a
        resumed run sees the same sequence."""
        n = len(self.batches)
        slot = (step - 1) * self.world + self.rank
        epoch, position = divmod(slot, n)
        order = list(range(n))
        random.Random(self.config.seed * 100_003 + epoch).shuffle(order)
        return order[position]

    def compute_loss(self, i: int, lam: float | None = None) -> LossOutput:
        """The loss of batch ``i`` with its parts: ``losses["dpo"]`` (mean DPO loss) and ``losses["aux"]``
        (the neuron term: for variant A its own tensor, ``lam`` times its unit-weight value; for C and D
        ``loss - dpo``). ``lam``
        overrides ``config.lam`` (the target-share mode passes 1 and scales the term's gradient itself)."""
        c = self.config
        lam = c.lam if lam is None else lam
        batch = self.batches[i]
        logps, acts = self.policy_pass(i)
        policy_chosen, policy_rejected = logps.chunk(2)
        ref_chosen, ref_rejected = self.ref_logps[i].chunk(2)
        _, logits, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, ref_chosen,
                                                               ref_rejected, c.beta)
        scores = self._score(acts, batch)
        act_chosen, act_rejected = scores.chunk(2)
        margin = act_chosen - act_rejected
        ref_chosen_score, ref_rejected_score = self.ref_scores[i].chunk(2)
        ref_margin = ref_chosen_score - ref_rejected_score
        if c.subtract_ref_margin:
            margin = margin - ref_margin
        losses, aux = yfpo_loss(logits, margin, lam=lam, gamma=c.gamma, variant=c.variant, fixed_margin=ref_margin)
        loss = losses.mean()
        dpo = (-torch.nn.functional.logsigmoid(logits)).mean()
        metrics = {
            M.LOSS: loss.item(), M.DPO_LOSS: dpo.item(),
            M.REWARDS_CHOSEN: chosen_rewards.mean().item(), M.REWARDS_REJECTED: rejected_rewards.mean().item(),
            M.REWARDS_MARGINS: (chosen_rewards - rejected_rewards).mean().item(),
            M.REWARDS_ACCURACIES: (chosen_rewards > rejected_rewards).float().mean().item(),
            M.LOGPS_CHOSEN: policy_chosen.mean().item(), M.LOGPS_REJECTED: policy_rejected.mean().item(),
            M.NEURON_MARGIN: margin.mean().item(), M.AUX_LOSS: aux.mean().item(),
            M.ACT_CHOSEN: act_chosen.mean().item(), M.ACT_REJECTED: act_rejected.mean().item(),
        }
        # Variant A's neuron term is its own tensor, whose graph starts at the units: its backward never
        # crosses the log-softmax or the unembedding. ``loss - dpo`` would be the same number, but autograd
        # would send a (numerically cancelling) gradient back through the whole DPO graph, doubling the
        # cost of the gradient-share metrics. Variants C and D mix the margin into the DPO logit, so their
        # part can only be the difference.
        aux_part = aux.mean() if c.variant == "A" else loss - dpo
        return LossOutput(loss, {"dpo": dpo, "aux": aux_part}, metrics)

    def learning_rate(self, step: int) -> float:
        warm = self.config.warmup_steps
        return self.config.lr * min(1.0, step / warm) if warm > 0 else self.config.lr

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step; raises :class:`NonFiniteLossError` (without stepping) on NaN/inf.

        On the steps that measure it (:meth:`measures_grad_share`) the gradient is assembled from its two
        parts, so that the run reports how much of the update the neuron term supplies
        (``yfpo/grad_norm_aux``, ``yfpo/grad_norm_dpo``, ``yfpo/aux_share`` = |g_aux| / (|g_aux| + |g_dpo|),
        ``yfpo/grad_cos``): one extra backward pass from the units' margin, which (variant A) stops at the
        lowest unit's block and never crosses the unembedding. With ``target_share`` the neuron term's weight
        is set at each step so that it supplies that share (``yfpo/lam``), so every step measures it.
        """
        started = time.perf_counter()
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.optimizer.zero_grad(set_to_none=True)
        share_mode = c.target_share > 0 and c.variant == "A"
        i = self.batch_index(step)
        out = self.compute_loss(i, lam=1.0) if share_mode else self.compute_loss(i)
        if not torch.isfinite(out.loss):
            raise NonFiniteLossError(f"step {step}: the loss is {out.loss.item()}; the step was not applied")
        params = [p for _, p, _ in self.params]
        split = share_mode or (c.grad_share and self.measures_grad_share(step))
        masks = [m for _, _, m in self.params]
        aux_grads = aux_gradients(out.losses["aux"], params, masks, self.world) if split and c.uses_neuron_term else None
        backward_of = out.losses["dpo"] if split else out.loss  # without the split: one combined backward
        if self.accelerator is not None:
            self.accelerator.backward(backward_of)
        else:
            backward_of.backward()
        dpo_grads = [p.grad for p in params]
        dpo_norm = vector_norm(dpo_grads) if split else 0.0
        aux_norm = vector_norm(aux_grads) if aux_grads is not None else 0.0
        cos = vector_dot(aux_grads, dpo_grads) / (aux_norm * dpo_norm) if aux_grads and aux_norm * dpo_norm > 0 else 0.0
        weight = 1.0
        if share_mode:
            weight = c.target_share / (1 - c.target_share) * dpo_norm / aux_norm if aux_norm > 0 else 0.0
        if aux_grads is not None:
            with torch.no_grad():
                for p, g in zip(params, aux_grads, strict=True):
                    p.grad = g * weight if p.grad is None else p.grad.add_(g, alpha=weight)
        aux_norm *= weight
        grad_norm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"step {step}: the gradient norm is {grad_norm.item()}; the step was not "
                                     "applied (try a lower lr)")
        bad = guarded_step(self.optimizer.step, [(name, p) for name, p, _ in self.params])
        if bad:
            raise NonFiniteLossError(f"step {step}: the update made {len(bad)} parameter(s) non-finite "
                                     f"({', '.join(bad[:3])}); the step was rolled back (try a lower lr)")
        self.steps_taken += 1
        metrics = {**out.metrics, M.GRAD_NORM: float(grad_norm), M.LR: self.learning_rate(step)}
        if split:
            metrics.update({M.GRAD_NORM_DPO: dpo_norm, M.GRAD_NORM_AUX: aux_norm, M.GRAD_COS: cos,
                            M.AUX_SHARE: aux_norm / (aux_norm + dpo_norm) if aux_norm + dpo_norm > 0 else 0.0})
        if share_mode:
            aux_value = out.metrics[M.LOSS] - out.metrics[M.DPO_LOSS]
            metrics[M.LAM] = weight
            metrics[M.AUX_LOSS] = weight * aux_value
            metrics[M.LOSS] = out.metrics[M.DPO_LOSS] + weight * aux_value
        metrics = self._mean_over_processes(metrics)
        metrics[M.STEP_SECONDS] = time.perf_counter() - started
        return metrics

    def measures_grad_share(self, step: int) -> bool:
        """Whether step ``step`` (1-based) takes the neuron term's gradient apart: step 1, every
        ``grad_share_every``-th step and the last one. The split costs one extra backward pass from the units
        (the DPO and the neuron gradients are two different vector fields over the same blocks, so no single
        backward yields both); on the other steps the two terms share one backward and the metrics are not
        logged."""
        every = self.config.grad_share_every
        return step == 1 or step % every == 0 or step == self.config.steps

    def _mean_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.accelerator is None or self.world == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], device=self.accelerator.device)
        gathered = self.accelerator.gather(values[None]).reshape(self.world, -1).mean(0)
        return dict(zip(keys, gathered.tolist(), strict=True))

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, exact: bool = False, progress: ProgressCallback | None = None) -> dict[str, float]:
        """Held-out answer ranking, the probe's margin (and exact match when ``exact``) of the current policy
        (:func:`~yfpo_core.training.heldout.evaluate_policy`)."""
        return evaluate_policy(self, exact, progress)

    @torch.no_grad()
    def unit_margin_on_pairs(self) -> float:
        """Mean neuron margin A(y_w) - A(y_l) of the current policy over all training batches."""
        values = []
        for i, batch in enumerate(self.batches):
            _, acts = self.policy_pass(i)
            chosen, rejected = self._score(acts, batch).chunk(2)
            values.append((chosen - rejected).mean().item())
        return sum(values) / len(values)

    # -- checkpoints -------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p, _ in self.params}

    def optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """AdamW state as flat tensors (safetensors-friendly) plus plain metadata."""
        return optimizer_state(self.optimizer, self.params)

    def load_state(self, trainable: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
                   optimizer_meta: dict[str, Any]) -> None:
        """Restore parameters and optimizer state from a checkpoint (resume)."""
        load_trainable(self.params, trainable)
        load_optimizer_state(self.optimizer, self.params, optimizer, optimizer_meta)
        self._prefix.clear()  # prefix blocks are frozen, but be safe after a reload
        self.steps_taken = -1  # the policy is no longer the base model


__all__ = ["NonFiniteLossError", "YFPOTrainer"]
