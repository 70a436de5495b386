"""How to train an SAE: kept apart from :mod:`yfpo_core.saes.sae` so that ``yfpo --help`` stays light."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SAETrainConfig:
    """How to train an SAE (the fields become ``yfpo sae train`` flags)."""

    model: str = "smollm2-135m-instruct"
    hook: str = "blocks.15.mlp.hook_post"
    tokens: int = 500_000
    width: int = 2048
    l1: float = 1.0  # sae-lens's 5 gave L0 ~4 and explained variance 0.37 on SmolLM2; 1 gave L0 32 and 0.71
    lr: float = 3e-4
    context_size: int = 128
    batch_tokens: int = 256  # more steps for the same tokens: tokens (the forward passes) are the cost
    buffer_batches: int = 16
    math_fraction: float = 0.8
    seed: int = 42
    checkpoints: int = 2
    fp16: bool = True
