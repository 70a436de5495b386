"""The YFPO training loop: DPO plus the selected units' activation-margin reward, on a TransformerLens model.

What makes a step cheap on a CPU (measurements in ``bench/train_step.py``):

* **Reference log-probs once.** The frozen model's log-probs of every pair (and its unit activations,
  for standardisation, the reference margin and variant D) are computed before the first step.
* **Frozen prefix.** Blocks below the lowest trainable block never change, so their output residual is
  computed once per batch under ``no_grad`` and cached; each step runs only the upper blocks with
  gradients (``start_at_layer``).
* **Unembed only what is scored.** The final norm and the 49k-token unembedding run only at the positions
  that predict response tokens.

The units' activations are read by forward hooks *inside* the policy's graph (``run_with_cache`` would
detach them), so the neuron term has gradients. The trainable part of the model goes through one
``nn.Module`` call (:class:`PolicyForward`), which ``accelerate`` wraps for multi-process training.
The trainer never touches files or UIs: it hands metrics and checkpoint state to its caller
(:mod:`yfpo_core.runs`).
"""

from __future__ import annotations

import copy
import hashlib
import random
import threading
import time
from collections import OrderedDict
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from yfpo_core.errors import YfpoError
from yfpo_core.scoring.evaluate import exact_match
from yfpo_core.scoring.logprobs import token_logprobs, unembed
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.training.batching import PairBatch, make_batches
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.guard import guarded_step
from yfpo_core.training.heldout import HeldOutEval
from yfpo_core.training.losses import LossOutput, dpo_loss, yfpo_loss
from yfpo_core.training.readout import (
    UnitReadout,
    response_statistics,
    signs_from_gradient,
    signs_from_scores,
    unit_directions,
)
from yfpo_core.units.unit import Unit


FROM_TOKENS = -1  # start_layer value meaning "run the whole model from the tokens with gradients"


class NonFiniteLossError(YfpoError):
    """The loss or the gradient became NaN or infinite; the step was not applied."""


GroupKey = tuple[str, str | None]  # (hook name, sae_id) of a group of units; sae_id None for MLP neurons


@dataclass
class UnitLayout:
    """The selected units grouped by (hook, SAE), in a fixed column order, split at the frozen prefix.

    A group is the MLP neurons of one hook (``sae_id`` None: the value is ``x[..., index]`` of the hook's
    activation) or the features of one SAE at its hook (the value is ``sae.encode(x)[..., index]``).
    Neurons and features at the same hook are separate groups. Groups are ordered by layer, so the
    columns of the units below the frozen prefix come first.
    """

    units: list[Unit]  # in column order
    index_by_group: dict[GroupKey, torch.Tensor]  # (hook, sae_id) -> unit indices, in column order
    scores: list[float | None] | None = None  # attribution scores in column order
    directions: list[float | None] | None = None  # the set's stored directions in column order

    @classmethod
    def build(cls, units: Sequence[Unit], scores: Sequence[float | None] | None = None,
              directions: Sequence[float | None] | None = None) -> UnitLayout:
        def group_of(unit: Unit) -> GroupKey:
            return (unit.hook_name, unit.sae_id if unit.kind == "sae_feature" else None)

        first_seen: dict[GroupKey, int] = {}
        for i, unit in enumerate(units):
            first_seen.setdefault(group_of(unit), i)
        groups = sorted(first_seen, key=lambda g: (int(g[0].split(".")[1]), first_seen[g]))
        order: list[int] = []
        by_group: dict[GroupKey, list[int]] = {g: [] for g in groups}
        for group in groups:
            for i, unit in enumerate(units):
                if group_of(unit) == group:
                    by_group[group].append(unit.index)
                    order.append(i)
        return cls([units[i] for i in order], {g: torch.tensor(v) for g, v in by_group.items()},
                   [scores[i] for i in order] if scores is not None else None,
                   [directions[i] for i in order] if directions is not None else None)

    @property
    def sae_ids(self) -> list[str]:
        return sorted({sae_id for _, sae_id in self.index_by_group if sae_id is not None})

    def neuron_index_by_hook(self) -> dict[str, torch.Tensor]:
        return {hook: index for (hook, sae_id), index in self.index_by_group.items() if sae_id is None}

    def groups_from(self, layer: int) -> list[GroupKey]:
        return [g for g in self.index_by_group if int(g[0].split(".")[1]) >= layer]

    def groups_below(self, layer: int) -> list[GroupKey]:
        return [g for g in self.index_by_group if int(g[0].split(".")[1]) < layer]


def capture_hooks(layout: UnitLayout, groups: Sequence[GroupKey], saes: Mapping[str, torch.nn.Module],
                  captured: dict[GroupKey, torch.Tensor], full: dict[str, torch.Tensor] | None = None
                  ) -> list[tuple[str, Callable]]:
    """Forward hooks that store each group's unit values in ``captured`` (inside the graph, so the values
    have gradients when the pass has them) and return the activation unchanged: the model's forward pass
    is never altered, an SAE only reads its hook. With ``full``, each hook's whole activation is kept too
    (keyed by hook name), so that the gradient of the model's output with respect to it can be read."""
    hooks = []
    for group in groups:
        hook_name, sae_id = group
        index = layout.index_by_group[group]
        if sae_id is None:
            def capture(x, hook, group=group, index=index):
                captured[group] = x[..., index.to(x.device)]
                if full is not None:
                    full[hook.name] = x
                return x
        else:
            def capture(x, hook, group=group, index=index, sae=saes[sae_id]):
                captured[group] = sae.encode(x)[..., index.to(x.device)].to(x.dtype)
                if full is not None:
                    full[hook.name] = x
                return x
        hooks.append((hook_name, capture))
    return hooks


class PolicyForward(torch.nn.Module):
    """The differentiable part of a step: from the cached residual at ``start_layer`` to the log-prob of
    every response token and the activations of the units at or above ``start_layer``.

    ``saes`` (sae_id -> frozen sae-lens SAE) is a plain dict, not submodules: the SAEs never train, and
    ``DistributedDataParallel`` must not see their parameters."""

    def __init__(self, model: torch.nn.Module, start_layer: int, layout: UnitLayout,
                 saes: Mapping[str, torch.nn.Module] | None = None) -> None:
        super().__init__()
        self.model = model
        self.start_layer = start_layer
        self.layout = layout
        self.saes = dict(saes or {})

    def forward(self, resid: Float[torch.Tensor, "rows T d"] | None, tokens: Int[torch.Tensor, "rows T"],
                response_mask: Int[torch.Tensor, "rows T"], full: dict[str, torch.Tensor] | None = None,
                logprobs: bool = True) -> tuple[Float[torch.Tensor, "rows"], Float[torch.Tensor, "rows T u"]]:
        """Sequence log-probs of the response tokens (zeros when not ``logprobs``) and unit activations;
        ``full`` receives the whole activation of each unit hook (see :func:`capture_hooks`)."""
        captured: dict[GroupKey, torch.Tensor] = {}
        groups = self.layout.groups_from(self.start_layer)
        hooks = capture_hooks(self.layout, groups, self.saes, captured, full)
        model = self.model
        stop = model.cfg.n_layers if logprobs else max(int(g[0].split(".")[1]) for g in groups) + 1 if groups \
            else max(self.start_layer, 0)
        with model.hooks(fwd_hooks=hooks):
            if self.start_layer == FROM_TOKENS:
                final = model(tokens, stop_at_layer=stop)
            else:
                final = model(resid, start_at_layer=self.start_layer, stop_at_layer=stop)
        if not logprobs:
            acts = torch.cat([captured[g] for g in groups], dim=-1) if captured else \
                final.new_zeros(tokens.shape[0], tokens.shape[1], 0)
            return final.new_zeros(tokens.shape[0]), acts
        # Only the positions that predict a response token go through the final norm and unembedding.
        rows, cols = response_mask[:, 1:].nonzero(as_tuple=True)
        logits = unembed(model, final[rows, cols][None])  # [1, N, vocab]
        per_token = token_logprobs(logits, tokens[rows, cols + 1][None])[0]  # [N]
        sequence_logps = torch.zeros(tokens.shape[0], device=per_token.device).index_add(0, rows, per_token)
        if captured:
            acts = torch.cat([captured[g] for g in groups], dim=-1)
        else:
            acts = final.new_zeros(tokens.shape[0], tokens.shape[1], 0)
        return sequence_logps, acts


def trainable_parameters(model: torch.nn.Module, config: YFPOConfig, layout: UnitLayout
                         ) -> tuple[list[tuple[str, torch.nn.Parameter, torch.Tensor | None]], int]:
    """Set ``requires_grad`` for the configured scope; return (name, param, gradient mask or None) and the
    lowest block whose parameters train (everything below it is the frozen prefix).

    The ``units`` scope trains the selected neurons' own weights (their rows of ``W_in``/``W_gate``/``b_in``
    and ``W_out``); an SAE feature has no weights of its own in the model, so a set with features needs
    ``mlp_last_k`` or ``all`` (in ``units+mlp_last_k`` the features change through the last blocks only)."""
    n_layers = model.cfg.n_layers
    if config.trainable == "units" and layout.sae_ids:
        features = [u.label for u in layout.units if u.kind == "sae_feature"]
        raise YfpoError(f"trainable=units trains only the selected neurons' own weights, and SAE features have "
                        f"none in the model ({len(features)} in the set: {', '.join(features[:3])}"
                        f"{', ...' if len(features) > 3 else ''}): use trainable=mlp_last_k (with last_k reaching "
                        "the features' layer) or trainable=all for a set with SAE features")
    for p in model.parameters():
        p.requires_grad_(False)
    chosen: dict[str, tuple[torch.nn.Parameter, torch.Tensor | None]] = {}
    named = dict(model.named_parameters())
    if config.trainable == "all":
        for name, p in named.items():
            chosen[name] = (p, None)
    if config.trainable in ("mlp_last_k", "units+mlp_last_k"):
        for layer in range(max(0, n_layers - config.last_k), n_layers):
            for name, p in named.items():
                if name.startswith(f"blocks.{layer}.mlp."):
                    chosen[name] = (p, None)
    if config.trainable in ("units", "units+mlp_last_k"):
        for hook, index in layout.neuron_index_by_hook().items():
            prefix = hook.rsplit(".", 1)[0]  # blocks.L.mlp
            for suffix, axis in (("W_in", -1), ("W_gate", -1), ("b_in", -1), ("W_out", 0)):
                name = f"{prefix}.{suffix}"
                if name not in named or (name in chosen and chosen[name][1] is None):
                    continue
                p = named[name]
                mask = chosen[name][1] if name in chosen else torch.zeros_like(p)
                if axis == 0:
                    mask[index] = 1.0
                else:
                    mask[..., index] = 1.0
                chosen[name] = (p, mask)
    if not chosen:
        raise YfpoError(f"trainable={config.trainable} selects no parameters")
    out = []
    for name, (p, mask) in chosen.items():
        p.requires_grad_(True)
        if mask is not None:
            p.register_hook(lambda g, mask=mask: g * mask.to(g.device))
        out.append((name, p, mask))
    if any(not name.startswith(("blocks.", "ln_final.", "unembed.")) for name, _, _ in out):
        return out, FROM_TOKENS  # embeddings train: nothing below can be cached
    layers = [int(name.split(".")[1]) for name, _, _ in out if name.startswith("blocks.")]
    return out, min(layers) if layers else n_layers


def frozen_saes(units: Sequence[Unit], saes: Mapping[str, Any]) -> dict[str, torch.nn.Module]:
    """Private, frozen copies (``requires_grad`` False, eval mode) of the sae-lens SAEs of ``units``'s
    features, from ``saes`` (sae_id -> :class:`yfpo_core.saes.sae.LoadedSAE`).

    Raises:
        YfpoError: A feature's SAE is missing, or it reads another hook than the feature's.
    """
    out: dict[str, torch.nn.Module] = {}
    for unit in units:
        if unit.kind != "sae_feature":
            continue
        loaded = saes.get(unit.sae_id or "")
        if loaded is None:
            given = ", ".join(map(repr, saes)) or "none"
            raise YfpoError(f"{unit.label} is a feature of SAE {unit.sae_id!r}, which the trainer was not given "
                            f"(given: {given}): describe it in the neuron set's \"sae\" section with its "
                            "path_or_release, or pass saes={sae_id: load_sae(...)}")
        if unit.hook_name != loaded.hook_name:
            raise YfpoError(f"{unit.label} is recorded at hook {unit.hook_name or '(none)'!r}, but SAE "
                            f"{unit.sae_id!r} ({loaded.source}) reads {loaded.hook_name!r}: fix the set's \"sae\" "
                            "section or point it at the right SAE")
        if unit.sae_id not in out:
            with torch.no_grad():
                sae = copy.deepcopy(loaded.sae)
            sae.eval()
            for p in sae.parameters():
                p.requires_grad_(False)
            out[unit.sae_id] = sae
        if unit.index >= int(out[unit.sae_id].cfg.d_sae):
            raise YfpoError(f"{unit.label} is out of range: SAE {unit.sae_id!r} has d_sae = "
                            f"{int(out[unit.sae_id].cfg.d_sae)}")
    return out


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
                 probe_directions: Sequence[float | None] | None = None) -> None:
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
        with base.lock:  # another thread's hooks must not be copied into the policy
            model = copy.deepcopy(base.model)
        model.train(False)  # no dropout in these models; keep eval-mode semantics
        self.layout = UnitLayout.build(list(units), scores, directions)
        # The probe: the set whose held-out margin eval/neuron_margin reports; the user's set even when the
        # run trains on a random control set (or on none, for DPO), so every arm is measured on the same units.
        self.probe_layout = UnitLayout.build(list(probe_units), probe_scores, probe_directions) \
            if probe_units is not None else self.layout
        self.device = torch.device(config.device)
        self.saes = {k: sae.to(self.device)
                     for k, sae in frozen_saes(self.layout.units + self.probe_layout.units, saes or {}).items()}
        # Cache keys name an SAE by its weights and config, not only its id (two folders may share a name).
        self._sae_digest = {k: _digest(*sae.state_dict().values()) + str(sorted(sae.cfg.to_dict().items()))
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
        max_length = min(config.max_length, int(model.cfg.n_ctx))
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
        self._reference()
        self.probe_readout = self.readout if self.probe_layout is self.layout else self._probe_readout()
        self.held_out = HeldOutEval(self) if self.eval_problems else None

    # -- one-off work ------------------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self.policy.model

    @torch.no_grad()
    def _prefix_for(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Residual at ``start_layer`` and the activations of units below it, for batch ``i`` (cached, and
        shared with other runs from the same base on the same batch)."""
        if i not in self._prefix:
            batch = self.batches[i]
            key = ("prefix", self.base_fingerprint, self.start_layer, self._units_key(self.units_below),
                   _digest(batch.tokens))
            self._prefix[i] = _shared(key, lambda: self._compute_prefix(i))
        return self._prefix[i]

    def _units_key(self, groups: Sequence[GroupKey], layout: UnitLayout | None = None) -> tuple:
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
               self._units_key(layout.groups_below(max(self.start_layer, 0)), layout), _digest(batch.tokens))
        resid, low = _shared(key, lambda: self._prefix_of(batch, layout))
        _, high = PolicyForward(self.model, self.start_layer, layout, self.saes)(
            resid, batch.tokens, batch.response_mask, logprobs=False)
        return torch.cat([low, high], dim=-1)

    def _policy_pass(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batches[i]
        resid, low = self._prefix_for(i)
        logps, high = self.forward_module(resid, batch.tokens, batch.response_mask)
        return logps, torch.cat([low, high], dim=-1)

    @torch.no_grad()
    def _reference(self) -> None:
        """Reference log-probs and unit activations of every batch, then the readout (statistics, signs)."""

        def compute() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            logps_list, acts_list = [], []
            for i in range(len(self.batches)):
                logps, acts = self._policy_pass(i)
                logps_list.append(logps.detach())
                acts_list.append(acts.detach())
            return logps_list, acts_list

        key = ("reference", self.base_fingerprint, self.start_layer,
               self._units_key(self.layout.groups_from(0) if self.layout.units else ()),
               _digest(*[t for b in self.batches for t in (b.tokens, b.response_mask)]))
        self.ref_logps, ref_acts = _shared(key, compute)
        mean, std = response_statistics(ref_acts, self.batches, len(self.layout.units), self.device)
        self.readout = UnitReadout(mean, std, self._signs(self.layout),
                                   self.config.pooling, self.config.standardize)
        self.ref_scores = [self.readout.score(a, b) for a, b in zip(ref_acts, self.batches, strict=True)]

    def _signs(self, layout: UnitLayout) -> torch.Tensor:
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
               self._units_key(layout.groups_from(0), layout),
               _digest(*[t for b in self.batches for t in (b.tokens, b.response_mask)]))
        gradient = _shared(key, lambda: unit_directions(lambda i: self._unit_gradients(layout, i), self.batches,
                                                        self.config.pooling))
        if layout is self.layout:
            self.direction_gradient = gradient
        return signs_from_gradient(gradient)

    def _unit_gradients(self, layout: UnitLayout, i: int) -> torch.Tensor:
        """``d sum(log pi(chosen rows)) / d a_u`` at every position of batch ``i`` under the current policy
        (the base model when called before training), ``[rows, T, u]`` in ``layout``'s column order; zero
        for units below the trainable blocks (nothing there can change)."""
        batch = self.batches[i]
        resid, _ = self._prefix_for(i)
        full: dict[str, torch.Tensor] = {}
        forward = PolicyForward(self.model, self.start_layer, layout, self.saes)
        with torch.enable_grad():
            logps, _ = forward(resid, batch.tokens, batch.response_mask, full=full)
            names = [n for n in full if full[n].requires_grad]
            grads = dict(zip(names, torch.autograd.grad(logps[: batch.n_pairs].sum(), [full[n] for n in names],
                                                        allow_unused=True), strict=True)) if names else {}
        columns = []
        for group in layout.index_by_group:
            hook_name, sae_id = group
            index = layout.index_by_group[group].to(self.device)
            g = grads.get(hook_name)
            if g is None:
                columns.append(torch.zeros(*batch.tokens.shape, len(index), device=self.device))
            elif sae_id is None:
                columns.append(g[..., index].detach())
            else:  # raising feature f adds f * W_dec[f] at the hook: its effect is the gradient along W_dec[f]
                columns.append((g @ self.saes[sae_id].W_dec[index].T.to(g.dtype)).detach())
        return torch.cat(columns, dim=-1)

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
        return UnitReadout(mean, std, self._signs(self.probe_layout), self.config.pooling, self.config.standardize)

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
        logps, acts = self._policy_pass(i)
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
        aux_grads = self._aux_gradients(out.losses["aux"], params) if split and c.uses_neuron_term else None
        backward_of = out.losses["dpo"] if split else out.loss  # without the split: one combined backward
        if self.accelerator is not None:
            self.accelerator.backward(backward_of)
        else:
            backward_of.backward()
        dpo_grads = [p.grad for p in params]
        dpo_norm = _norm(dpo_grads) if split else 0.0
        aux_norm = _norm(aux_grads) if aux_grads is not None else 0.0
        cos = _dot(aux_grads, dpo_grads) / (aux_norm * dpo_norm) if aux_grads and aux_norm * dpo_norm > 0 else 0.0
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

    def _aux_gradients(self, aux: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor] | None:
        """The neuron term's gradient on every trainable parameter (zeros where it has none), averaged over
        processes so that every replica applies the same update."""
        if not aux.requires_grad:
            return None
        grads = torch.autograd.grad(aux, params, retain_graph=True, allow_unused=True)
        masks = [mask for _, _, mask in self.params]
        out = [torch.zeros_like(p) if g is None else g if mask is None else g * mask.to(g.device)
               for p, g, mask in zip(params, grads, masks, strict=True)]  # a unit-scope mask applies here too
        if self.accelerator is not None and self.world > 1:
            import torch.distributed as dist

            flat = torch.cat([g.flatten() for g in out])
            dist.all_reduce(flat)
            flat /= self.world
            out, offset = [], 0
            for p in params:
                out.append(flat[offset: offset + p.numel()].view_as(p))
                offset += p.numel()
        return out

    def _mean_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.accelerator is None or self.world == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], device=self.accelerator.device)
        gathered = self.accelerator.gather(values[None]).reshape(self.world, -1).mean(0)
        return dict(zip(keys, gathered.tolist(), strict=True))

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, exact: bool = False) -> dict[str, float]:
        """Held-out answer ranking, the probe's margin (and exact match when ``exact``) of the current policy.

        Before the first step the policy is the base model, so each part is shared with every run from the
        same base (:func:`_shared`), keyed by exactly what it depends on: the ranking and exact match by the
        problems only (the same for every arm and seed of an experiment), the probe margin also by the probe
        units and their readout (statistics and signs come from the run's training pairs)."""
        fresh = self.steps_taken == 0
        out: dict[str, float] = {}
        held_out = self.held_out
        if held_out is not None:
            key = ("eval-ranking", self.base_fingerprint, tuple(p.id + p.question + p.solution
                                                               for p in self.eval_problems))
            ranking, rows = _shared(key, lambda: (held_out.ranking(), held_out.last["ranking"])) if fresh else \
                (held_out.ranking(), held_out.last["ranking"])
            out.update(ranking)
            held_out.last["ranking"] = rows
            if self.probe_layout.units:
                r = self.probe_readout
                key = ("eval-probe", self.base_fingerprint, self.start_layer,
                       tuple(p.id + p.question + p.solution for p in self.eval_problems),
                       self._units_key(self.probe_layout.groups_from(0), self.probe_layout),
                       _digest(r.mean, r.std, r.signs), r.pooling, r.standardize)
                def probe() -> tuple[float | None, list]:
                    margin = held_out.probe_margin()
                    return margin, held_out.last.get("neuron_margin", []) if margin is not None else []

                margin, rows = _shared(key, probe) if fresh else probe()
                if margin is not None:
                    out[M.EVAL_NEURON_MARGIN] = margin
                    held_out.last["neuron_margin"] = rows
        if exact and self.exact_problems:
            key = ("eval-exact", self.base_fingerprint, tuple(p.id + p.question for p in self.exact_problems))
            accuracy, rows = _shared(key, self._exact_match) if fresh else self._exact_match()
            out[M.EVAL_EXACT_MATCH] = accuracy
            if held_out is not None:
                held_out.last["exact"] = rows
        return out

    def _exact_match(self) -> tuple[float, list[dict[str, Any]]]:
        result = exact_match(self.policy, self.exact_problems)
        return result.accuracy, [{"id": r["id"], "correct": r["correct"]} for r in result.rows]

    @torch.no_grad()
    def unit_margin_on_pairs(self) -> float:
        """Mean neuron margin A(y_w) - A(y_l) of the current policy over all training batches."""
        values = []
        for i, batch in enumerate(self.batches):
            _, acts = self._policy_pass(i)
            chosen, rejected = self._score(acts, batch).chunk(2)
            values.append((chosen - rejected).mean().item())
        return sum(values) / len(values)

    # -- checkpoints -------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p, _ in self.params}

    def optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """AdamW state as flat tensors (safetensors-friendly) plus plain metadata."""
        tensors, meta = {}, {}
        names = {id(p): name for name, p, _ in self.params}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                state = self.optimizer.state.get(p, {})
                name = names[id(p)]
                for key, value in state.items():
                    if torch.is_tensor(value):
                        tensors[f"{name}::{key}"] = value.detach().cpu().clone().reshape(value.shape)
                    else:
                        meta[f"{name}::{key}"] = value
        return tensors, meta

    def load_state(self, trainable: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
                   optimizer_meta: dict[str, Any]) -> None:
        """Restore parameters and optimizer state from a checkpoint (resume)."""
        by_name = {name: p for name, p, _ in self.params}
        missing = set(by_name) - set(trainable)
        if missing:
            raise YfpoError(f"the checkpoint lacks trainable parameters {sorted(missing)[:3]}: was it written "
                            "with another trainable scope?")
        with torch.no_grad():
            for name, p in by_name.items():
                p.copy_(trainable[name].to(p.device))
        for name, p in by_name.items():
            state = {}
            for key, value in optimizer.items():
                pname, _, field_name = key.partition("::")
                if pname == name:
                    state[field_name] = value.to(p.device)
            for key, value in optimizer_meta.items():
                pname, _, field_name = key.partition("::")
                if pname == name:
                    state[field_name] = value
            if state:
                if "step" in state and not torch.is_tensor(state["step"]):
                    state["step"] = torch.tensor(float(state["step"]))
                self.optimizer.state[p] = state
        self._prefix.clear()  # prefix blocks are frozen, but be safe after a reload
        self.steps_taken = -1  # the policy is no longer the base model


def _norm(tensors: Sequence[torch.Tensor | None]) -> float:
    """The L2 norm of several tensors taken as one vector (None counts as zeros)."""
    present = [t.detach().float() for t in tensors if t is not None]
    return float(torch.sqrt(sum((t * t).sum() for t in present))) if present else 0.0


def _dot(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> float:
    """The inner product of two lists of tensors taken as vectors (None counts as zeros)."""
    total = 0.0
    for x, y in zip(a, b, strict=True):
        if x is not None and y is not None:
            total += float((x.detach().float() * y.detach().float()).sum())
    return total


# -- work shared between runs in one process ----------------------------------------------------------
# The frozen prefix, the reference log-probs and the evaluation before the first step depend only on the
# base weights and the data, not on the run's lambda, unit set or seed; the experiment's arms (and a UI that
# starts a control run next to a real one) train from the same base on the same pairs. Keyed by content, so
# a different base, batch or problem list never hits; a few entries at most.
_SHARED: OrderedDict[tuple, Any] = OrderedDict()
_SHARED_MAX = 64  # a prefix entry per batch (~6 MB for 8 x 320 tokens of SmolLM2)


_SHARED_LOCK = threading.Lock()  # guards _SHARED and _MAKING; never held while computing
_MAKING: dict[tuple, threading.Lock] = {}  # key -> lock held by the thread computing that key


def _shared(key: tuple, make: Callable[[], Any]) -> Any:
    """``make()``'s value, computed once per key by whichever thread asks first (the app trains runs in
    threads): a second thread asking for the same key waits for it; other keys go on in parallel."""
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
        making = _MAKING.setdefault(key, threading.Lock())
    with making:
        with _SHARED_LOCK:
            if key in _SHARED:  # made by another thread while this one waited
                _SHARED.move_to_end(key)
                return _SHARED[key]
        value = make()
        with _SHARED_LOCK:
            _SHARED[key] = value
            _MAKING.pop(key, None)
            while len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
    return value


def clear_shared() -> None:
    """Forget every shared entry (tests; a UI's "free memory")."""
    with _SHARED_LOCK:
        _SHARED.clear()


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fit(trainer: YFPOTrainer, *, start_step: int = 0, should_stop: Callable[[], bool] = lambda: False,
        on_metrics: Callable[[dict[str, float]], None] = lambda m: None,
        on_checkpoint: Callable[[int], None] = lambda step: None) -> int:
    """Run steps ``start_step + 1 .. config.steps``; returns the last completed step.

    Metrics of each step (and ``eval/`` metrics at step 0 when starting fresh, every ``eval_every`` steps
    and at the end) go to ``on_metrics``; ``on_checkpoint(step)`` is called every ``checkpoint_every``
    steps and at the end. ``should_stop`` is checked between steps.
    """
    c = trainer.config
    if start_step == 0:
        on_metrics({"step": 0, **trainer.evaluate(exact=c.n_exact_problems > 0 and c.exact_every > 0)})
    step = start_step
    while step < c.steps and not should_stop():
        step += 1
        metrics = {"step": step, **trainer.train_step(step)}
        last = step == c.steps
        if last or (c.eval_every and step % c.eval_every == 0):
            exact = c.n_exact_problems > 0 and (last or (c.exact_every and step % c.exact_every == 0))
            metrics.update(trainer.evaluate(exact=bool(exact)))
        on_metrics(metrics)
        if last or (c.checkpoint_every and step % c.checkpoint_every == 0):
            on_checkpoint(step)
    return step


__all__ = ["NonFiniteLossError", "PolicyForward", "UnitLayout", "YFPOTrainer", "capture_hooks", "fit",
           "frozen_saes"]
