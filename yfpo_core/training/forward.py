"""Where the selected units are read: their layout in columns, the hooks that capture them, the policy's pass.

A unit set is grouped by (hook, SAE) in a fixed column order (:class:`UnitLayout`); forward hooks store each
group's values *inside* the graph (:func:`capture_hooks`; ``run_with_cache`` would detach them), so the
neuron term has gradients; :class:`PolicyForward` is the differentiable part of a training step, from the
cached residual at the lowest trainable block to the response tokens' log-probs and the units' values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from yfpo_core.scoring.logprobs import token_logprobs, unembed
from yfpo_core.training.batching import PairBatch
from yfpo_core.units.unit import Unit

FROM_TOKENS = -1  # start_layer value meaning "run the whole model from the tokens with gradients"

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


def unit_gradients(model: torch.nn.Module, start_layer: int, layout: UnitLayout, saes: Mapping[str, torch.nn.Module],
                   batch: PairBatch, resid: Float[torch.Tensor, "rows T d"] | None
                   ) -> Float[torch.Tensor, "rows T u"]:
    """``d sum(log pi(chosen rows)) / d a_u`` at every position of ``batch`` under ``model`` (the base model
    when called before training), ``[rows, T, u]`` in ``layout``'s column order, from the residual ``resid``
    at ``start_layer`` (``None``: from the tokens); zero for units below the trainable blocks (nothing there
    can change)."""
    full: dict[str, torch.Tensor] = {}
    forward = PolicyForward(model, start_layer, layout, saes)
    with torch.enable_grad():
        logps, _ = forward(resid, batch.tokens, batch.response_mask, full=full)
        names = [n for n in full if full[n].requires_grad]
        grads = dict(zip(names, torch.autograd.grad(logps[: batch.n_pairs].sum(), [full[n] for n in names],
                                                    allow_unused=True), strict=True)) if names else {}
    columns = []
    for group in layout.index_by_group:
        hook_name, sae_id = group
        index = layout.index_by_group[group].to(batch.tokens.device)
        g = grads.get(hook_name)
        if g is None:
            columns.append(torch.zeros(*batch.tokens.shape, len(index), device=batch.tokens.device))
        elif sae_id is None:
            columns.append(g[..., index].detach())
        else:  # raising feature f adds f * W_dec[f] at the hook: its effect is the gradient along W_dec[f]
            columns.append((g @ saes[sae_id].W_dec[index].T.to(g.dtype)).detach())
    return torch.cat(columns, dim=-1)
