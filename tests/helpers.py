"""Builders shared by tests (SAELens-style): tiny random models from a config."""

from __future__ import annotations

import torch


def tiny_config(family: str = "gpt2", d_vocab: int = 40, **overrides):
    """A HookedTransformerConfig for a tiny model of the GPT-2 family (LayerNorm, GELU, learned positions)
    or the Llama family (RMSNorm, gated SiLU MLP, rotary attention with grouped KV heads)."""
    from transformer_lens import HookedTransformerConfig

    common = dict(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=48, n_ctx=64, d_vocab=d_vocab,
                  dtype=torch.float32, device="cpu", seed=0)
    if family == "gpt2":
        family_kwargs = dict(act_fn="gelu", normalization_type="LN", positional_embedding_type="standard")
    elif family == "llama":
        family_kwargs = dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
                             rotary_dim=8, gated_mlp=True, n_key_value_heads=2, final_rms=True)
    else:
        raise ValueError(family)
    return HookedTransformerConfig(**{**common, **family_kwargs, **overrides})


def tiny_hooked(family: str = "gpt2", **overrides):
    from transformer_lens import HookedTransformer

    model = HookedTransformer(tiny_config(family, **overrides), move_to_device=False)
    model.eval()
    return model
