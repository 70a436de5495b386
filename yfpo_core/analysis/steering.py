"""Steering a live generation: clamp, scale or add to a set of units while the model writes its answer.

:func:`steer_generation` writes two greedy answers to the same prompt, token by token and in turns: the
plain one and one with :class:`Steering` applied to the units (at every position, prompt included). Both
run on the TransformerLens model with a KV cache (:func:`yfpo_core.scoring.generation.stream_tl`), never on the
Hugging Face twin, which hooks do not reach: the only difference between the two columns is the steering.

* **Neurons** are changed where TransformerLens names them (``blocks.L.mlp.hook_post``).
* **SAE features** are changed through the SAE spliced in at its hook with the error term kept
  (:class:`yfpo_core.saes.sae.SAESpace`): the model reads ``decode(steered features) + error``, so adding
  ``v`` to feature ``i`` adds exactly ``v * W_dec[i]`` to the activation, and a neutral steering leaves
  the model's output unchanged.

A neutral steering (``scale 1``, ``add 0``) gives the plain answer token for token; the tests pin that
down together with "only the hooked activations change".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from yfpo_core.problems.answers import answers_match, extract_answer, format_number
from yfpo_core.scoring.generation import finish_generation, stream_tl
from yfpo_core.analysis.interventions import Intervention, intervened
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.units.unit import NEURON_HOOK, Unit

SteerKind = Literal["clamp", "scale", "add"]
STEER_KINDS: tuple[str, ...] = ("clamp", "scale", "add")


@dataclass(frozen=True)
class Steering:
    """What steering does to each unit's activation at every position.

    ``clamp``: set it to ``value``. ``scale``: multiply it by ``value``. ``add``: add ``value``.
    """

    kind: SteerKind = "add"
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in STEER_KINDS:
            raise ValueError(f"unknown steering {self.kind!r}: use clamp, scale or add")
        if not math.isfinite(self.value):
            raise ValueError(f"the steering value must be a finite number, not {self.value}")

    @property
    def neutral(self) -> bool:
        """True when it changes nothing (``scale 1`` or ``add 0``)."""
        return (self.kind, self.value) in (("scale", 1.0), ("add", 0.0))

    def intervention(self) -> Intervention:
        if self.kind == "scale":
            return Intervention("scale", factor=self.value)
        return Intervention(self.kind, value=self.value)

    def describe(self) -> str:
        return {"clamp": f"clamp to {self.value:g}", "scale": f"scale ×{self.value:g}",
                "add": f"add {self.value:+g}"}[self.kind]


@dataclass
class Answer:
    """One side of the comparison: the generated text, its token ids and its final answer."""

    text: str
    token_ids: list[int]
    stop_reason: str
    answer: str | None  # the final number read from the text
    correct: bool | None  # against the gold answer, when there is one


@dataclass
class SteeringComparison:
    """The plain and the steered answer to one prompt."""

    prompt: str
    units: list[str]
    steering: str
    gold: str | None
    plain: Answer
    steered: Answer
    problem_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_difference(self) -> int | None:
        """Index of the first generated token where the two answers differ (``None``: identical)."""
        a, b = self.plain.token_ids, self.steered.token_ids
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return i
        return None if len(a) == len(b) else min(len(a), len(b))

    def to_dict(self) -> dict[str, Any]:
        return {"problem_id": self.problem_id, "prompt": self.prompt, "units": self.units, "steering": self.steering,
                "gold": self.gold, "plain": asdict(self.plain), "steered": asdict(self.steered),
                "first_difference": self.first_difference, **self.extra}


def check_units(model: LoadedModel, units: Sequence[Unit], sae: Any = None) -> None:
    """Raise ValueError, in words, when a unit is not in ``model`` (or not in ``sae``)."""
    if not units:
        raise ValueError("steering needs at least one unit")
    cfg = model.model.cfg
    for unit in units:
        if unit.kind == "neuron":
            if not NEURON_HOOK.match(unit.hook_name) or unit.layer >= cfg.n_layers or unit.index >= cfg.d_mlp:
                raise ValueError(f"{unit.label} is out of range for {model.name} ({cfg.n_layers} layers x "
                                 f"{cfg.d_mlp} neurons)")
        elif sae is None:
            raise ValueError(f"{unit.label} is an SAE feature: steering it needs its SAE (sae=load_sae(...))")
        elif unit.sae_id != sae.sae_id or unit.index >= sae.d_sae:
            raise ValueError(f"{unit.label} is not a feature of SAE {sae.sae_id} ({sae.d_sae} features)")


@contextmanager
def steered(model: LoadedModel, units: Sequence[Unit], steering: Steering, sae: Any = None) -> Iterator[None]:
    """While active, every forward pass of ``model`` runs with ``steering`` applied to ``units`` (neurons
    through hooks; SAE features through ``sae`` spliced in with its error term). Holds the model's lock."""
    check_units(model, units, sae)
    with intervened(model, units, steering.intervention(), sae):
        yield


def _answer(model: LoadedModel, ids: list[int], max_new_tokens: int, gold: str | None) -> Answer:
    generation = finish_generation(model, ids, max_new_tokens)
    predicted = extract_answer(generation.text)
    return Answer(text=generation.text, token_ids=list(ids), stop_reason=generation.stop_reason,
                  answer=format_number(predicted) if predicted is not None else None,
                  correct=answers_match(predicted, gold) if gold is not None else None)


def steer_generation(model: LoadedModel, question: str | Problem, units: Sequence[Unit], steering: Steering, *,
                     sae: Any = None, max_new_tokens: int = 128, gold: str | None = None,
                     on_text: Callable[[str, str], None] | None = None,
                     progress: ProgressCallback | None = None) -> SteeringComparison:
    """The plain and the steered greedy answer to ``question`` (a text, or a :class:`Problem` whose gold
    answer is then checked), generated in turns one token at a time.

    ``on_text(plain_so_far, steered_so_far)`` is called after every token (for streaming); ``progress``
    counts tokens (and may stop the work by raising, as a background job's callback does)."""
    check_units(model, units, sae)
    problem_id = None
    if isinstance(question, Problem):
        problem_id, gold, question = question.id, gold if gold is not None else question.answer, question.question
    prompt = model.prompt_format.prompt(question)
    prompt_ids = model.encode_prompt(prompt)
    streams = {"plain": stream_tl(model, prompt_ids, max_new_tokens, step_context=lambda: model.lock),
               "steered": stream_tl(model, prompt_ids, max_new_tokens,
                                    step_context=lambda: steered(model, units, steering, sae))}
    ids: dict[str, list[int]] = {"plain": [], "steered": []}
    while streams:
        for side in list(streams):
            token = next(streams[side], None)
            if token is None:
                del streams[side]
            else:
                ids[side].append(token)
        if not streams:
            break
        if on_text is not None:
            on_text(model.decode(ids["plain"]), model.decode(ids["steered"]))
        done = max(len(v) for v in ids.values())
        report(progress, done, max_new_tokens, f"{done} tokens")
    return SteeringComparison(prompt=prompt, units=[u.label for u in units], steering=steering.describe(), gold=gold,
                              plain=_answer(model, ids["plain"], max_new_tokens, gold),
                              steered=_answer(model, ids["steered"], max_new_tokens, gold), problem_id=problem_id)
