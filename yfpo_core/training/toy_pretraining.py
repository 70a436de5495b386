"""Deterministic training of the ``toy-arith`` model (what ``yfpo toy train`` runs).

A plain nanoGPT-style loop, kept readable on purpose:

1. **Data** (:func:`example_stream`): fresh rows, each starting at position 0 with ``<bos>`` as at
   inference time and ending with ``<eos>``, one of three kinds:

   * a toy word problem (:func:`~yfpo_core.problems.synthetic.generate_toy_problems`) formatted by the
     model's :class:`~yfpo_core.models.prompts.PlainPromptFormat`, so training text is exactly the text the
     model is scored on: ``"Q: Ann has 12 pens. She buys 7 more. ...\nA: 12+7=19. #### 19\n"``;
   * a row of arithmetic drills (:func:`drill_text`), ``"Q: What is 12+7?\nA: 12+7=19. #### 19\n"``
     three times over, which is where most of the arithmetic is learned (word problems alone carry
     too little of it for a few minutes of CPU: 0.4-0.6 held-out exact match instead of 0.9);
   * with probability ``nonmath_fraction``, a digit-free fact
     (:func:`~yfpo_core.problems.synthetic.generate_toy_nonmath`), so the model also has non-math
     features to contrast math neurons with.

2. **Loss.** Next-token cross-entropy on the answers (``loss_on="response"``): questions hold random
   names and numbers that cannot be predicted; ``"all"`` trains on every token.
3. **Optimiser.** AdamW (weight decay on matrices only), linear warm-up then cosine decay to
   ``min_lr_ratio * lr``, gradient clipping.
4. **Evaluation** (:func:`evaluate_toy_model`). Greedy exact match
   (:func:`yfpo_core.scoring.evaluate.exact_match`) and answer ranking on fresh word problems generated with
   ``eval_seed`` (a different seed from training), per kind; plus exact answers on held-out facts.

Determinism: the only randomness is the weight initialisation (``torch.manual_seed(seed)`` inside a
forked RNG) and the data stream (``random.Random``-based generators seeded from ``seed``); there is no
dropout, ``torch.use_deterministic_algorithms(True)`` is on and the CPU thread count is fixed
(``num_threads``) during training. Two runs of one config on one machine give bit-identical weights.
Another CPU type (other SIMD kernels) or another torch version can change float rounding, so
bit-identity across machines is not promised.
"""

from __future__ import annotations

import math
import platform
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from yfpo_core.models.toy import (
    DEFAULT_ARCHITECTURE,
    build_toy_model,
    save_toy_model,
    toy_config_kwargs,
    wrap_toy_model,
)
from yfpo_core.problems.base import Problem
from yfpo_core.problems.synthetic import TOY_KINDS, generate_toy_nonmath, generate_toy_problems
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.models.prompts import PlainPromptFormat

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

    from yfpo_core.models.base import LoadedModel

# Seeds of the data streams are offset from the training seed so that the problem stream, the non-math
# stream and the order in which they are mixed never share a generator.
_PROBLEM_STREAM, _NONMATH_STREAM, _MIX_STREAM = 0, 1, 2
DEFAULT_EVAL_SEED = 9_999
ANSWER_PREFIX = PlainPromptFormat().answer_prefix  # "\nA: "


@dataclass(frozen=True)
class ToyTrainConfig:
    """Everything that determines a toy training run (and its saved metadata)."""

    seed: int = field(default=0, metadata={"help": "seed of the weight init and of the training data"})
    steps: int = field(default=1800, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "rows per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW)"})
    min_lr_ratio: float = field(default=0.05, metadata={"help": "final LR as a fraction of the peak (cosine)"})
    warmup_steps: int = field(default=50, metadata={"help": "steps of linear LR warm-up"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay, on weight matrices only"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm (0 = no clipping)"})
    loss_on: str = field(default="response", metadata={
        "help": "train on the 'response' after each 'A: ' (questions hold random names and numbers) or on 'all'"})
    n_layers: int = field(default=DEFAULT_ARCHITECTURE["n_layers"], metadata={"help": "transformer layers"})
    d_model: int = field(default=DEFAULT_ARCHITECTURE["d_model"], metadata={"help": "residual width"})
    n_heads: int = field(default=DEFAULT_ARCHITECTURE["n_heads"], metadata={"help": "attention heads per layer"})
    d_mlp: int = field(default=DEFAULT_ARCHITECTURE["d_mlp"], metadata={"help": "MLP neurons per layer"})
    n_ctx: int = field(default=DEFAULT_ARCHITECTURE["n_ctx"], metadata={"help": "context length (positions)"})
    nonmath_fraction: float = field(default=0.2, metadata={"help": "share of rows that are digit-free facts"})
    drill_fraction: float = field(default=0.6, metadata={
        "help": "share of rows that are bare-arithmetic drills ('Q: What is 12+7?\\nA: 12+7=19. #### 19')"})
    drills_per_row: int = field(default=3, metadata={"help": "drills concatenated into one drill row"})
    kinds: tuple[str, ...] = field(default=TOY_KINDS, metadata={"help": "problem kinds to train on"})
    kind_weights: tuple[float, ...] | None = field(default=None, metadata={
        "help": "relative frequency of each kind in training (default: equal)"})
    eval_problems: int = field(default=200, metadata={"help": "held-out problems for the final eval (0 = none)"})
    eval_seed: int = field(default=DEFAULT_EVAL_SEED, metadata={"help": "seed of the held-out problems"})
    log_every: int = field(default=50, metadata={"help": "steps between entries of the saved loss history"})
    deterministic: bool = field(default=True, metadata={"help": "torch.use_deterministic_algorithms during training"})
    num_threads: int = field(default=1, metadata={
        "help": "torch CPU threads while training; the thread count changes float summation order, so it is "
                "fixed to make reruns bit-identical on any machine (0 = torch's default)"})

    def __post_init__(self) -> None:
        if self.loss_on not in ("all", "response"):
            raise ValueError(f"loss_on must be 'all' or 'response', not {self.loss_on!r}")
        if self.eval_problems and self.eval_seed == self.seed:
            raise ValueError("eval_seed must differ from seed, or the evaluation is not held out")
        if min(self.nonmath_fraction, self.drill_fraction) < 0 or self.nonmath_fraction + self.drill_fraction >= 1:
            raise ValueError("nonmath_fraction and drill_fraction must be >= 0 and leave room for word problems")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.kind_weights is not None:
            object.__setattr__(self, "kind_weights", tuple(float(w) for w in self.kind_weights))
            if len(self.kind_weights) != len(self.kinds) or min(self.kind_weights) < 0 or not any(self.kind_weights):
                raise ValueError("kind_weights needs one non-negative weight per kind, not all zero")

    def architecture(self) -> dict[str, int]:
        return {"n_layers": self.n_layers, "d_model": self.d_model, "n_heads": self.n_heads,
                "d_mlp": self.d_mlp, "n_ctx": self.n_ctx}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        d["kind_weights"] = list(self.kind_weights) if self.kind_weights is not None else None
        return d

    def python_call(self, out: str | Path | None = None) -> str:
        """A one-line Python command that reruns this configuration (recorded in the saved metadata).

        Every field is spelled out, so the command still reproduces the run after defaults change.
        """
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        out_arg = f", out=Path({str(out)!r})" if out is not None else ""
        return ('python -c "from pathlib import Path; from yfpo_core.training.toy_pretraining import ToyTrainConfig, '
                f'train_toy_model; train_toy_model(ToyTrainConfig({args}){out_arg})"')


@dataclass
class ToyTrainResult:
    """A trained model with its loss history and final evaluation."""

    model: HookedTransformer
    config: ToyTrainConfig
    history: list[dict[str, float]]  # one entry per step: step, loss, lr
    final: dict[str, Any]  # final metrics (see :func:`evaluate_toy_model`); empty if eval_problems == 0
    train_seconds: float
    eval_seconds: float
    saved_to: Path | None = None

    def loaded(self, source: str = "toy model trained in this session") -> LoadedModel:
        return wrap_toy_model(self.model, source)

    def metadata(self, command: str | None = None, out: str | Path | None = None) -> dict[str, Any]:
        """JSON-serialisable facts for ``config.json``: config, metrics, timings, versions, commands."""
        import transformer_lens

        every = max(self.config.log_every, 1)
        sparse = [h for h in self.history if h["step"] % every == 0 or h["step"] == len(self.history)]
        return {
            "training_config": self.config.to_dict(),
            "seed": self.config.seed,
            "steps": self.config.steps,
            "final_metrics": self.final,
            "final_train_loss": self.history[-1]["loss"] if self.history else None,
            "loss_history": sparse,
            "train_seconds": round(self.train_seconds, 1),
            "eval_seconds": round(self.eval_seconds, 1),
            "command": command if command is not None else " ".join(sys.argv),
            "python_command": self.config.python_call(out),
            "torch_version": torch.__version__,
            "transformer_lens_version": getattr(transformer_lens, "__version__", None) or _dist_version(),
            "python_version": platform.python_version(),
            "machine": platform.machine(),
            "torch_threads": self.config.num_threads or torch.get_num_threads(),
        }


def _dist_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("transformer-lens")
    except metadata.PackageNotFoundError:
        return None


# -- data -------------------------------------------------------------------------------------------
def training_text(question: str, solution: str, prompt_format: PlainPromptFormat = PlainPromptFormat()) -> str:
    """The text of one training example (without ``<bos>``/``<eos>``): prompt + response + end."""
    return prompt_format.prompt(question) + prompt_format.response(solution) + prompt_format.end_of_response


def drill_text(problem: Problem, question: str = "What is {}?") -> str:
    """A problem's bare arithmetic as a short Q/A with the same solution, e.g.
    ``"Q: What is 12+7-3?\nA: 12+7=19. 19-3=16. #### 16\n"``.

    Why drills: in a word problem only the two to four result digits are arithmetic, about 3% of the
    tokens, and the model computes them from the operands it has just copied into its answer (``12+7=``).
    A row of drills trains that computation, and the copying of operands from the question, several
    times more densely, which is what lets a few CPU minutes suffice. (Bare worksheets, ``"12+7=19.
    4*5=20."``, are denser still but teach no copying; models trained on them fail to copy operands.)
    """
    steps = re.findall(r"(\d+)([+\-*])(\d+)=\d+", problem.solution)
    expression = steps[0][0] + "".join(op + rhs for _, op, rhs in steps)
    return training_text(question.format(expression), problem.solution)


def example_stream(config: ToyTrainConfig) -> Iterator[str]:
    """The training rows in order, a pure function of the config's seed, kinds and mixture.

    Each row is a digit-free fact with probability ``nonmath_fraction``, ``drills_per_row`` concatenated
    drills (:func:`drill_text`) with probability ``drill_fraction``, else one word problem; kinds are
    drawn with ``kind_weights``. Packing drills spreads equations over the positions where word-problem
    answers appear (learned absolute positions do not transfer between positions on their own). Every
    kind, the drills and the
    facts have their own generator, fed in chunks with seeds derived from ``config.seed``, so the stream
    never ends and changing one weight does not reshuffle the others.
    """
    mix = random.Random(config.seed * 1000 + _MIX_STREAM)
    weights = config.kind_weights or (1.0,) * len(config.kinds)
    problems = {kind: _chunked(_problem_chunk(config.seed, kind, drill=False)) for kind in config.kinds}
    drills = {kind: _chunked(_problem_chunk(config.seed, kind, drill=True)) for kind in config.kinds}
    facts = _chunked(lambda c: generate_toy_nonmath(1024, _chunk_seed(config.seed, _NONMATH_STREAM, c)))
    while True:
        draw = mix.random()
        if draw < config.nonmath_fraction:
            yield next(facts)
        elif draw < config.nonmath_fraction + config.drill_fraction:
            yield "".join(next(drills[mix.choices(config.kinds, weights)[0]]) for _ in range(config.drills_per_row))
        else:
            yield next(problems[mix.choices(config.kinds, weights)[0]])


def _problem_chunk(seed: int, kind: str, drill: bool):
    stream = _PROBLEM_STREAM + 10 * (1 + TOY_KINDS.index(kind)) + (5 if drill else 0)
    render = drill_text if drill else (lambda p: training_text(p.question, p.solution))  # noqa: E731

    def make(chunk: int) -> list[str]:
        return [render(p) for p in generate_toy_problems(1024, _chunk_seed(seed, stream, chunk), kinds=[kind])]

    return make


def _chunk_seed(seed: int, stream: int, chunk: int) -> int:
    return (seed * 1000 + stream) * 1_000_003 + chunk


def _chunked(make_chunk) -> Iterator[str]:
    chunk = 0
    while True:
        yield from make_chunk(chunk)
        chunk += 1


def response_mask(text: str, loss_on: str = "all") -> list[bool]:
    """Per character of ``text``, plus one for the ``<eos>`` after it: is predicting it trained?

    ``"all"``: everything. ``"response"``: the characters of each answer, from after ``"\nA: "`` up to
    and including the newline that ends it (a row may hold several examples), and the final ``<eos>``.
    """
    if loss_on == "all":
        return [True] * (len(text) + 1)
    keep = [False] * (len(text) + 1)
    for match in re.finditer(re.escape(ANSWER_PREFIX), text):
        end = text.find("\n", match.end())
        end = len(text) - 1 if end < 0 else end
        keep[match.end(): end + 1] = [True] * (end + 1 - match.end())
    keep[-1] = True
    return keep


def encode_batch(texts: Sequence[str], tokenizer, loss_on: str = "all"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[batch, pos]`` (``<bos>`` text ``<eos>``, right-padded) and a loss mask ``[batch, pos-1]``:
    1 where position ``p`` predicts a token ``p+1`` worth learning (see :func:`response_mask`)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    rows = [[bos, *ids, eos] for ids in encoded]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (row, text) in enumerate(zip(rows, texts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        # Target t is row[t + 1]: text character t, then <eos> at t == len(text) (one token per character).
        mask[i, : len(row) - 1] = torch.tensor(response_mask(text, loss_on), dtype=torch.float32)
    return ids, mask


# -- optimisation -----------------------------------------------------------------------------------
def lr_at(step: int, config: ToyTrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, config: ToyTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings only (not biases or LayerNorm gains)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=(config.beta1, config.beta2))


@contextmanager
def _reproducible(deterministic: bool, num_threads: int):
    """``torch.use_deterministic_algorithms`` and a fixed CPU thread count for the block only (both are
    process-wide state, restored afterwards)."""
    previous_det, previous_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(deterministic or previous_det)
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_det)
        torch.set_num_threads(previous_threads)


def lm_loss(model: HookedTransformer, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the masked positions."""
    logits = model(ids, return_type="logits")  # [batch, pos, vocab]
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    return (losses * mask.flatten()).sum() / mask.sum().clamp(min=1.0)


def train_toy_model(config: ToyTrainConfig = ToyTrainConfig(), progress: ProgressCallback | None = None,
                    out: Path | str | None = None, command: str | None = None,
                    device: str = "cpu") -> ToyTrainResult:
    """Train a toy model from scratch, evaluate it on held-out problems and optionally save it.

    Args:
        config: The run's settings (the defaults make the shipped model).
        progress: Called after every step with ``(step, steps, "loss ...")``, then during evaluation.
        out: Folder to save the model to (:func:`~yfpo_core.models.toy.save_toy_model`), e.g.
            :func:`~yfpo_core.models.toy.toy_cache_dir`; not saved if ``None``.
        command: The command line to record in the saved metadata (default: ``sys.argv``).
        device: Torch device to train on.
    """
    model = build_toy_model(toy_config_kwargs(config.architecture()), seed=config.seed, device=device)
    with _reproducible(config.deterministic, config.num_threads):
        start = time.perf_counter()
        history = _train_loop(model, config, progress, device)
        train_seconds = time.perf_counter() - start
        model.eval()
        start = time.perf_counter()
        final = evaluate_toy_model(wrap_toy_model(model, "training"), config.eval_problems, config.eval_seed,
                                   config.kinds, progress=progress) if config.eval_problems else {}
        eval_seconds = time.perf_counter() - start
    result = ToyTrainResult(model=model, config=config, history=history, final=final,
                            train_seconds=train_seconds, eval_seconds=eval_seconds)
    if out is not None:
        result.saved_to = save_toy_model(model, out, result.metadata(command, out))
    return result


def _train_loop(model: HookedTransformer, config: ToyTrainConfig, progress: ProgressCallback | None,
                device: str) -> list[dict[str, float]]:
    """The optimisation steps, in place on ``model``; returns the per-step history."""
    optimizer = make_optimizer(model, config)
    stream = example_stream(config)
    history: list[dict[str, float]] = []
    model.train()
    for step in range(config.steps):
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ids, mask = encode_batch([next(stream) for _ in range(config.batch_size)], model.tokenizer, config.loss_on)
        loss = lm_loss(model, ids.to(device), mask.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        loss_value = loss.item()
        history.append({"step": step + 1, "loss": round(loss_value, 5), "lr": lr})
        report(progress, step + 1, config.steps, f"loss {loss_value:.3f}")
    model.eval()
    return history


# -- evaluation -------------------------------------------------------------------------------------
def evaluate_toy_model(loaded: LoadedModel, n_problems: int = 200, seed: int = DEFAULT_EVAL_SEED,
                       kinds: Sequence[str] = TOY_KINDS, n_nonmath: int | None = None,
                       progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Held-out metrics: exact match overall and per kind, answer ranking, non-math answer accuracy.

    Args:
        loaded: The model.
        n_problems: Fresh problems from ``generate_toy_problems(n_problems, seed, kinds)``.
        seed: Their seed; must differ from the training seed for the numbers to mean generalisation.
        n_nonmath: Held-out digit-free facts to answer (default ``n_problems // 4``); scored by exact
            string equality of the greedy answer line.
    """
    from yfpo_core.scoring.evaluate import answer_ranking, exact_match
    from yfpo_core.scoring.generation import greedy_generate

    problems = generate_toy_problems(n_problems, seed=seed, kinds=kinds)
    em = exact_match(loaded, problems, max_new_tokens=64, progress=progress)
    ranking = answer_ranking(loaded, problems)
    total, correct = Counter(), Counter()
    for problem, row in zip(problems, em.rows, strict=True):
        total[problem.meta["kind"]] += 1
        correct[problem.meta["kind"]] += bool(row["correct"])
    facts = generate_toy_nonmath(n_problems // 4 if n_nonmath is None else n_nonmath, seed=seed)
    prompts = [fact[: fact.index("\nA: ") + len("\nA: ")] for fact in facts]
    answers = [fact[len(prompt):].rstrip("\n") for fact, prompt in zip(facts, prompts, strict=True)]
    generated = greedy_generate(loaded, prompts, max_new_tokens=32)
    nonmath_ok = sum(g.text == a for g, a in zip(generated, answers, strict=True))
    return {
        "eval_seed": seed,
        "n_problems": len(problems),
        "exact_match": em.accuracy,
        "exact_match_by_kind": {k: correct[k] / total[k] for k in kinds if total[k]},
        "ranking_accuracy": ranking.accuracy,
        "ranking_pairwise_accuracy": ranking.pairwise_accuracy,
        "ranking_mean_margin": ranking.mean_margin,
        "nonmath_exact": nonmath_ok / max(len(facts), 1),
        "n_nonmath": len(facts),
    }


__all__ = ["DEFAULT_EVAL_SEED", "ToyTrainConfig", "ToyTrainResult", "encode_batch", "evaluate_toy_model",
           "example_stream", "lm_loss", "lr_at", "make_optimizer", "train_toy_model", "training_text"]
