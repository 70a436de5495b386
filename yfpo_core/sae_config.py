"""How to train an SAE: kept apart from :mod:`yfpo_core.saes` so that ``yfpo --help`` stays light."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SAETrainConfig:
    """How to train an SAE (the fields become ``yfpo sae train`` flags)."""

    model: str = "smollm2-135m-instruct"
    hook: str = "blocks.15.mlp.hook_post"
    tokens: int = 500_000
    width: int = 2048
    l1: float = 5.0
    lr: float = 3e-4
    context_size: int = 128
    batch_tokens: int = 1024
    buffer_batches: int = 16
    math_fraction: float = 0.8
    seed: int = 42
    checkpoints: int = 2
    fp16: bool = True
