"""The YFPO objective as pure functions: DPO, the units' activation score and margin, and the combined loss.

DPO (Rafailov et al. 2023), as in TRL's ``sigmoid`` loss::

    h      = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
    L_DPO  = -log sigmoid(beta * h)
    rewards/chosen = beta * (log pi(y_w|x) - log pi_ref(y_w|x))   (detached; likewise rewards/rejected)

YFPO (Yoked Feature Preference Optimization, arXiv 2605.11906) adds a reward from the selected units'
activation margin between the preferred and the dispreferred response, ``m = A(x, y_w) - A(x, y_l)``,
where ``A`` pools the units' activations over the response tokens inside the policy's graph. Only the
abstract is public, so each choice is an option and ``lam = 0`` is exactly DPO:

* ``"A"`` (default): ``L = L_DPO - lam * log sigmoid(gamma * m)``, an additive auxiliary term;
* ``"C"``: ``L = -log sigmoid(beta * h + lam * m)``, the margin yoked inside the DPO logit;
* ``"D"``: ``L = -log sigmoid(beta * h - lam * m0)``, a fixed target margin ``m0`` from the frozen model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float

LossVariant = Literal["A", "C", "D"]
Pooling = Literal["mean", "max", "last"]


@dataclass
class LossOutput:
    """The scalar to minimise, its named parts and detached per-batch metrics (TRL's names)."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def dpo_loss(policy_chosen: Float[torch.Tensor, "b"], policy_rejected: Float[torch.Tensor, "b"],
             ref_chosen: Float[torch.Tensor, "b"], ref_rejected: Float[torch.Tensor, "b"], beta: float = 0.1
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss, the DPO logit ``beta * h`` and the implicit rewards (detached).

    Returns:
        ``(losses, logits, chosen_rewards, rejected_rewards)``, each of shape ``[b]``.
    """
    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = -F.logsigmoid(logits)
    return losses, logits, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def activation_score(activations: Float[torch.Tensor, "b t u"], mask: Float[torch.Tensor, "b t"],
                     pooling: Pooling = "mean", mean: Float[torch.Tensor, "u"] | None = None,
                     std: Float[torch.Tensor, "u"] | None = None, signs: Float[torch.Tensor, "u"] | None = None
                     ) -> Float[torch.Tensor, "b"]:
    """A(x, y): the selected units' activations pooled over response tokens, then averaged over units.

    Args:
        activations: Unit activations at every position (taken inside the policy's graph).
        mask: 1 on response tokens, 0 elsewhere (prompt, padding).
        pooling: ``mean`` over response tokens, ``max`` over them, or the ``last`` response token.
        mean, std: Per-unit statistics from the base model; when given, activations are standardised
            first so that units with large activations do not dominate.
        signs: Per-unit +1/-1 (e.g. the sign of the unit's attribution score) or ``None``; a unit whose
            activation opposes the answer then counts as "more active" when it is more negative.
    """
    x = activations.float() if activations.dtype in (torch.float16, torch.bfloat16) else activations
    if mean is not None and std is not None:
        x = (x - mean) / std.clamp_min(1e-6)
    if signs is not None:
        x = x * signs
    m = mask.to(x.dtype).unsqueeze(-1)  # [b, t, 1]
    if pooling == "mean":
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
    elif pooling == "max":
        pooled = x.masked_fill(m == 0, float("-inf")).amax(1)
    elif pooling == "last":
        last = (mask.cumsum(1) * mask).argmax(1)  # index of the last response token
        pooled = x[torch.arange(x.shape[0], device=x.device), last]
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return pooled.mean(-1)


def yfpo_loss(dpo_logits: Float[torch.Tensor, "b"], margin: Float[torch.Tensor, "b"] | None, *, lam: float,
              gamma: float = 1.0, variant: LossVariant = "A", fixed_margin: Float[torch.Tensor, "b"] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair YFPO loss and its auxiliary part (zero for ``lam = 0``, which is exactly DPO).

    Args:
        dpo_logits: ``beta * h`` from :func:`dpo_loss`.
        margin: ``A(x, y_w) - A(x, y_l)`` under the policy (variants A and C).
        lam, gamma: Weight of the neuron term and the slope inside its sigmoid (variant A).
        variant: ``"A"``, ``"C"`` or ``"D"`` (see the module docstring).
        fixed_margin: ``m0`` from the frozen model (variant D).
    """
    dpo = -F.logsigmoid(dpo_logits)
    if lam == 0:
        return dpo, torch.zeros_like(dpo)
    if variant == "A":
        aux = -lam * F.logsigmoid(gamma * margin)
        return dpo + aux, aux
    if variant == "C":
        total = -F.logsigmoid(dpo_logits + lam * margin)
        return total, total - dpo
    if variant == "D":
        total = -F.logsigmoid(dpo_logits - lam * fixed_margin)
        return total, total - dpo
    raise ValueError(f"unknown YFPO variant {variant!r}: use A, C or D")
