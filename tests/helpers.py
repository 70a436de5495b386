"""Builders shared by tests (SAELens-style): tiny random models, a tiny SAE, a trainer on a tiny model.

Every test that needs one of these builds it here, so that a change of the model classes or of sae-lens's
folder format is made once. The pytest fixtures that use them are in ``conftest.py``.
"""

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


def tiny_toy(seed: int = 0, **architecture: int):
    """A tiny random model of the toy family (character tokenizer, so it reads toy problems), wrapped as the
    workbench wraps a loaded model: ``tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64)``."""
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model

    return wrap_toy_model(build_toy_model(toy_config_kwargs(architecture), seed=seed), source="test")


def save_tiny_sae(folder, d_in: int = 64, d_sae: int = 16, hook_name: str = "blocks.1.mlp.hook_post"):
    """A tiny SAE of ``d_sae`` features reading ``hook_name`` (width ``d_in``), with random weights drawn from a
    fixed seed, saved in sae-lens's folder format; returns the folder. What the tests do with it does not
    depend on training."""
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook_name
    sae = StandardSAE(cfg)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator) * 0.3)
    sae.save_model(str(folder))
    return folder


# -- a trainer on a tiny model (the ``setup`` fixture of conftest.py registers the model and writes the set) --
TINY_TRAINER = "tiny-trainer-test"


def trainer_model():
    return tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=128)


def trainer_config(tmp_path, **overrides):
    """A short YFPO run of :data:`TINY_TRAINER` on toy problems with the set ``tmp_path / "set.json"``."""
    from yfpo_core.training.config import YFPOConfig

    base = dict(model=TINY_TRAINER, neuron_set=str(tmp_path / "set.json"), problems="toy", eval_problems="toy",
                n_train_problems=8, n_eval_problems=4, steps=6, batch_pairs=4, lam=1.0, trainable="units",
                lr=1e-2, warmup_steps=0, eval_every=3, checkpoint_every=2)
    return YFPOConfig(**{**base, **overrides})


def trainer_for(cfg):
    """A :class:`YFPOTrainer` on ``cfg``'s inputs, as a run would build it."""
    from yfpo_core.runs import resolve_inputs
    from yfpo_core.training.trainer import YFPOTrainer

    inputs = resolve_inputs(cfg)
    return YFPOTrainer(cfg, inputs.base, inputs.pairs, inputs.eval_problems, inputs.units, inputs.scores,
                       saes=inputs.saes, directions=inputs.directions, probe_units=inputs.probe_units,
                       probe_scores=inputs.probe_scores, probe_directions=inputs.probe_directions)
