"""Llama-family Hugging Face models (SmolLM2, local Llama folders) as TransformerLens models.

TransformerLens's ``from_pretrained`` only knows its list of official names and refuses a GGUF-loaded
model, so we write the ``HookedTransformerConfig`` from the HF config by hand and reuse TransformerLens's
own Llama weight converter and weight processing (RMSNorm weights folded into the next matrices,
writing weights and unembedding centred). After processing, the norms are ``RMSPre`` (scale only).
"""

from __future__ import annotations

from typing import Any

import torch


def tl_config_kwargs(hf_config: Any, n_ctx: int = 2048) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments for a ``LlamaConfig``, JSON-serialisable
    (dtype and device are added by the caller)."""
    c = hf_config
    rope = getattr(c, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return dict(
        d_model=c.hidden_size, d_head=head_dim, n_heads=c.num_attention_heads,
        n_key_value_heads=c.num_key_value_heads, d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers,
        n_ctx=min(n_ctx, getattr(c, "max_position_embeddings", n_ctx)), eps=float(c.rms_norm_eps),
        d_vocab=c.vocab_size, act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
        rotary_adjacent_pairs=False, rotary_dim=head_dim, rotary_base=float(rope_theta), final_rms=True,
        gated_mlp=True, original_architecture="LlamaForCausalLM", tokenizer_prepends_bos=False,
        default_prepend_bos=False,
    )


def hooked_from_llama(hf_model: Any, tokenizer: Any, device: str = "cpu", n_ctx: int = 2048):
    """Convert a loaded ``LlamaForCausalLM`` (fp32) into a processed ``HookedTransformer`` on ``device``.

    Returns the model and the config kwargs as saved in the cache (``normalization_type="RMSPre"``).
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    kwargs = tl_config_kwargs(hf_model.config, n_ctx=n_ctx)
    cfg = HookedTransformerConfig(**kwargs, dtype=torch.float32, device="cpu")
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(convert_llama_weights(hf_model, cfg), fold_ln=True,
                                      center_writing_weights=True, center_unembed=True, fold_value_biases=True)
    model.to(device, print_details=False)
    return model, {**kwargs, "normalization_type": model.cfg.normalization_type}
