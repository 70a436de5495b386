"""Per-problem unit scores for each attribution method.

Every method returns a :class:`ProblemScores`: the per-unit total for one problem (``[rows, width]``),
the per-token map behind it (``[pos, rows, width]``) and method-specific extras. Gradient methods sum
over token positions (relevance is additive); activation methods average over them.

* ``attnlrp``: relevance ``a * a.grad`` after one backward pass through AttnLRP's modified gradient
  (:mod:`yfpo_core.attribution.rules`). Extras: ``input_relevance`` (relevance reaching the token
  embeddings), ``logit_relevance`` (relevance entering at the logits, ``sum logits * d target/d logits``)
  and their ratio ``relevance_budget``; ``1 - budget`` is what softmax and biases absorbed.
* ``grad_x_act``: the same with the ordinary gradient (activation x gradient).
* ``integrated_gradients``: per row, ``a * mean_k d target / d(alpha_k a)`` over ``steps`` midpoint values of
  ``alpha`` in (0, 1), the other rows recomputed from the scaled one (Dai et al.'s knowledge-neuron IG).
  Costs ``steps`` forward+backward passes per row, so restrict ``layers`` on large models.
* ``activation``: mean activation over the problem's tokens.
* ``contrast_correct_wrong``: mean activation over the gold continuation minus over the same continuation
  with a wrong answer (gold+1), after the same context.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from yfpo_core.attribution.rules import attnlrp_rules
from yfpo_core.units.space import UnitSpace
from yfpo_core.units.unit import block_of
from yfpo_core.attribution.targets import PreparedProblem, target_from_rows, target_value
from yfpo_core.models.base import LoadedModel


@dataclass
class ProblemScores:
    total: Float[torch.Tensor, "rows width"]
    tokens: Float[torch.Tensor, "pos rows width"]
    token_ids: tuple[int, ...]
    extras: dict[str, float] = field(default_factory=dict)


@contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """No parameter gradients while reading units (attribution needs only activation gradients; an SAE spliced
    in reads features, it does not train); each parameter's flag is restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def input_leaf_hooks(model: Any, store: dict[str, torch.Tensor]) -> list:
    """Forward hooks that make the embeddings leaves that require grad (kept in ``store`` by hook name), so
    that the graph exists with frozen parameters and the relevance reaching the input can be read."""

    def make_leaf(x, hook):
        leaf = x.detach().requires_grad_(True)
        store[hook.name] = leaf
        return leaf

    names = [n for n in ("hook_embed", "hook_pos_embed") if n in model.hook_dict]
    return [(n, make_leaf) for n in names]


def gradient_relevance(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem,
                       lrp: bool) -> ProblemScores:
    """``a * da`` at every unit and token, with AttnLRP's backward rules (``lrp``) or the plain gradient."""
    return gradient_relevance_batch(loaded, space, [prepared], lrp)[0]


def gradient_relevance_batch(loaded: LoadedModel, space: UnitSpace, batch: Sequence[PreparedProblem],
                             lrp: bool) -> list[ProblemScores]:
    """:func:`gradient_relevance` of several problems in one forward and one backward pass.

    Why it gives each problem's own scores: the rows are padded on the right, and in a causal model a real
    token never attends to a later one, so padding changes nothing before it; every rule is applied per
    position; and the summed target's gradient at row ``b`` is row ``b``'s own target's gradient. Two
    savings on top of batching: each row stops after the last position its target reads (later tokens
    cannot change it, their relevance is exactly zero and is filled in as zeros), and the final norm and
    unembedding run only at the target positions instead of over every position and the whole vocabulary.
    """
    model = loaded.model
    if not batch:
        return []
    lengths = [p.positions[-1] + 1 for p in batch]  # tokens up to the last position the target reads
    width = max(lengths)
    ids = torch.full((len(batch), width), loaded.pad_token_id, dtype=torch.long)
    for row, (item, length) in enumerate(zip(batch, lengths, strict=True)):
        ids[row, :length] = torch.tensor(item.tokens[:length], dtype=torch.long)
    ids = ids.to(model.cfg.device)
    inputs: dict[str, torch.Tensor] = {}
    acts: dict[str, torch.Tensor] = {}

    def capture(name: str, x: torch.Tensor) -> None:
        x.retain_grad()
        acts[name] = x

    rules = attnlrp_rules(model) if lrp else _nothing()
    with torch.enable_grad(), frozen_parameters(model), rules, space.reading(model, capture), \
            model.hooks(fwd_hooks=input_leaf_hooks(model, inputs)):
        residual = model(ids, stop_at_layer=model.cfg.n_layers)  # [batch, pos, d_model], before the final norm
        picked = [residual[row, list(item.positions)] for row, item in enumerate(batch)]
        logits = _final_logits(model, torch.cat(picked))  # [all target positions, vocab]
        logits.retain_grad()
        splits = torch.split(logits, [len(item.positions) for item in batch])
        values = [target_from_rows(rows, item) for rows, item in zip(splits, batch, strict=True)]
        torch.stack(values).sum().backward()
    relevance = torch.stack([(acts[h] * acts[h].grad).detach() for h in space.hook_names], dim=2)  # [b, pos, rows, w]
    input_relevance = sum((x.detach() * x.grad).flatten(1).sum(1) for x in inputs.values())
    logit_relevance = (logits.detach() * logits.grad).sum(-1)
    out = []
    for row, (item, length) in enumerate(zip(batch, lengths, strict=True)):
        per_token = relevance.new_zeros((len(item.tokens), *relevance.shape[2:]))
        per_token[:length] = relevance[row, :length]
        start = sum(len(other.positions) for other in batch[:row])
        into_logits = float(logit_relevance[start: start + len(item.positions)].sum())
        into_inputs = float(input_relevance[row]) if inputs else 0.0
        extras = {"target": float(values[row].detach()), "input_relevance": into_inputs,
                  "logit_relevance": into_logits,
                  "relevance_budget": into_inputs / into_logits if into_logits else float("nan")}
        out.append(ProblemScores(per_token.sum(0), per_token, item.tokens, extras))
    return out


def _final_logits(model: Any, residual: Float[torch.Tensor, "n d_model"]) -> Float[torch.Tensor, "n vocab"]:
    """The model's own final norm, unembedding and soft cap, on chosen residual rows (hooks still fire)."""
    from transformer_lens.utilities import apply_softcap

    if model.cfg.normalization_type is not None:
        residual = model.ln_final(residual[None])[0]
    return apply_softcap(model.unembed(residual[None])[0], model.cfg.output_logits_soft_cap)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def integrated_gradients(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem,
                         steps: int = 8) -> ProblemScores:
    """Integrated gradients of each row's units from zero to their activation (see module docstring).

    Why it is cheaper than ``steps`` full passes per row, with the same scores: scaling a row in block ``l``
    leaves blocks below ``l`` as they were, so one clean pass keeps each block's input and every row's
    passes start there (half the blocks on average); tokens after the last position the target reads
    cannot change it (their scores are exactly zero), and the final norm and unembedding run only at the
    target positions.
    """
    model = loaded.model
    length = prepared.positions[-1] + 1
    tokens = torch.tensor([prepared.tokens[:length]], device=model.cfg.device)
    alphas = (torch.arange(steps, dtype=torch.float32, device=model.cfg.device) + 0.5) / steps
    starts = {hook_name: block_of(hook_name) for hook_name in space.hook_names}
    clean, block_inputs = _clean_pass(loaded, space, tokens, set(starts.values()))  # [pos, rows, width]
    clean_value = float(_target_with(loaded, space, prepared, lambda name, x: None))
    rows = []
    with torch.enable_grad(), frozen_parameters(model):
        for row, hook_name in enumerate(space.hook_names):
            scaled = (alphas[:, None, None] * clean[:, row][None]).requires_grad_(True)  # [steps, pos, width]

            def replace(name: str, x: torch.Tensor, hook_name: str = hook_name, scaled: torch.Tensor = scaled):
                return scaled if name == hook_name else None

            start = starts[hook_name]
            with space.reading(model, replace):
                if start is None:
                    residual = model(tokens.expand(steps, -1), stop_at_layer=model.cfg.n_layers)
                else:
                    residual = model(block_inputs[start].expand(steps, -1, -1), start_at_layer=start,
                                     stop_at_layer=model.cfg.n_layers)
                picked = residual[:, list(prepared.positions)]  # [steps, n_positions, d_model]
                logits = _final_logits(model, picked.reshape(-1, picked.shape[-1])).view(steps, len(
                    prepared.positions), -1)
                total = sum(target_from_rows(logits[k], prepared) for k in range(steps))
                total.backward()
            rows.append((clean[:, row] * scaled.grad.mean(0)).detach())  # [pos, width]
    per_token = torch.zeros((len(prepared.tokens), len(rows), space.width), dtype=clean.dtype,
                            device=clean.device)
    per_token[:length] = torch.stack(rows, dim=1)
    return ProblemScores(per_token.sum(0), per_token, prepared.tokens, {"target": clean_value, "steps": float(steps)})


def _clean_pass(loaded: LoadedModel, space: UnitSpace, tokens: torch.Tensor, blocks: set[int | None]
                ) -> tuple[Float[torch.Tensor, "pos rows width"], dict[int, Float[torch.Tensor, "1 pos d_model"]]]:
    """:func:`activations` on ``tokens`` (one sequence), keeping also the input of each block in ``blocks``."""
    inputs: dict[int, torch.Tensor] = {}

    def keep_input(block: int):
        def hook(x: torch.Tensor, hook: Any) -> None:
            inputs[block] = x.detach()
        return hook

    wanted = [(f"blocks.{b}.hook_resid_pre", keep_input(b)) for b in blocks if b is not None]
    with loaded.model.hooks(fwd_hooks=wanted):
        clean = activations(loaded, space, tuple(tokens[0].tolist()))
    return clean, inputs


@torch.no_grad()
def _target_with(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem, fn) -> torch.Tensor:
    model = loaded.model
    with space.reading(model, fn):
        logits = model(torch.tensor([prepared.tokens], device=model.cfg.device), return_type="logits")
    return target_value(logits[0], prepared)


@torch.no_grad()
def activations(loaded: LoadedModel, space: UnitSpace, token_ids: tuple[int, ...]
                ) -> Float[torch.Tensor, "pos rows width"]:
    """Unit activations on one token sequence."""
    model = loaded.model
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, x: torch.Tensor) -> None:
        seen[name] = x[0].detach()

    with space.reading(model, keep):
        model(torch.tensor([token_ids], device=model.cfg.device), return_type=None)
    return torch.stack([seen[h] for h in space.hook_names], dim=1)


def mean_activation(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem) -> ProblemScores:
    per_token = activations(loaded, space, prepared.tokens)
    return ProblemScores(per_token.mean(0), per_token, prepared.tokens)


def contrast_correct_wrong(loaded: LoadedModel, space: UnitSpace, prepared: PreparedProblem) -> ProblemScores:
    """Mean activation on the gold continuation minus on the wrong one, after the shared context."""
    gold = activations(loaded, space, prepared.gold_tokens)
    wrong = activations(loaded, space, prepared.wrong_tokens)
    start = prepared.tail_start
    difference = gold[start:].mean(0) - wrong[start:].mean(0)
    return ProblemScores(difference, gold, prepared.gold_tokens)
