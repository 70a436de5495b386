"""Llama-family Hugging Face models as TransformerLens models (yfpo_core.models.llama)."""

from __future__ import annotations

import torch

from yfpo_core.models.llama import hooked_from_llama, tl_config_kwargs


def _config(**overrides):
    from transformers import LlamaConfig

    base = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=50, max_position_embeddings=128, rms_norm_eps=1e-5)
    return LlamaConfig(**{**base, **overrides})


def test_config_by_hand():
    kwargs = tl_config_kwargs(_config())
    assert {k: kwargs[k] for k in ("d_model", "d_head", "n_heads", "n_key_value_heads", "d_mlp", "n_layers",
                                   "n_ctx", "d_vocab", "rotary_dim", "eps")} == {
        "d_model": 32, "d_head": 8, "n_heads": 4, "n_key_value_heads": 2, "d_mlp": 64, "n_layers": 2,
        "n_ctx": 128, "d_vocab": 50, "rotary_dim": 8, "eps": 1e-5}  # 32 / 4 heads; the model's 128 positions
    assert kwargs["rotary_base"] == 10000.0 and kwargs["gated_mlp"] and kwargs["act_fn"] == "silu"
    assert tl_config_kwargs(_config(max_position_embeddings=8192), n_ctx=2048)["n_ctx"] == 2048
    assert tl_config_kwargs(_config(head_dim=16))["d_head"] == 16  # an explicit head_dim wins


def test_the_converted_model_gives_the_hf_model_s_logits():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaForCausalLM(_config()).eval()
    model, kwargs = hooked_from_llama(hf, tokenizer=None)
    ids = torch.tensor([[1, 7, 3, 42, 9, 0]])
    with torch.no_grad():
        tl, ref = model(ids), hf(ids).logits
    # the unembedding is centred by the conversion: logits agree up to a constant per position
    torch.testing.assert_close(tl - tl.mean(-1, keepdim=True), ref - ref.mean(-1, keepdim=True), atol=1e-4, rtol=0)
    assert kwargs["normalization_type"] == "RMSPre"  # norms folded into the next matrices
