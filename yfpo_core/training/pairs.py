"""Preference pairs for DPO/YFPO training: made from gold solutions, sampled from a model, or read from a file.

A :class:`PreferencePair` holds a raw question and two responses in *model form* (what
``prompt_format.response`` gives: calculator notes stripped, no end-of-response marker); the trainer applies
the model's prompt format, so one pairs file serves every model family.

Three ways to get pairs:

* :func:`corrupted_pairs`: the gold response against a minimally corrupted copy. ``"final"`` rewrites the
  final answer from the point where the solution states it (the cut of
  :func:`yfpo_core.scoring.evaluate.build_ranking_item`, so training contrasts exactly what answer ranking
  measures) with a nearby wrong answer from :func:`~yfpo_core.scoring.evaluate.distractor_answers`. ``"step"``
  changes one intermediate result and nothing else, so the rejected text has a wrong step but, often, the
  right answer: a preference that a pure answer check cannot express. No model needed; instant.
* :func:`on_policy_pairs`: responses sampled from the model itself, judged by their final answer. Pairs of
  the model's own texts keep the DPO reference log-probabilities in a realistic range; a weak model that is
  never right can still get pairs with ``fallback_gold`` (gold response against its own wrong ones).
* :func:`load_pairs`: a user's JSONL file, validated line by line with messages that say how to fix it.

Every random choice uses a private RNG seeded from ``(seed, problem id)``, so a problem's pair does not
change when other problems are added, removed or reordered.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch

from yfpo_core.problems.answers import NumberMatch, answers_match, extract_answer, find_numbers, format_number
from yfpo_core.atomic import atomic_write_text
from yfpo_core.jsonio import JsonInputError, parse_json, split_json_lines
from yfpo_core.errors import YfpoError
from yfpo_core.scoring.evaluate import render_like, build_ranking_item, distractor_answers
from yfpo_core.scoring.generation import finish_generation, find_stop
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.models.prompts import PromptFormat

CorruptionMode = Literal["final", "step", "mixed"]
CORRUPTION_MODES: tuple[str, ...] = ("final", "step", "mixed")

# How many trailing tokens the stop check decodes: enough for a "#### 1,234,567" line or an EOS text.
_STOP_WINDOW = 48

PAIR_FILE_HELP = ("a JSONL file with one object per line: 'question' (or 'prompt'), 'chosen', 'rejected', and "
                  "optionally 'id', 'gold_answer' (or 'answer'), 'problem_id', 'source', 'meta'")


class PairDataError(YfpoError):
    """Preference pairs cannot be made or read (bad file, bad row, bad option)."""


@dataclass(frozen=True)
class PreferencePair:
    """One preference: for ``question``, the response ``chosen`` is preferred over ``rejected``.

    Attributes:
        id: Unique within a pair set, e.g. ``"toy/0007#corrupt-final"``.
        problem_id: The problem it comes from; :func:`split_pairs` keeps each problem on one side.
        question: The raw question (the trainer wraps it in the model's prompt format).
        chosen: The preferred response in model form, without the end-of-response marker.
        rejected: The dispreferred response, same form.
        gold_answer: The problem's answer as text (``""`` when a pairs file does not give one).
        source: ``"corrupt-final"``, ``"corrupt-step"``, ``"on-policy"``, ``"on-policy-gold"`` or
            ``"file:<path>"``.
        meta: JSON-serialisable details of how the pair was made (what was replaced, sampled answers...).
    """

    id: str
    problem_id: str
    question: str
    chosen: str
    rejected: str
    gold_answer: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreferencePair:
        return cls(id=str(d["id"]), problem_id=str(d["problem_id"]), question=str(d["question"]),
                   chosen=str(d["chosen"]), rejected=str(d["rejected"]), gold_answer=str(d.get("gold_answer") or ""),
                   source=str(d["source"]), meta=dict(d.get("meta") or {}))


def _problem_rng(seed: int, problem_id: str, purpose: str) -> random.Random:
    """A private RNG per (seed, problem): a problem's choices do not depend on which other problems run."""
    return random.Random(f"{seed}/{purpose}/{problem_id}")


def _problem_seed(seed: int, problem_id: str) -> int:
    """A torch seed per (seed, problem), stable across runs (unlike ``hash(str)``)."""
    digest = hashlib.sha256(f"{seed}/sample/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# -- corrupted pairs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _GoldSplit:
    """A gold response split where the final answer is stated (the answer-ranking cut)."""

    gold: Fraction
    response: str  # the chosen text
    cut: int  # index in ``response`` where the final answer's statement starts
    answers: tuple[Fraction, ...]  # gold first, then the distractors, as in RankingItem
    wrong_responses: tuple[str, ...]  # ``response`` with the tail's answer replaced, one per distractor


def _split_gold(problem: Problem, prompt_format: PromptFormat) -> _GoldSplit:
    """The gold response and its final-answer corruptions, taken from :func:`build_ranking_item` so that
    the training contrast is exactly the answer-ranking contrast."""
    try:
        item = build_ranking_item(problem, prompt_format)
    except ValueError as exc:
        raise PairDataError(f"Problem {problem.id}: its answer {problem.answer!r} is not a number, so no wrong "
                            "answer can be made; fix the answer or leave the problem out.") from exc
    prompt = prompt_format.prompt(problem.question)
    prefix = item.context[len(prompt):]
    end = prompt_format.end_of_response

    def strip_end(text: str) -> str:
        return text[: len(text) - len(end)] if end and text.endswith(end) else text

    responses = [prefix + strip_end(c) for c in item.continuations]
    return _GoldSplit(gold=item.answers[0], response=responses[0], cut=len(prefix), answers=item.answers,
                      wrong_responses=tuple(responses[1:]))


def _final_corruption(problem: Problem, split: _GoldSplit, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """The gold response with the final answer replaced by a random distractor from its statement on."""
    k = rng.randrange(len(split.wrong_responses))
    rejected = split.wrong_responses[k]
    if rejected == split.response:
        raise PairDataError(f"Problem {problem.id}: its solution never states the answer {problem.answer} after "
                            "its reasoning, so it cannot be corrupted; fix the solution's '#### N' line or its "
                            "answer.")
    return rejected, {"mode": "final", "wrong_answer": format_number(split.answers[k + 1])}


def intermediate_steps(response: str, before: int, gold: Fraction) -> list[NumberMatch]:
    """The intermediate results of a response: numbers written right after ``=`` (a currency sign may sit in
    between) that end before ``before`` (the final answer's statement) and differ from the gold answer.

    Results after ``=`` are what a reasoning step computes, so changing one makes a wrong step; operands
    are left alone because a changed operand is a misread question, not a wrong step.
    """
    steps = []
    for m in find_numbers(response):
        if m.end > before or m.value == gold:
            continue
        written = response[m.start: m.end]
        if any(sign in written for sign in "$€£"):  # "-$5": rewriting would drop the currency sign
            continue
        if response[: m.start].rstrip(" $€£").endswith("="):
            steps.append(m)
    return steps


def _step_corruption(split: _GoldSplit, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The gold response with one intermediate result replaced by a nearby wrong value; ``None`` if it has
    no intermediate result. Later lines keep the right value, so exactly one step is wrong."""
    steps = intermediate_steps(split.response, split.cut, split.gold)
    if not steps:
        return None
    step = steps[rng.randrange(len(steps))]
    wrong = rng.choice(distractor_answers(step.value))
    original = split.response[step.start: step.end]
    rewritten = render_like(original, wrong)
    rejected = split.response[: step.start] + rewritten + split.response[step.end:]
    return rejected, {"mode": "step", "position": step.start, "original_value": format_number(step.value),
                      "wrong_value": format_number(wrong), "original_text": original, "wrong_text": rewritten}


def corrupted_pairs(problems: Iterable[Problem], prompt_format: PromptFormat, *, mode: CorruptionMode = "final",
                    seed: int = 0) -> list[PreferencePair]:
    """Gold response (chosen) against a corrupted copy (rejected), one pair per problem.

    Args:
        problems: Problems with numeric answers and gold solutions.
        prompt_format: The model family's format; responses are written as ``prompt_format.response`` does.
        mode: ``"final"``: the final answer replaced from its statement on by a nearby wrong answer (one of
            :func:`~yfpo_core.scoring.evaluate.distractor_answers`), in the original style. ``"step"``: one
            intermediate result replaced by a nearby wrong value, that occurrence only; a problem with no
            intermediate result falls back to ``"final"`` (``meta["fallback"]`` says so). ``"mixed"``:
            ``"final"`` for even-indexed problems, ``"step"`` for odd ones.
        seed: Seeds the choice of distractor and step (per problem, see the module docstring).

    Returns:
        The pairs, in problem order; ``source`` is what was actually done (``"corrupt-final"`` or
        ``"corrupt-step"``), ``meta["requested_mode"]`` what was asked.

    Raises:
        PairDataError: Unknown mode, a non-numeric answer, or a solution that never states its answer.
    """
    if mode not in CORRUPTION_MODES:
        raise PairDataError(f"Unknown corruption mode {mode!r}; use one of: {', '.join(CORRUPTION_MODES)}.")
    pairs = []
    for i, problem in enumerate(problems):
        wanted = mode if mode != "mixed" else ("final", "step")[i % 2]
        split = _split_gold(problem, prompt_format)
        rng = _problem_rng(seed, problem.id, "corrupt")
        corruption = _step_corruption(split, rng) if wanted == "step" else None
        meta: dict[str, Any] = {"requested_mode": mode}
        if corruption is None:
            corruption = _final_corruption(problem, split, rng)
            if wanted == "step":
                meta["fallback"] = "no intermediate step: corrupted the final answer instead"
        rejected, details = corruption
        meta.update(details)
        source = f"corrupt-{details['mode']}"
        pairs.append(PreferencePair(id=f"{problem.id}#{source}", problem_id=problem.id, question=problem.question,
                                    chosen=split.response, rejected=rejected, gold_answer=problem.answer,
                                    source=source, meta=meta))
    return pairs


# -- on-policy pairs ----------------------------------------------------------------------------------------
Sampler = Callable[..., list[str]]


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@torch.no_grad()
def _sample_tl(model: LoadedModel, prompt_ids: list[int], samples: int, temperature: float, max_new_tokens: int,
               seed: int) -> list[list[int]]:
    """Sample ``samples`` continuations of one prompt with the TransformerLens model and a KV cache.

    The rows share the prompt, so they need no padding; a finished row keeps being computed (cheap at
    this batch size) but its tokens are no longer recorded.
    """
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    hooked = model.model
    device = torch.device(hooked.cfg.device or "cpu")
    generator = torch.Generator(device=device).manual_seed(seed)
    eos = model.tokenizer.eos_token_id
    end_text = model.prompt_format.end_of_response
    cache = TransformerLensKeyValueCache.init_cache(hooked.cfg, device, batch_size=samples)
    ids = torch.tensor([prompt_ids] * samples, device=device)
    rows: list[list[int]] = [[] for _ in range(samples)]
    done = [False] * samples
    for _ in range(max_new_tokens):
        if ids.shape[1] + cache.entries[0].past_keys.shape[1] > hooked.cfg.n_ctx:
            break
        logits = hooked(ids, return_type="logits", past_kv_cache=cache, attention_mask=torch.ones_like(ids))
        probs = torch.softmax(logits[:, -1].float() / temperature, dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator)
        for row, token in enumerate(tokens[:, 0].tolist()):
            if not done[row]:
                rows[row].append(token)
                done[row] = token == eos or find_stop(model.decode(rows[row][-_STOP_WINDOW:]), end_text) is not None
        if all(done):
            break
        ids = tokens
    return rows


@torch.no_grad()
def _sample_hf(model: LoadedModel, twin: Any, prompt_ids: list[int], samples: int, temperature: float,
               max_new_tokens: int, seed: int) -> list[list[int]]:
    """Sample with the Hugging Face twin (several times faster on CPU) from the full tempered softmax."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    width = len(prompt_ids)
    end_text = model.prompt_format.end_of_response

    class AnswerComplete(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            tails = input_ids[:, width:][:, -_STOP_WINDOW:]
            return torch.tensor([find_stop(model.decode(t), end_text) is not None for t in tails],
                                device=input_ids.device)

    device = next(twin.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        out = twin.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                            temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=samples,
                            max_new_tokens=max_new_tokens, pad_token_id=model.pad_token_id,
                            eos_token_id=model.tokenizer.eos_token_id,
                            stopping_criteria=StoppingCriteriaList([AnswerComplete()]))
    return [row[width:].tolist() for row in out]


def sample_responses(model: LoadedModel, prompt: str, *, samples: int, temperature: float, max_new_tokens: int,
                     seed: int) -> list[str]:
    """``samples`` sampled responses to one formatted prompt, each cut where greedy generation would stop.

    The HF twin is used where there is one (``top_k=0``, ``top_p=1``: the full tempered softmax, as on the
    TransformerLens path). Torch's global RNG is left untouched. :func:`on_policy_pairs` looks this function
    up at call time, so tests and callers can swap it.

    Args:
        model: The model to sample from.
        prompt: The prompt text, already in the model's prompt format.
        samples: Number of responses.
        temperature: Softmax temperature, > 0.
        max_new_tokens: Most tokens per response.
        seed: Seed of the sampling RNG; same seed, same responses.
    """
    prompt_ids = model.encode_prompt(prompt)
    twin = model.hf_twin()
    if twin is not None:
        rows = _sample_hf(model, twin, prompt_ids, samples, temperature, max_new_tokens, seed)
    else:
        with model.lock:  # the TransformerLens model is shared: keep others' hooks out of our forward passes
            rows = _sample_tl(model, prompt_ids, samples, temperature, max_new_tokens, seed)
    return [finish_generation(model, row, max_new_tokens).text for row in rows]


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _pair_indices(n_chosen: int, n_rejected: int, cap: int) -> list[tuple[int, int]]:
    """Up to ``cap`` distinct (chosen, rejected) index pairs, spreading over different texts first: with two
    of each, (0, 0) and (1, 1) before (0, 1), so that two pairs share no text when they need not."""
    order = [(k % n_chosen, k % n_rejected) for k in range(max(n_chosen, n_rejected))]
    order += [(i, j) for i in range(n_chosen) for j in range(n_rejected)]
    return list(dict.fromkeys(order))[:cap]


def _check_sampling_options(samples: int, temperature: float, max_new_tokens: int, max_pairs_per_problem: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise PairDataError(f"samples must be a whole number of at least 1, got {samples!r}; 4 is a good start.")
    if not temperature > 0:
        raise PairDataError(f"temperature must be above 0 for sampling, got {temperature!r}; try 0.8.")
    if max_new_tokens < 1 or max_pairs_per_problem < 1:
        raise PairDataError(f"max_new_tokens ({max_new_tokens}) and max_pairs_per_problem "
                            f"({max_pairs_per_problem}) must be at least 1.")


def on_policy_pairs(model: LoadedModel, problems: Sequence[Problem], *, samples: int = 4, temperature: float = 0.8,
                    max_new_tokens: int = 256, seed: int = 0, max_pairs_per_problem: int = 2,
                    fallback_gold: bool = False, progress: ProgressCallback | None = None,
                    sampler: Sampler | None = None) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Pairs from the model's own samples: a correct response (chosen) against a wrong one (rejected).

    Each problem gets ``samples`` responses (:func:`sample_responses`), judged by their extracted final
    answer. A problem with correct and wrong responses gives up to ``max_pairs_per_problem`` pairs of
    distinct texts (source ``"on-policy"``). With ``fallback_gold``, a problem with only wrong responses
    gives the gold response against them (source ``"on-policy-gold"``). Empty responses are never used:
    a pair with an empty side has no tokens to compare.

    Args:
        model: The model to sample from (its prompt format decides the prompts).
        problems: Problems with gold solutions and numeric answers.
        samples: Responses per problem.
        temperature: Sampling temperature (> 0).
        max_new_tokens: Most tokens per response.
        seed: Seeds the sampling, per problem (see the module docstring).
        max_pairs_per_problem: Cap on pairs per problem, so that easy-to-sample problems do not dominate.
        fallback_gold: Pair the gold response with wrong samples when no sample is correct.
        progress: Called with (done, total, message) after each problem.
        sampler: Replaces :func:`sample_responses` (same signature), e.g. a cached or scripted sampler.

    Returns:
        The pairs and stats: ``problems``, ``samples`` (responses drawn), ``correct_rate``, ``pairs``,
        ``pairs_on_policy``, ``pairs_gold_fallback``, ``problems_skipped`` (with ``skipped_all_correct``,
        ``skipped_no_correct``, ``skipped_no_usable``), ``empty_samples`` and ``seconds``.
    """
    _check_sampling_options(samples, temperature, max_new_tokens, max_pairs_per_problem)
    draw = sampler if sampler is not None else sample_responses
    started = time.perf_counter()
    pairs: list[PreferencePair] = []
    counts = {"samples": 0, "correct": 0, "empty_samples": 0, "skipped_all_correct": 0, "skipped_no_correct": 0,
              "skipped_no_usable": 0, "pairs_on_policy": 0, "pairs_gold_fallback": 0}
    for n, problem in enumerate(problems, start=1):
        texts = draw(model, model.prompt_format.prompt(problem.question), samples=samples, temperature=temperature,
                     max_new_tokens=max_new_tokens, seed=_problem_seed(seed, problem.id))
        new = _problem_pairs(model.prompt_format, problem, texts, max_pairs_per_problem, fallback_gold, counts,
                             {"temperature": temperature, "seed": seed})
        pairs.extend(new)
        report(progress, n, len(problems), f"{len(pairs)} pairs")
    n_problems = len(problems)
    skipped = counts["skipped_all_correct"] + counts["skipped_no_correct"] + counts["skipped_no_usable"]
    stats = {"problems": n_problems, "correct_rate": counts["correct"] / max(counts["samples"], 1),
             "pairs": len(pairs), "problems_skipped": skipped, **counts,
             "seconds": round(time.perf_counter() - started, 3)}
    return pairs, stats


def _problem_pairs(prompt_format: PromptFormat, problem: Problem, texts: Sequence[str], cap: int,
                   fallback_gold: bool, counts: dict[str, int], meta: dict[str, Any]) -> list[PreferencePair]:
    """The pairs of one problem from its sampled texts; updates ``counts``."""
    counts["samples"] += len(texts)
    answers = [extract_answer(t) for t in texts]
    correct_flags = [answers_match(a, problem.answer) for a in answers]
    counts["correct"] += sum(correct_flags)
    counts["empty_samples"] += sum(not t.strip() for t in texts)
    usable = [(t, a, ok) for t, a, ok in zip(texts, answers, correct_flags, strict=True) if t.strip()]
    correct = _unique(t for t, _, ok in usable if ok)
    wrong = _unique(t for t, _, ok in usable if not ok)
    answer_of = {t: (format_number(a) if a is not None else None) for t, a, _ in usable}
    if correct and wrong:
        source, chosen_texts = "on-policy", correct
    elif wrong and fallback_gold:
        source, chosen_texts = "on-policy-gold", [prompt_format.response(problem.solution)]
    else:
        reason = ("skipped_all_correct" if correct else "skipped_no_usable" if not wrong else "skipped_no_correct")
        counts[reason] += 1
        return []
    pairs = []
    for i, j in _pair_indices(len(chosen_texts), len(wrong), cap):
        chosen, rejected = chosen_texts[i], wrong[j]
        if chosen == rejected:  # a gold response the model reproduced but whose answer extraction failed
            continue
        pairs.append(PreferencePair(
            id=f"{problem.id}#{source}-{len(pairs)}", problem_id=problem.id, question=problem.question,
            chosen=chosen, rejected=rejected, gold_answer=problem.answer, source=source,
            meta={**meta, "chosen_answer": answer_of.get(chosen, problem.answer),
                  "rejected_answer": answer_of[rejected], "n_correct": len(correct), "n_wrong": len(wrong)}))
    counts["pairs_on_policy" if source == "on-policy" else "pairs_gold_fallback"] += len(pairs)
    return pairs


# -- files -------------------------------------------------------------------------------------------------
def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; errors name the line. Lines are split on ``\n`` only
    (U+2028 may sit inside a JSON string) and a UTF-8 byte-order mark is ignored."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise PairDataError(f"Pairs file {path} {what}; give {PAIR_FILE_HELP}.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PairDataError(f"Pairs file {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as "
                            "UTF-8.") from None
    rows = []
    for number, line in split_json_lines(text):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except json.JSONDecodeError as exc:
            raise PairDataError(f"{path}, line {number}: not valid JSON ({exc.msg}); each line must be one "
                                "JSON object.") from exc
        except JsonInputError as exc:
            raise PairDataError(f"{path}, line {number}: {exc}.") from None
        if not isinstance(row, dict):
            raise PairDataError(f"{path}, line {number}: expected a JSON object with 'question', 'chosen' "
                                f"and 'rejected', got {type(row).__name__}.")
        rows.append((number, row))
    if not rows:
        raise PairDataError(f"Pairs file {path} is empty; give {PAIR_FILE_HELP}.")
    return rows


def _text_field(path: Path, number: int, row: Mapping[str, Any], names: Sequence[str]) -> str:
    """The first of ``names`` present in ``row``, as non-empty text."""
    present = [n for n in names if row.get(n) is not None]
    label = " or ".join(repr(n) for n in names)
    if not present:
        raise PairDataError(f"{path}, line {number}: missing field {label}; every row needs 'question' (or "
                            "'prompt'), 'chosen' and 'rejected'.")
    value = row[present[0]]
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise PairDataError(f"{path}, line {number}: field {present[0]!r} must be non-empty text, got {shown}.")
    return value


def _question_id(question: str) -> str:
    """A problem id for a row without one: rows with the same question share it, so :func:`split_pairs` never
    puts one question on both sides."""
    return "q-" + hashlib.sha256(question.strip().encode()).hexdigest()[:12]


def _pair_from_row(path: Path, number: int, row: Mapping[str, Any]) -> PreferencePair:
    question = _text_field(path, number, row, ("question", "prompt"))
    chosen = _text_field(path, number, row, ("chosen",))
    rejected = _text_field(path, number, row, ("rejected",))
    if chosen == rejected:
        raise PairDataError(f"{path}, line {number}: 'chosen' and 'rejected' are the same text, which teaches "
                            "nothing; fix or remove the row.")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise PairDataError(f"{path}, line {number}: 'meta' must be a JSON object, got {type(meta).__name__}.")
    gold = row.get("gold_answer", row.get("answer"))
    return PreferencePair(
        id=str(row.get("id") if row.get("id") is not None else f"{path.stem}/{number}"),
        problem_id=str(row.get("problem_id") or _question_id(question)), question=question, chosen=chosen,
        rejected=rejected, gold_answer="" if gold is None else str(gold),
        source=str(row.get("source") or f"file:{path}"), meta=meta)


def load_pairs(path: str | os.PathLike[str]) -> list[PreferencePair]:
    """Read preference pairs from a JSONL file (see :data:`PAIR_FILE_HELP`).

    Rows written by :func:`save_pairs` load back identically; hand-written rows get an id
    ``<file stem>/<line>``, a problem id from their question, and source ``file:<path>``. A ``prompt`` is
    taken as the raw question: the trainer still applies the model's prompt format.

    Raises:
        PairDataError: Missing or empty file, a line that is not a JSON object, a missing or empty field,
            ``chosen == rejected``, or an id used twice; the message names the line and the fix.
    """
    path = Path(path)
    pairs = []
    first_line: dict[str, int] = {}
    for number, row in _read_lines(path):
        pair = _pair_from_row(path, number, row)
        if pair.id in first_line:
            raise PairDataError(f"{path}, line {number}: id {pair.id!r} is already used on line "
                                f"{first_line[pair.id]}; ids must be unique, rename or remove one.")
        first_line[pair.id] = number
        pairs.append(pair)
    return pairs


def save_pairs(pairs: Iterable[PreferencePair], path: str | os.PathLike[str]) -> Path:
    """Write pairs as JSONL, atomically (temporary file in the same folder, then ``os.replace``), so a reader
    never sees half a file and an interrupted save keeps the old one."""
    lines = [json.dumps(pair.to_dict(), ensure_ascii=False) + "\n" for pair in pairs]
    return atomic_write_text(path, "".join(lines))


# -- splitting ---------------------------------------------------------------------------------------------
def split_pairs(pairs: Sequence[PreferencePair], held_out_fraction: float, seed: int = 0
                ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split into (train, held out) by problem, so no problem is on both sides (several pairs of one problem
    on both sides would measure memorisation, not generalisation).

    About ``held_out_fraction`` of the problems (rounded; at least one when the fraction is above 0 and
    there are two problems or more) are held out, chosen with ``random.Random(seed)``. Each side keeps the
    input order.
    """
    if not 0 <= held_out_fraction <= 1:
        raise PairDataError(f"held_out_fraction must be between 0 and 1, got {held_out_fraction!r}; e.g. 0.1.")
    problem_ids = sorted(dict.fromkeys(p.problem_id for p in pairs))
    random.Random(seed).shuffle(problem_ids)
    n_held = round(held_out_fraction * len(problem_ids))
    if held_out_fraction > 0 and n_held == 0 and len(problem_ids) > 1:
        n_held = 1
    held_ids = set(problem_ids[:n_held])
    return [p for p in pairs if p.problem_id not in held_ids], [p for p in pairs if p.problem_id in held_ids]


__all__ = ["CORRUPTION_MODES", "PAIR_FILE_HELP", "PairDataError", "PreferencePair", "Sampler", "corrupted_pairs",
           "intermediate_steps", "load_pairs", "on_policy_pairs", "sample_responses", "save_pairs", "split_pairs"]
