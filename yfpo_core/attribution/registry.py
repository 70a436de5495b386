"""The attribution methods and targets, by name, with what each does: the one list that :func:`attribute`,
the ``yfpo locate`` command and the app read.

Kept free of heavy imports (no torch) so that ``yfpo --help`` stays fast and the app can draw its pickers
before PyTorch is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """An attribution method as users see it.

    Attributes:
        name: The name the CLI, the app and :func:`~yfpo_core.attribution.locate.attribute` take.
        help: One line on what it computes.
        batched: It scores several problems per pass (``batch_size``).
        gradient: It backpropagates from a target (the others ignore ``target``).
    """

    name: str
    help: str
    batched: bool = False
    gradient: bool = False


METHOD_INFO: dict[str, Method] = {m.name: m for m in (
    Method("attnlrp", "AttnLRP relevance (one modified backward pass; the method of the YFPO paper)", batched=True,
           gradient=True),
    Method("grad_x_act", "activation × gradient (fast, licence-clean)", batched=True, gradient=True),
    Method("integrated_gradients", "activation × path-averaged gradient (slower: 'steps' passes per problem)",
           gradient=True),
    Method("activation", "mean activation on the problems (no target)"),
    Method("contrast_math_nonmath", "math vs non-math texts, standardised difference (MathNeuro-style; no target)"),
    Method("contrast_correct_wrong", "activation on the gold answer minus on a wrong answer (no target)"),
)}
METHODS: tuple[str, ...] = tuple(METHOD_INFO)
BATCHED_METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_INFO.values() if m.batched)
GRADIENT_METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_INFO.values() if m.gradient)



def check_methods(methods: Sequence[str]) -> None:
    """The one check of method names (for :func:`~yfpo_core.attribution.locate.attribute`, the faithfulness
    curves and their CLI flags): a ``ValueError`` naming the first unknown one, or the empty list, and the
    valid names."""
    unknown = [m for m in methods if m not in METHOD_INFO]
    if unknown or not methods:
        raise ValueError(f"unknown method {unknown[0] if unknown else '(none)'!r}; choose one of {', '.join(METHODS)}")


TARGET_HELP: dict[str, str] = {
    "answer_logprob": "log p of the gold answer's tokens",
    "solution_logprob": "log p of the whole gold solution",
    "logit_diff": "logit of the gold answer minus a wrong answer at the first differing token",
}
TARGETS: tuple[str, ...] = tuple(TARGET_HELP)
