"""Text generation that stops at the end of an answer, greedy or sampled, on the fastest correct path.

Where the model has a Hugging Face twin with the same weights (the embedded SmolLM2, hub models), it
generates with ``transformers`` in left-padded batches: about 3.5x faster than a TransformerLens loop
on CPU (measured in ``bench/load.py``). Models without a twin (the toy model, fine-tuned copies whose
twin would be stale) use a TransformerLens loop with a KV cache.

Generation stops at the end-of-sequence token, at the model family's end-of-response text, or as soon
as a complete ``#### <number>`` line has been written, whichever comes first. Greedy decoding
(:func:`greedy_generate`, for evaluation) and sampling (:func:`sample_responses`, for on-policy pairs) share
one TransformerLens loop and one stopping rule for the Hugging Face path; :func:`stream_tl` hands out that
loop's greedy tokens one at a time (for steering, :mod:`yfpo_core.analysis.steering`), :func:`stream_hf` the
twin's (for an answer shown as it is written).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from yfpo_core.models.base import LoadedModel
from yfpo_core.progress import ProgressCallback, report

ANSWER_LINE = re.compile(r"####[^\n]*\d[^\n]*\n")
# How many trailing tokens the stop check decodes: enough for a "#### 1,234,567" line or an EOS text.
STOP_WINDOW = 48


@dataclass(frozen=True)
class Generation:
    """One generated response: the text (stop text excluded), its length and why it stopped."""

    text: str
    n_new_tokens: int
    stop_reason: str  # "eos", "end_of_response", "answer_line" or "length"


def find_stop(text: str, end_of_response: str) -> tuple[int, str] | None:
    """Where to cut a partial generation, and why; ``None`` while it should continue."""
    cuts = []
    if end_of_response:
        at = text.find(end_of_response)
        if at >= 0:
            cuts.append((at, "end_of_response"))
    match = ANSWER_LINE.search(text)
    if match:
        cuts.append((match.end() - 1, "answer_line"))  # keep the answer line, drop its newline
    # On a tie the natural end of the response is the reason reported.
    return min(cuts, key=lambda cut: (cut[0], cut[1] != "end_of_response")) if cuts else None


def greedy_generate(loaded: LoadedModel, prompts: Sequence[str], max_new_tokens: int = 256,
                    batch_size: int = 8, progress: ProgressCallback | None = None) -> list[Generation]:
    """Greedy responses to ``prompts`` (already formatted with the model's prompt format)."""
    twin = loaded.hf_twin()
    results: list[Generation] = []
    for start in range(0, len(prompts), batch_size if twin is not None else 1):
        batch = list(prompts[start: start + (batch_size if twin is not None else 1)])
        encoded = [loaded.encode_prompt(p) for p in batch]
        if twin is not None:
            results.extend(generate_hf(loaded, twin, encoded, max_new_tokens))
        else:
            results.extend(generate_tl(loaded, ids, max_new_tokens) for ids in encoded)
        report(progress, len(results), len(prompts), "generating")
    return results


def finish_generation(loaded: LoadedModel, new_ids: list[int], max_new_tokens: int) -> Generation:
    """Cut newly generated ids at EOS or the stop text (see :func:`find_stop`) and decode them."""
    eos = loaded.tokenizer.eos_token_id
    reason = "length"
    if eos is not None and eos in new_ids:
        new_ids = new_ids[: new_ids.index(eos)]
        reason = "eos"
    text = loaded.decode(new_ids)
    stop = find_stop(text, loaded.prompt_format.end_of_response)
    if stop is not None:
        text, reason = text[: stop[0]], stop[1]
    return Generation(text=text, n_new_tokens=len(new_ids), stop_reason=reason)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _answer_complete(loaded: LoadedModel, width: int) -> Any:
    """The Hugging Face stopping rule: a row is done once its new tokens (after the ``width`` prompt columns)
    end an answer (:func:`find_stop` on the last :data:`STOP_WINDOW` tokens)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    end_text = loaded.prompt_format.end_of_response

    class AnswerComplete(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            tails = input_ids[:, width:][:, -STOP_WINDOW:]
            return torch.tensor([find_stop(loaded.decode(t), end_text) is not None for t in tails],
                                device=input_ids.device)

    return StoppingCriteriaList([AnswerComplete()])


def _decode_tl_steps(loaded: LoadedModel, prompt_ids: list[int], n_rows: int, max_new_tokens: int,
                     pick: Callable[[torch.Tensor], torch.Tensor],
                     step_context: Callable[[], AbstractContextManager] = nullcontext
                     ) -> Iterator[list[tuple[int, int]]]:
    """The TransformerLens decoding loop with a KV cache: ``n_rows`` continuations of one prompt, the next
    token of every row chosen by ``pick`` (``[rows, vocab]`` logits -> ``[rows, 1]`` ids). Yields, after
    every forward pass, the ``(row, token)`` pairs recorded in it.

    The rows share the prompt, so they need no padding; a finished row (EOS, or its stop text complete:
    that token is still recorded, :func:`finish_generation` cuts it) keeps being computed (cheap at this
    batch size) but its tokens are no longer recorded. Each forward pass runs inside ``step_context()``, so
    hooks can be entered per token and two loops (one plain, one steered) can take turns on one model.
    """
    model = loaded.model
    device = torch.device(model.cfg.device or "cpu")
    eos = loaded.tokenizer.eos_token_id
    end_text = loaded.prompt_format.end_of_response
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, batch_size=n_rows)
    ids = torch.tensor([prompt_ids] * n_rows, device=device)
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    done = [False] * n_rows
    for _ in range(max_new_tokens):
        if ids.shape[1] + cache.entries[0].past_keys.shape[1] > model.cfg.n_ctx:
            break
        with torch.no_grad(), step_context():
            logits = model(ids, return_type="logits", past_kv_cache=cache, attention_mask=torch.ones_like(ids))
            tokens = pick(logits[:, -1])
        step = []
        for row, token in enumerate(tokens[:, 0].tolist()):
            if not done[row]:
                rows[row].append(token)
                step.append((row, token))
                done[row] = token == eos or find_stop(loaded.decode(rows[row][-STOP_WINDOW:]), end_text) is not None
        yield step
        if all(done):
            break
        ids = tokens


def _decode_tl(loaded: LoadedModel, prompt_ids: list[int], n_rows: int, max_new_tokens: int,
               pick: Callable[[torch.Tensor], torch.Tensor]) -> list[list[int]]:
    """All rows of :func:`_decode_tl_steps`, once they are done."""
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    for step in _decode_tl_steps(loaded, prompt_ids, n_rows, max_new_tokens, pick):
        for row, token in step:
            rows[row].append(token)
    return rows


def _greedy_pick(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1, keepdim=True)


def stream_tl(loaded: LoadedModel, prompt_ids: list[int], max_new_tokens: int,
              step_context: Callable[[], AbstractContextManager] = nullcontext) -> Iterator[int]:
    """Greedy token ids, one at a time, from the TransformerLens model with a KV cache (the one loop,
    :func:`_decode_tl_steps`, with one row); stops after EOS or once the stop text is complete (that token
    is still yielded; :func:`finish_generation` cuts it).

    Each forward pass runs inside ``step_context()``, so hooks can be entered per token and two streams
    (one plain, one steered: :mod:`yfpo_core.analysis.steering`) can take turns on one model."""
    for step in _decode_tl_steps(loaded, prompt_ids, 1, max_new_tokens, _greedy_pick, step_context):
        for _, token in step:
            yield token


@torch.no_grad()
def stream_hf(loaded: LoadedModel, twin: Any, prompt_ids: list[int], max_new_tokens: int,
              on_token: Callable[[int], None]) -> list[int]:
    """Greedy generation of one prompt with the Hugging Face twin (the path :func:`greedy_generate` takes for
    it), handing every new token to ``on_token`` as soon as it is made; returns the new ids (EOS or the
    completed stop text included: :func:`finish_generation` cuts them). ``on_token`` may raise to stop."""
    from transformers.generation.streamers import BaseStreamer

    class Tokens(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_passed = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_passed:  # generate() hands the prompt over first
                self.prompt_passed = True
                return
            for token in value.reshape(-1).tolist():
                on_token(int(token))

        def end(self) -> None:
            pass

    device = next(twin.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    out = twin.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                        do_sample=False, pad_token_id=loaded.pad_token_id, eos_token_id=loaded.tokenizer.eos_token_id,
                        stopping_criteria=_answer_complete(loaded, len(prompt_ids)), streamer=Tokens())
    return out[0, len(prompt_ids):].tolist()


def generate_tl(loaded: LoadedModel, prompt_ids: list[int], max_new_tokens: int) -> Generation:
    """The greedy response to one encoded prompt on the TransformerLens path (any model; the path of models
    without a Hugging Face twin). Public so that the two paths can be compared (tests, ``bench/load.py``)."""
    return finish_generation(loaded, list(stream_tl(loaded, prompt_ids, max_new_tokens)), max_new_tokens)


@torch.no_grad()
def generate_hf(loaded: LoadedModel, twin, prompts_ids: list[list[int]], max_new_tokens: int) -> list[Generation]:
    """The greedy responses to encoded prompts on ``twin``, the model's Hugging Face twin, in one
    left-padded batch, with the same stopping rule as :func:`generate_tl`."""
    pad = loaded.pad_token_id
    width = max(len(p) for p in prompts_ids)
    ids = torch.full((len(prompts_ids), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts_ids):  # left padding, as generation appends on the right
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    device = next(twin.parameters()).device
    out = twin.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                        do_sample=False, pad_token_id=pad, eos_token_id=loaded.tokenizer.eos_token_id,
                        stopping_criteria=_answer_complete(loaded, width))
    results = []
    for row in range(len(prompts_ids)):
        new = out[row, width:].tolist()
        results.append(finish_generation(loaded, new, max_new_tokens))
    return results


def _sample_tl(loaded: LoadedModel, prompt_ids: list[int], samples: int, temperature: float, max_new_tokens: int,
               seed: int) -> list[list[int]]:
    """Sample ``samples`` continuations of one prompt from the full tempered softmax (the shared loop)."""
    device = torch.device(loaded.model.cfg.device or "cpu")
    generator = torch.Generator(device=device).manual_seed(seed)

    def pick(logits: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1, generator=generator)

    return _decode_tl(loaded, prompt_ids, samples, max_new_tokens, pick)


@torch.no_grad()
def _sample_hf(loaded: LoadedModel, twin: Any, prompt_ids: list[int], samples: int, temperature: float,
               max_new_tokens: int, seed: int) -> list[list[int]]:
    """Sample with the Hugging Face twin (several times faster on CPU) from the full tempered softmax."""
    width = len(prompt_ids)
    device = next(twin.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        out = twin.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                            temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=samples,
                            max_new_tokens=max_new_tokens, pad_token_id=loaded.pad_token_id,
                            eos_token_id=loaded.tokenizer.eos_token_id,
                            stopping_criteria=_answer_complete(loaded, width))
    return [row[width:].tolist() for row in out]


def sample_responses(model: LoadedModel, prompt: str, *, samples: int, temperature: float, max_new_tokens: int,
                     seed: int) -> list[str]:
    """``samples`` sampled responses to one formatted prompt, each cut where greedy generation would stop.

    The HF twin is used where there is one (``top_k=0``, ``top_p=1``: the full tempered softmax, as on the
    TransformerLens path). Torch's global RNG is left untouched.
    :func:`~yfpo_core.training.on_policy.on_policy_pairs` looks this function up at call time, so tests and
    callers can swap it there.

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
