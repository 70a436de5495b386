"""Teacher-forced log-probabilities of continuations, the primitive behind ranking, DPO and attribution.

:func:`continuation_logprobs` scores several continuations of one shared context. It runs the context
once, keeps its keys and values in a frozen TransformerLens KV cache and runs only the short
continuations as a batch, so scoring five candidate answers after a 200-token solution costs about one
forward pass instead of five. :func:`continuation_logprobs_naive` is the plain reference (one full
sequence per continuation) that tests compare it with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


def token_logprobs(logits: Float[torch.Tensor, "batch pos vocab"],
                   targets: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos"]:
    """log p(target) at each position, without materialising a full ``log_softmax`` copy.

    ``cross_entropy`` fuses log-softmax and the pick, forward and backward: the same values as
    ``log_softmax(...).gather(...)`` with one [positions, vocab] temporary instead of several (the
    idea of TRL's ``selective_log_softmax``; it matters for a 49k vocabulary).
    """
    flat = torch.nn.functional.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), reduction="none")
    return -flat.view(targets.shape)


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into ``[batch, max_len]`` ids and a 0/1 mask, padding on the right.

    Right padding needs no attention mask in a causal model: real tokens never attend to later pads.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def continuation_logprobs_naive(model: HookedTransformer, context: Sequence[int],
                                continuations: Sequence[Sequence[int]], pad_id: int = 0
                                ) -> Float[torch.Tensor, "n_continuations"]:
    """Sum of log p(continuation tokens | context) for each continuation, one full sequence each."""
    sequences = [list(context) + list(c) for c in continuations]
    ids, _ = right_pad(sequences, pad_id)
    logits = model(ids.to(model.cfg.device), return_type="logits")
    totals = []
    for row, cont in enumerate(continuations):
        start = len(context)
        positions = torch.arange(start - 1, start - 1 + len(cont), device=logits.device)
        targets = torch.tensor(list(cont), device=logits.device)
        totals.append(token_logprobs(logits[row, positions][None], targets[None]).sum())
    return torch.stack(totals)


def continuation_logprobs(model: HookedTransformer, context: Sequence[int],
                          continuations: Sequence[Sequence[int]], pad_id: int = 0
                          ) -> Float[torch.Tensor, "n_continuations"]:
    """Sum of log p(continuation tokens | context) for each continuation, sharing the context's work.

    Forward hooks active on ``model`` (ablations, steering) apply to context and continuations alike,
    exactly as in the naive version.

    Args:
        model: The model to score with.
        context: Token ids of the shared prefix (at least one token).
        continuations: Token ids of each continuation (each at least one token).
        pad_id: Any valid token id; padded positions are never scored.

    Returns:
        A tensor of shape ``[n_continuations]`` in float32.
    """
    # A context that would push the continuations past the model's window loses its oldest tokens:
    # the answer is scored on what the model can see, as in any sliding-window evaluation.
    context = _fit_context(model, context, continuations)
    device = model.cfg.device
    # Only the context's last position is unembedded: logits for all of them cost a tenth of the pass.
    context_resid, cache = _context_pass(model, context, len(continuations), stop_at_layer=model.cfg.n_layers)
    last_logits = unembed(model, context_resid[:, -1:])[0, 0]
    first_logprobs = torch.log_softmax(last_logits.float(), dim=-1)  # predicts continuation[0]

    totals = torch.stack([first_logprobs[c[0]] for c in continuations])
    tails = [list(c) for c in continuations]
    if max(len(t) for t in tails) > 1:
        ids, mask = right_pad(tails, pad_id)
        ids, mask = ids.to(device), mask.to(device)
        inputs = ids[:, :-1]  # the last token predicts nothing scored: causal attention lets it go unrun
        hidden = model(inputs, stop_at_layer=model.cfg.n_layers, past_kv_cache=cache,
                       attention_mask=torch.ones_like(inputs))
        # hidden[:, j] predicts tail token j+1; mask out predictions of padding.
        step = token_logprobs(unembed(model, hidden), ids[:, 1:]) * mask[:, 1:]
        totals = totals + step.sum(-1)
    return totals


@dataclass
class ContinuationStates:
    """One context and its continuations as residual-stream states at ``layer``, made by the lower blocks.

    Why: a fine-tune that trains only the upper blocks never changes what the lower ones compute, so the
    held-out evaluation of every step (and of every run from the same base) can start at ``layer``.
    :func:`continuation_logprobs_from_states` then equals :func:`continuation_logprobs` on the trained
    model, at the cost of the upper blocks only.
    """

    layer: int
    context: Float[torch.Tensor, "1 C d"]
    continuations: Float[torch.Tensor, "n L-1 d"]  # every token but the last, which predicts nothing scored
    ids: Int[torch.Tensor, "n L"]
    mask: Int[torch.Tensor, "n L"]


def _context_pass(model: HookedTransformer, context: Sequence[int], n: int, **forward: Any
                  ) -> tuple[torch.Tensor, TransformerLensKeyValueCache]:
    """Run ``context`` once into a KV cache (``forward``: the model's output options), then share that cache's
    keys and values, read-only, across a batch of ``n`` continuations. Returns the context's output and the
    frozen cache."""
    device = model.cfg.device
    context_ids = torch.tensor([list(context)], dtype=torch.long, device=device)
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, batch_size=1)
    out = model(context_ids, past_kv_cache=cache, attention_mask=torch.ones_like(context_ids), **forward)
    for entry in cache.entries:
        entry.past_keys = entry.past_keys.expand(n, -1, -1, -1)
        entry.past_values = entry.past_values.expand(n, -1, -1, -1)
    cache.previous_attention_mask = cache.previous_attention_mask.expand(n, -1)
    cache.freeze()
    return out, cache


def _fit_context(model: HookedTransformer, context: Sequence[int], continuations: Sequence[Sequence[int]]
                 ) -> list[int]:
    if not context or any(len(c) == 0 for c in continuations):
        raise ValueError("context and every continuation need at least one token")
    longest = max(len(c) for c in continuations)
    if longest >= model.cfg.n_ctx:
        raise ValueError(f"a continuation of {longest} tokens does not fit the model's context of "
                         f"{model.cfg.n_ctx} tokens")
    return list(context)[-(model.cfg.n_ctx - longest):]


@torch.no_grad()
def continuation_states(model: HookedTransformer, context: Sequence[int], continuations: Sequence[Sequence[int]],
                        layer: int, pad_id: int = 0) -> ContinuationStates:
    """The residual at ``layer`` (at least 1) of the context and of each continuation after it."""
    if layer < 1:
        raise ValueError("continuation states start after at least one block (layer >= 1); use "
                         "continuation_logprobs for the whole model")
    context = _fit_context(model, context, continuations)
    device = model.cfg.device
    context_resid, cache = _context_pass(model, context, len(continuations), stop_at_layer=layer)
    ids, mask = right_pad([list(c) for c in continuations], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    inputs = ids[:, :-1]
    resid = model(inputs, stop_at_layer=layer, past_kv_cache=cache, attention_mask=torch.ones_like(inputs)) \
        if inputs.shape[1] else context_resid.new_zeros(len(continuations), 0, context_resid.shape[-1])
    return ContinuationStates(layer, context_resid, resid, ids, mask)


@torch.no_grad()
def every_layer_states(model: HookedTransformer, context: Sequence[int], continuations: Sequence[Sequence[int]],
                       pad_id: int = 0) -> list[ContinuationStates]:
    """:class:`ContinuationStates` at the input of every block (item ``l``: block ``l``), from one pass.

    Why: many interventions scored on the same problem change nothing below their lowest block, so each can
    start there (:func:`continuation_logprobs_from_states`) instead of at the embeddings."""
    context = _fit_context(model, context, continuations)
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in names}  # context, then continuations

    def keep(x: torch.Tensor, hook: Any) -> None:
        seen[hook.name].append(x.detach())

    device = model.cfg.device
    ids, mask = right_pad([list(c) for c in continuations], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    inputs = ids[:, :-1]  # the last token predicts nothing scored
    with model.hooks(fwd_hooks=[(name, keep) for name in names]):
        _, cache = _context_pass(model, context, len(continuations), stop_at_layer=model.cfg.n_layers)
        if inputs.shape[1]:
            model(inputs, stop_at_layer=model.cfg.n_layers, past_kv_cache=cache,
                  attention_mask=torch.ones_like(inputs))
    empty = torch.zeros(len(continuations), 0, model.cfg.d_model, device=device)
    return [ContinuationStates(layer, seen[name][0], seen[name][1] if len(seen[name]) > 1 else empty, ids, mask)
            for layer, name in enumerate(names)]


@torch.no_grad()
def continuation_logprobs_from_states(model: HookedTransformer, states: ContinuationStates
                                      ) -> Float[torch.Tensor, "n_continuations"]:
    """:func:`continuation_logprobs` from :class:`ContinuationStates`: only blocks ``layer`` and up run."""
    device = states.context.device
    n = states.ids.shape[0]
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, batch_size=1)
    final = model(states.context, start_at_layer=states.layer, stop_at_layer=model.cfg.n_layers,
                  past_kv_cache=cache)
    first_logprobs = torch.log_softmax(unembed(model, final[:, -1:])[0, 0].float(), dim=-1)
    for entry in cache.entries[states.layer:]:
        entry.past_keys = entry.past_keys.expand(n, -1, -1, -1)
        entry.past_values = entry.past_values.expand(n, -1, -1, -1)
    totals = first_logprobs[states.ids[:, 0]]
    if states.ids.shape[1] > 1:
        cache.freeze()
        hidden = model(states.continuations, start_at_layer=states.layer, stop_at_layer=model.cfg.n_layers,
                       past_kv_cache=cache)
        logits = unembed(model, hidden)
        step = token_logprobs(logits, states.ids[:, 1:]) * states.mask[:, 1:]
        totals = totals + step.sum(-1)
    return totals


def unembed(model: HookedTransformer, hidden: Float[torch.Tensor, "b p d"]) -> Float[torch.Tensor, "b p vocab"]:
    """Final norm and unembedding of the given positions only. ``hidden @ W_U`` directly: TransformerLens's
    ``Unembed`` makes a contiguous copy of ``W_U.T`` (113 MB for SmolLM2) on every call. The soft cap of
    models that have one (Gemma 2) is applied as the model's own forward does."""
    from transformer_lens.utilities import apply_softcap

    if model.cfg.normalization_type is not None:
        hidden = model.ln_final(hidden)
    return apply_softcap(hidden @ model.unembed.W_U + model.unembed.b_U, model.cfg.output_logits_soft_cap)
