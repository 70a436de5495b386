"""The configuration of a YFPO run: one dataclass, validated, written into every run directory.

Every field carries its help text (``metadata["help"]``), which the CLI turns into ``--flags`` and the
app into form labels, and a choice field its allowed values (``metadata["choices"]``), which the
validation and the Train form read. ``lam = 0`` is plain DPO; the neuron term's options are documented in
:mod:`yfpo_core.training.losses`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from yfpo_core.training import metric_names as M

# The allowed values of the choice fields; each field's metadata["choices"] holds its tuple (as TRL's
# configs do), which the validation, the CLI and the Train form read.
DEFAULT_LAST_K = 4  # the final MLP blocks that train by default (all of them in a model with fewer)
TRAINABLE_SCOPES = ("mlp_last_k", "units", "units+mlp_last_k", "all")
VARIANTS = ("A", "C", "D")
POOLINGS = ("diverge", "mean", "max", "last")
SIGN_SOURCES = ("pairs", "set", "score", "none")
PAIR_SOURCES = ("corrupt-final", "corrupt-step", "corrupt-mixed", "on-policy")


# Allowed ranges of the numeric fields, (low, high, low_inclusive); high is always inclusive. A field not
# listed here is still type-checked (see :func:`field_problems`). Chosen so that nothing in range can make
# a step non-finite by itself: lr above 1 ruins AdamW training, a non-positive grad_clip reverses it.
NUMERIC_RANGES: dict[str, tuple[float, float, bool]] = {
    "random_units_seed": (0, 2**32 - 1, True), "seed": (0, 2**32 - 1, True),
    "n_train_problems": (1, 10**7, True), "n_eval_problems": (0, 10**7, True), "n_exact_problems": (0, 10**7, True),
    "max_length": (8, 10**6, True), "last_k": (1, 10**4, True), "steps": (1, 10**8, True),
    "batch_pairs": (1, 10**6, True), "warmup_steps": (0, 10**8, True), "eval_every": (0, 10**8, True),
    "exact_every": (0, 10**8, True), "checkpoint_every": (0, 10**8, True),
    "beta": (0.0, 1e3, False), "lam": (0.0, 1e6, True), "gamma": (0.0, 1e6, False), "lr": (0.0, 1.0, False),
    "weight_decay": (0.0, 10.0, True), "grad_clip": (0.0, 1e6, False),
    "eval_seed": (0, 2**32 - 1, True), "n_train_templates": (1, 99, True), "target_share": (0.0, 1.0, True),
    "grad_share_every": (1, 10**8, True),
}
DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]{1,2})?|mps")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_field(name: str, kind: str, value: Any) -> tuple[Any, str | None]:
    """(the value, converted where harmless, and ``None``) or (the value, what is wrong with it).

    ``kind`` is the field's annotation as written (``"int"``, ``"float"``, ``"str | None"``, ``"bool"``)."""
    optional = kind.endswith("| None")
    base = kind.removesuffix("| None").strip()
    if value is None:
        return value, None if optional else f"{name} must be set (got null)"
    if base == "bool":
        return value, None if isinstance(value, bool) else f"{name} must be true or false, got {_shown(value)}"
    if base == "str":
        return value, None if isinstance(value, str) else f"{name} must be text, got {_shown(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "a whole number" if base == "int" else "a number"
        return value, f"{name} must be {what}, got {_shown(value)} ({type(value).__name__})"
    if not math.isfinite(value):
        return value, f"{name} must be a finite number, got {value}"
    if base == "int":
        if isinstance(value, float):
            if not value.is_integer():
                return value, f"{name} must be a whole number, got {value}"
            value = int(value)  # 10.0 from a JSON writer is 10
    elif base == "float":
        value = float(value)
    low, high, low_inclusive = NUMERIC_RANGES.get(name, (-math.inf, math.inf, True))
    if value < low or (value == low and not low_inclusive) or value > high:
        lower = f">= {low:g}" if low_inclusive else f"> {low:g}"
        return value, f"{name} must be {lower} and <= {high:g}, got {_shown(value)}"
    return value, None


def field_problems(config: Any) -> list[str]:
    """Type and range problems of every field of ``config`` (converting whole floats to ints in place)."""
    problems = []
    for f in fields(config):
        value, problem = _check_field(f.name, str(f.type), getattr(config, f.name))
        if problem:
            problems.append(problem)
        else:
            setattr(config, f.name, value)
    return problems


DEFAULT_MAX_LENGTH = 320


def sequence_length(max_length: int, n_ctx: int) -> int:
    """Tokens per training sequence on a model with context ``n_ctx``: the one rule for ``max_length``, which
    the trainer, its held-out probe, input resolution (so the CLI and the API refuse before any work) and
    the Train form all apply.

    A ``max_length`` the context holds is used as it is. The default (:data:`DEFAULT_MAX_LENGTH`) is a
    ceiling that a shorter context lowers, so that a small model (the toy model has 256 positions) trains
    without a flag and runs recorded with the default resume. Any other value above the context is refused:
    positions past it do not exist, and a run must not train shorter sequences than it records.

    Raises:
        YfpoError: ``max_length`` is not the default and exceeds ``n_ctx``.
    """
    max_length, n_ctx = int(max_length), int(n_ctx)
    if max_length <= n_ctx:
        return max_length
    if max_length == DEFAULT_MAX_LENGTH:
        return n_ctx
    from yfpo_core.errors import YfpoError

    raise YfpoError(f"invalid training config: max_length {max_length} exceeds the model's context of {n_ctx} "
                    f"tokens; set max_length to {n_ctx} or less")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class YFPOConfig:
    """Everything that defines a run (model, data, objective, optimisation, evaluation)."""

    # -- what to train -----------------------------------------------------------------------------
    model: str = _f("smollm2-135m-instruct", "model name or folder")
    neuron_set: str | None = _f(None, "neuron-set JSON whose units give the neuron reward (needed when lam > 0)")
    probe_set: str | None = _f(None, f"neuron-set JSON whose held-out margin {M.EVAL_NEURON_MARGIN} reports (default: "
                                     "neuron_set); the experiment measures every arm on the located set")
    random_units_seed: int | None = _f(None, "replace the set's units by a random set of the same size and "
                                             "layers drawn with this seed (the random-set control)")
    # -- data ----------------------------------------------------------------------------------------
    problems: str = _f("gsm-symbolic", "problems the training pairs are made from")
    pairs: str | None = _f(None, "a pairs JSONL file instead of making pairs from --problems")
    pair_source: str = _f("corrupt-final", "how pairs are made: " + ", ".join(PAIR_SOURCES), choices=PAIR_SOURCES)
    n_train_problems: int = _f(64, "problems used for training pairs")
    eval_problems: str = _f("gsm-symbolic", "held-out problems for eval/ metrics (disjoint from training)")
    n_eval_problems: int = _f(32, f"held-out problems for {M.EVAL_RANKING_ACCURACY} and {M.EVAL_GOLD_LOGPROB}")
    eval_seed: int | None = _f(None, "data seed of the held-out problems (default: seed + 1); fix it to evaluate "
                                     "every seed on the same problems")
    n_train_templates: int = _f(20, "gsm-symbolic for both training and held-out problems: templates 0..N-1 make "
                                    "the training problems, the others the held-out ones")
    max_length: int = _f(DEFAULT_MAX_LENGTH, "tokens per sequence (prompt + response), longer ones are cut; at most "
                                             "the model's context (the default is lowered to it)")
    # -- objective -------------------------------------------------------------------------------------
    beta: float = _f(0.1, "DPO beta")
    lam: float = _f(1.0, "weight of the neuron-margin term; 0 = plain DPO (1.0: chosen by the training-split sweep, README)")
    gamma: float = _f(1.0, "slope inside the neuron term's log-sigmoid (variant A)")
    variant: str = _f("A", "A: L_DPO - lam log sigmoid(gamma m); C: -log sigmoid(beta h + lam m); "
                           "D: -log sigmoid(beta h - lam m0) with m0 from the frozen model", choices=VARIANTS)
    pooling: str = _f("diverge", "pool unit activations over response tokens: diverge (mean from the first token "
                                 "where the pair's responses differ), mean, max or last", choices=POOLINGS)
    standardize: bool = _f(True, "standardise each unit's activation with base-model statistics")
    sign: str = _f("pairs", "each unit counts with the sign of its effect on the target: pairs (gradient sign of the "
                            "chosen log-prob on the training pairs), set (the set's stored directions), score (sign "
                            "of the attribution score) or none", choices=SIGN_SOURCES)
    target_share: float = _f(0.0, "if > 0 (variant A): set lambda at each step so that the neuron term supplies "
                                  "this share of the gradient norm (0 < share < 1); lam is then ignored")
    grad_share: bool = _f(True, "log the gradient norms of the DPO and neuron terms and the neuron term's share "
                                "of the update (one extra backward from the units on the steps that measure it)")
    grad_share_every: int = _f(4, "measure the gradient share at step 1, every N-th step and the last step (1 = every "
                                  "step, about 1.4x the step time on CPU; target_share measures every step)")
    subtract_ref_margin: bool = _f(False, "use the margin minus the same margin under the frozen model")
    # -- optimisation ----------------------------------------------------------------------------------
    trainable: str = _f("mlp_last_k", "what trains: " + ", ".join(TRAINABLE_SCOPES), choices=TRAINABLE_SCOPES)
    last_k: int = _f(DEFAULT_LAST_K, f"how many final MLP blocks train (mlp_last_k scopes); the default "
                                     f"{DEFAULT_LAST_K} trains every block of a smaller model, a larger value "
                                     "given is refused there")
    steps: int = _f(40, "optimizer steps")
    batch_pairs: int = _f(4, "pairs per step (per process)")
    lr: float = _f(2e-5, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay (never applied to the masked unit weights)")
    warmup_steps: int = _f(5, "linear warm-up steps")
    grad_clip: float = _f(1.0, "clip the gradient norm to this")
    seed: int = _f(0, "seed for pairs, batch order and random sets")
    # -- evaluation and files --------------------------------------------------------------------------
    eval_every: int = _f(10, "evaluate on held-out problems every N steps (and at the start and end)")
    exact_every: int = _f(0, "exact-match (generation) evaluation every N steps; 0 = only at the end if "
                               "n_exact_problems > 0")
    n_exact_problems: int = _f(0, f"held-out problems for {M.EVAL_EXACT_MATCH} (generation is slow on CPU)")
    checkpoint_every: int = _f(10, "write a checkpoint every N steps (and at the end)")
    device: str = _f("cpu", "cpu or cuda")

    def __post_init__(self) -> None:
        problems = field_problems(self)
        if problems:  # the checks below compare values, which needs the right types
            from yfpo_core.errors import YfpoError

            raise YfpoError("invalid training config: " + "; ".join(problems))
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                problems.append(f"{f.name} must be one of {', '.join(allowed)}")
        if not 0 <= self.target_share < 1:
            problems.append("target_share must be in [0, 1)")
        if self.target_share > 0 and self.variant != "A":
            problems.append("target_share works with variant A only")
        if self.target_share > 0 and not self.neuron_set:
            problems.append("target_share > 0 needs a neuron_set")
        if self.lam < 0:
            problems.append("lam must be >= 0")
        if self.lam > 0 and not self.neuron_set:
            problems.append("lam > 0 needs a neuron_set (or set lam = 0 for plain DPO)")
        if self.trainable.startswith("units") and not self.neuron_set:
            problems.append(f"trainable={self.trainable} needs a neuron_set")
        if not DEVICE_PATTERN.fullmatch(self.device):
            problems.append(f"device must be cpu, cuda, cuda:<n> or mps, got {_shown(self.device)}")
        if problems:
            from yfpo_core.errors import YfpoError

            raise YfpoError("invalid training config: " + "; ".join(problems))

    @property
    def is_dpo(self) -> bool:
        return self.lam == 0 and self.target_share == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_neuron_term(self) -> bool:
        return self.lam > 0 or self.target_share > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> YFPOConfig:
        """A config from a JSON object; every value is checked (type, finiteness, range) with the field named.

        Keys missing from ``data`` take their defaults, so config files written by earlier versions load."""
        from yfpo_core.errors import YfpoError

        if not isinstance(data, dict):
            raise YfpoError(f"a training config must be a JSON object of YFPOConfig fields, got a "
                            f"{type(data).__name__}; write it like {{\"steps\": 40, \"lam\": 0.1}}")
        data = dict(data)
        if "signed" in data and "sign" not in data:  # configs written before the sign option
            data["sign"] = "score" if data.pop("signed") is True else "none"
        data.pop("signed", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            shown = ", ".join(_shown(k) for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise YfpoError(f"unknown training config keys {shown}; valid keys: {', '.join(sorted(known))}")
        return cls(**data)
