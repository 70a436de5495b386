"""The configuration of a YFPO run: one dataclass, validated, written into every run directory.

Every field carries its help text (``metadata["help"]``), which the CLI turns into ``--flags`` and the
app into form labels. ``lam = 0`` is plain DPO; the neuron term's options are documented in
:mod:`yfpo_core.training.losses`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

TRAINABLE_SCOPES = ("mlp_last_k", "units", "units+mlp_last_k", "all")
POOLINGS = ("diverge", "mean", "max", "last")
SIGN_SOURCES = ("pairs", "set", "score", "none")
PAIR_SOURCES = ("corrupt-final", "corrupt-step", "corrupt-mixed", "on-policy")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class YFPOConfig:
    """Everything that defines a run (model, data, objective, optimisation, evaluation)."""

    # -- what to train -----------------------------------------------------------------------------
    model: str = _f("smollm2-135m-instruct", "model name or folder")
    neuron_set: str | None = _f(None, "neuron-set JSON whose units give the neuron reward (needed when lam > 0)")
    random_units_seed: int | None = _f(None, "replace the set's units by a random set of the same size and "
                                             "layers drawn with this seed (the random-set control)")
    # -- data ----------------------------------------------------------------------------------------
    problems: str = _f("gsm-symbolic", "problems the training pairs are made from")
    pairs: str | None = _f(None, "a pairs JSONL file instead of making pairs from --problems")
    pair_source: str = _f("corrupt-final", "how pairs are made: " + ", ".join(PAIR_SOURCES))
    n_train_problems: int = _f(64, "problems used for training pairs")
    eval_problems: str = _f("gsm-symbolic", "held-out problems for eval/ metrics (disjoint from training)")
    n_eval_problems: int = _f(32, "held-out problems for eval/ranking_accuracy and eval/gold_logprob")
    eval_seed: int | None = _f(None, "data seed of the held-out problems (default: seed + 1); fix it to evaluate "
                                     "every seed on the same problems")
    n_train_templates: int = _f(20, "gsm-symbolic for both training and held-out problems: templates 0..N-1 make "
                                    "the training problems, the others the held-out ones")
    max_length: int = _f(320, "tokens per sequence (prompt + response), longer ones are cut")
    # -- objective -------------------------------------------------------------------------------------
    beta: float = _f(0.1, "DPO beta")
    lam: float = _f(0.1, "weight of the neuron-margin term; 0 = plain DPO")
    gamma: float = _f(1.0, "slope inside the neuron term's log-sigmoid (variant A)")
    variant: str = _f("A", "A: L_DPO - lam log sigmoid(gamma m); C: -log sigmoid(beta h + lam m); "
                           "D: -log sigmoid(beta h - lam m0) with m0 from the frozen model")
    pooling: str = _f("diverge", "pool unit activations over response tokens: diverge (mean from the first token "
                                 "where the pair's responses differ), mean, max or last", choices=POOLINGS)
    standardize: bool = _f(True, "standardise each unit's activation with base-model statistics")
    sign: str = _f("pairs", "each unit counts with the sign of its effect on the target: pairs (gradient sign of the "
                            "chosen log-prob on the training pairs), set (the set's stored directions), score (sign "
                            "of the attribution score) or none", choices=SIGN_SOURCES)
    target_share: float = _f(0.0, "if > 0 (variant A): set lambda at each step so that the neuron term supplies "
                                  "this share of the gradient norm (0 < share < 1); lam is then ignored")
    grad_share: bool = _f(True, "log the gradient norms of the DPO and neuron terms and the neuron term's share "
                                "of the update every step (one extra backward from the units; target_share needs it)")
    subtract_ref_margin: bool = _f(False, "use the margin minus the same margin under the frozen model")
    # -- optimisation ----------------------------------------------------------------------------------
    trainable: str = _f("mlp_last_k", "what trains: " + ", ".join(TRAINABLE_SCOPES))
    last_k: int = _f(4, "how many final MLP blocks train (mlp_last_k scopes)")
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
    n_exact_problems: int = _f(0, "held-out problems for eval/exact_match (generation is slow on CPU)")
    checkpoint_every: int = _f(10, "write a checkpoint every N steps (and at the end)")
    device: str = _f("cpu", "cpu or cuda")

    def __post_init__(self) -> None:
        problems = []
        if self.trainable not in TRAINABLE_SCOPES:
            problems.append(f"trainable must be one of {', '.join(TRAINABLE_SCOPES)}")
        if self.variant not in ("A", "C", "D"):
            problems.append("variant must be A, C or D")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {', '.join(POOLINGS)}")
        if self.sign not in SIGN_SOURCES:
            problems.append(f"sign must be one of {', '.join(SIGN_SOURCES)}")
        if not 0 <= self.target_share < 1:
            problems.append("target_share must be in [0, 1)")
        if self.target_share > 0 and self.variant != "A":
            problems.append("target_share works with variant A only")
        if self.target_share > 0 and not self.neuron_set:
            problems.append("target_share > 0 needs a neuron_set")
        if self.pair_source not in PAIR_SOURCES:
            problems.append(f"pair_source must be one of {', '.join(PAIR_SOURCES)}")
        if self.lam < 0:
            problems.append("lam must be >= 0")
        if self.lam > 0 and not self.neuron_set:
            problems.append("lam > 0 needs a neuron_set (or set lam = 0 for plain DPO)")
        if self.trainable.startswith("units") and not self.neuron_set:
            problems.append(f"trainable={self.trainable} needs a neuron_set")
        for name in ("steps", "batch_pairs", "max_length", "last_k"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.beta <= 0 or self.lr <= 0:
            problems.append("beta and lr must be > 0")
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
        data = dict(data)
        if "signed" in data and "sign" not in data:  # configs written before the sign option
            data["sign"] = "score" if data.pop("signed") else "none"
        data.pop("signed", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            from yfpo_core.errors import YfpoError

            raise YfpoError(f"unknown training config keys {unknown}; valid keys: {', '.join(sorted(known))}")
        return cls(**data)
