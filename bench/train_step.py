"""Time and peak memory per step of our YFPO step against TRL's DPOTrainer and a hand-written floor, side by side
in one run (medians after one warm-up step).

Setup (defaults): the embedded SmolLM2-135M-Instruct, fp32, 4 GSM8K pairs (gold solution vs the same solution
with a wrong final answer) of exactly 96 tokens each, only the last 4 blocks' MLPs trainable, beta 0.1,
AdamW (lr 1e-6, no weight decay). Every contender trains on the same 8 token rows (checked below).

* **96 tokens.** The pairs are the GSM8K test problems with the shortest prompts; each response is cut *on the
  left* to ``96 - len(prompt)`` tokens, keeping its end (the final answer, where chosen and rejected differ,
  and the end-of-response token), so every row is ``prompt + response = 96`` tokens: no padding and no
  truncation by either trainer.
* **TRL**: ``DPOTrainer`` on the Hugging Face twin of the model, no activation checkpointing, timed with
  ``trainer.training_step`` + ``optimizer.step``; once with ``precompute_ref_log_probs=False`` (TRL's default:
  a frozen reference copy runs every step) and once with ``True``.
* **Ours**: :class:`yfpo_core.training.trainer.YFPOTrainer` (TransformerLens model) with ``lam = 0`` (DPO)
  and ``lam = 1`` (YFPO, 32 units in the trainable layers), timed with ``train_step``; YFPO once with the
  gradient-share metrics (the default: the neuron term's gradient is taken separately, one extra backward
  from the units) and once without (``grad_share = False``: one combined backward). With the metrics it runs
  twice: measured on every step (``grad_share_every = 1``), and on the default schedule (step 1 and every 4th
  step), whose cost is the mean step time over whole cycles of the schedule. The default is "ours" in the
  goals.
* **The floor**: a hand-written plain-torch DPO step on the HF twin (:class:`Floor`): reference log-probs and
  the frozen prefix computed once and cached, each step runs only the trainable blocks, the final norm and
  the LM head at the scored positions, the sigmoid loss and AdamW. What a step cannot do without.

Goals (from the issue): ours at most 0.4x TRL's precomputed-reference step, and at most 1.5x the floor.

Peak memory is measured over each contender's setup and steps, above the level at its start: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set size (the kernel's high-water mark, reset
through ``/proc/self/clear_refs``, and a 5 ms sampler). It includes each contender's own copy of the model
(TRL: the policy and, by default, the reference; ours: the policy copy; the TransformerLens base model that
ours uses as reference is loaded before all contenders and is not counted).

Usage: ``python bench/train_step.py [--pairs 4] [--steps 5] [--last-k 4] [--device cpu] [--json]``
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

SEQ_LEN = 96
BETA = 0.1
LR = 1e-6
GOAL_VS_TRL = 0.4  # ours / TRL (precomputed reference)
GOAL_VS_FLOOR = 1.5  # ours / the floor


# -- measuring --------------------------------------------------------------------------------------------
def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the next baseline is honest
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory above the level at entry, in MiB (``.mib`` after exit)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.mib = float("nan")

    def __enter__(self) -> PeakMemory:
        _release_memory()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self.peak = _rss()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.hwm = True
        except OSError:
            self.hwm = False
        self.stop = threading.Event()

        def sample() -> None:
            while not self.stop.wait(0.005):
                self.peak = max(self.peak, _rss())

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            self.stop.set()
            self.thread.join()
            peak = max(self.peak, _rss(), _hwm() if self.hwm else 0)
        self.mib = (peak - self.base) / 2**20


def median_step(step: Callable[[int], object], n: int, device: torch.device,
                statistic: Callable[[list[float]], float] = statistics.median) -> float:
    def run(i: int) -> None:
        step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(0)  # warm-up
    times = []
    for i in range(1, n + 1):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistic(times)


@dataclasses.dataclass
class Row:
    key: str
    label: str
    step_s: float
    setup_s: float
    peak_mib: float


def measure(key: str, label: str, build: Callable[[], Callable[[int], object]], steps: int,
            device: torch.device, statistic: Callable[[list[float]], float] = statistics.median) -> Row:
    """``build()`` does the contender's one-off setup and returns its step function; memory covers both."""
    with PeakMemory(device) as mem:
        started = time.perf_counter()
        step = build()
        setup = time.perf_counter() - started
        seconds = median_step(step, steps, device, statistic)
        del step
    _release_memory()
    return Row(key, label, seconds, setup, mem.mib)


# -- the data: pairs of exactly SEQ_LEN tokens ------------------------------------------------------------
def fixed_length_pairs(base, pairs, n: int, length: int = SEQ_LEN) -> list:
    """The ``n`` pairs with the shortest prompts, each response cut on the left to ``length - len(prompt)``
    tokens (keeping its end, where chosen and rejected differ). Only cuts that re-tokenise to the same ids,
    with our encoding and with a plain ``tokenizer(prompt + response)`` (TRL's), are kept."""
    fmt = base.prompt_format
    end = fmt.end_of_response
    candidates = sorted(pairs, key=lambda p: len(base.encode_prompt(fmt.prompt(p.question))))
    chosen = []
    for p in candidates:
        prompt_text = fmt.prompt(p.question)
        prompt = base.encode_prompt(prompt_text)
        room = length - len(prompt)
        if room < 4:
            break
        texts = []
        for response in (p.chosen, p.rejected):
            ids = base.encode(response + end)
            tail = ids[-room:]
            text = base.decode(tail)
            if len(ids) < room or not text.endswith(end):
                break
            text = text[: len(text) - len(end)]
            if (base.encode(text + end) != tail
                    or list(base.tokenizer(prompt_text + text + end)["input_ids"]) != prompt + tail):
                break
            texts.append(text)
        if len(texts) == 2 and texts[0] != texts[1]:
            chosen.append(dataclasses.replace(p, chosen=texts[0], rejected=texts[1]))
        if len(chosen) == n:
            return chosen
    raise SystemExit(f"only {len(chosen)} pairs fit in {length} tokens with room for a response; lower --pairs")


# -- the floor ------------------------------------------------------------------------------------------------
class Floor:
    """**The floor**: the least a DPO step on this model, batch and trainable set must do, in plain torch on the
    HF twin. Once: the frozen prefix (embeddings + blocks ``0 .. n-k-1``, rotary cos/sin, causal mask) under
    ``no_grad``, and the reference log-probs from it. Each step: blocks ``n-k .. n-1`` with grad, the final
    norm and the LM head only at the positions that predict a response token, the DPO sigmoid loss
    (beta 0.1), backward and AdamW. Rows are all the same length, so there is no padding: causal attention
    only."""

    def __init__(self, hf, tokens: torch.Tensor, response_mask: torch.Tensor, last_k: int) -> None:
        from transformers.masking_utils import create_causal_mask

        self.hf, body = hf, hf.model
        self.tokens = tokens
        self.start = body.config.num_hidden_layers - last_k
        for name, p in hf.named_parameters():
            layer = name.split(".")[2] if name.startswith("model.layers.") else None
            p.requires_grad_(layer is not None and int(layer) >= self.start and ".mlp." in name)
        self.rows, self.cols = response_mask[:, 1:].nonzero(as_tuple=True)  # positions predicting responses
        self.targets = tokens[self.rows, self.cols + 1]
        with torch.no_grad():
            h = body.embed_tokens(tokens)
            self.position_ids = torch.arange(tokens.shape[1], device=tokens.device)[None]
            self.position_embeddings = body.rotary_emb(h, position_ids=self.position_ids)
            self.mask = create_causal_mask(config=body.config, inputs_embeds=h, attention_mask=None, cache=None,
                                           position_ids=self.position_ids)
            for layer in body.layers[: self.start]:
                h = self._layer(layer, h)
            self.prefix = h
            self.ref_logps = self.logps()
        self.optimizer = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)

    def _layer(self, layer, h: torch.Tensor) -> torch.Tensor:
        return layer(h, attention_mask=self.mask, position_embeddings=self.position_embeddings,
                     position_ids=self.position_ids)

    def logps(self) -> torch.Tensor:
        h = self.prefix
        for layer in self.hf.model.layers[self.start:]:
            h = self._layer(layer, h)
        logits = self.hf.lm_head(self.hf.model.norm(h[self.rows, self.cols]))
        per_token = -F.cross_entropy(logits, self.targets, reduction="none")
        return torch.zeros(self.tokens.shape[0], device=h.device).index_add(0, self.rows, per_token)

    def step(self, _: int = 0) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        chosen, rejected = self.logps().chunk(2)
        ref_chosen, ref_rejected = self.ref_logps.chunk(2)
        loss = -F.logsigmoid(BETA * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()
        loss.backward()
        self.optimizer.step()
        return loss.item()


# -- main ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per contender (after one warm-up)")
    parser.add_argument("--last-k", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of the table")
    args = parser.parse_args()
    device = torch.device(args.device)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from yfpo_core.models import load_model
    from yfpo_core.models.smollm2 import cache_entry
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.problems import load_problems
    from yfpo_core.training.batching import collate_pairs
    from yfpo_core.training.config import YFPOConfig
    from yfpo_core.training.pairs import corrupted_pairs
    from yfpo_core.training.trainer import YFPOTrainer
    from yfpo_core.units.unit import Unit

    base = load_model("smollm2-135m-instruct", device=args.device)
    fmt = base.prompt_format
    pairs = fixed_length_pairs(base, corrupted_pairs(load_problems("gsm8k-test-100"), fmt, mode="final"), args.pairs)
    batch = collate_pairs(base, pairs, max_length=SEQ_LEN).to(device)  # the rows every contender must see
    lengths = batch.response_mask.sum(1).tolist()
    totals = [int(m.nonzero().max()) + 1 for m in batch.response_mask]  # prompt + response, per row
    n_layers = base.model.cfg.n_layers
    header = {"model": base.name, "pairs": len(pairs), "problems": [p.problem_id for p in pairs],
              "tokens_per_row": totals, "response_tokens_per_row": lengths, "last_k": args.last_k,
              "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    span = lambda xs: f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"  # noqa: E731
    say(f"{base.name}, {len(pairs)} pairs ({', '.join(header['problems'])}): {len(totals)} rows of {span(totals)} "
        f"tokens (prompt + response; responses {span(lengths)} tokens), last {args.last_k} MLPs trainable, "
        f"{device}, torch {torch.__version__} with {torch.get_num_threads()} threads")

    def load_hf():
        return AutoModelForCausalLM.from_pretrained(cache_entry() / "hf", dtype=torch.float32).to(device)

    workdir = tempfile.TemporaryDirectory()  # removed at exit
    same_rows = {}  # contender -> trains on exactly ``batch.tokens`` (the floor uses it directly)
    rows: list[Row] = []

    # -- TRL ----------------------------------------------------------------------------------------------
    data = Dataset.from_dict({"prompt": [fmt.prompt(p.question) for p in pairs],
                              "chosen": [p.chosen + fmt.end_of_response for p in pairs],
                              "rejected": [p.rejected + fmt.end_of_response for p in pairs]})

    def trl(precompute: bool) -> Callable[[], Callable[[int], object]]:
        def build():
            hf = load_hf()
            for name, p in hf.named_parameters():
                layer = name.split(".")[2] if name.startswith("model.layers.") else None
                p.requires_grad_(layer is not None and int(layer) >= n_layers - args.last_k and ".mlp." in name)
            trl_args = DPOConfig(output_dir=str(Path(workdir.name) / f"trl-{precompute}"), beta=BETA,
                                 per_device_train_batch_size=len(pairs), report_to=[], activation_checkpointing=False,
                                 bf16=False, use_cpu=device.type == "cpu", precompute_ref_log_probs=precompute,
                                 max_length=SEQ_LEN, learning_rate=LR, weight_decay=0.0, logging_steps=1000)
            trainer = DPOTrainer(model=hf, args=trl_args, train_dataset=data, processing_class=base.tokenizer)
            trainer.create_optimizer_and_scheduler(num_training_steps=100)
            trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which we bypass
            inputs = next(iter(trainer.get_train_dataloader()))
            ids = inputs["input_ids"].to(device)
            same_rows[f"trl-{precompute}"] = ids.shape == batch.tokens.shape and \
                sorted(map(tuple, ids.tolist())) == sorted(map(tuple, batch.tokens.tolist()))
            hf.train()
            return lambda i: (trainer.training_step(hf, inputs), trainer.optimizer.step(),
                              trainer.optimizer.zero_grad())
        return build

    rows.append(measure("trl", "TRL DPOTrainer (reference model, default)", trl(False), args.steps, device))
    rows.append(measure("trl_precomputed", "TRL DPOTrainer (precompute_ref_log_probs)", trl(True), args.steps,
                        device))

    # -- ours ---------------------------------------------------------------------------------------------
    units = [Unit.neuron(n_layers - 1 - (i % args.last_k), 7 * i) for i in range(32)]
    set_path = Path(workdir.name) / "set.json"
    NeuronSet.create(units, base, scores=[1.0] * len(units)).save(set_path)
    every = YFPOConfig.__dataclass_fields__["grad_share_every"].default
    for key, label, lam, share, share_every in (
            ("ours_dpo", "ours, DPO (lam = 0)", 0.0, True, every),
            ("ours_no_share", "ours, YFPO without the gradient-share metrics", 1.0, False, every),
            ("ours_share_every_step", "ours, YFPO with the gradient share measured every step", 1.0, True, 1),
            ("ours", f"**ours, YFPO (lam = 1, 32 units, gradient share every {every} steps: the default)**", 1.0,
             True, every)):
        def build(lam=lam, key=key, share=share, share_every=share_every):
            config = YFPOConfig(model=base.name, neuron_set=str(set_path), lam=lam, trainable="mlp_last_k",
                                last_k=args.last_k, batch_pairs=len(pairs), steps=1000, lr=LR, warmup_steps=0,
                                max_length=SEQ_LEN, device=args.device, grad_share=share,
                                grad_share_every=share_every)
            trainer = YFPOTrainer(config, base, pairs, [], units, [1.0] * len(units))
            same_rows[key] = len(trainer.batches) == 1 and torch.equal(trainer.batches[0].tokens, batch.tokens)
            return lambda i: trainer.train_step(i + 1)

        # The default measures the share on every ``every``-th step: its cost is the mean over whole cycles
        # of the schedule (steps 2 .. 1 + cycles * every), not a median, which would hide the measuring steps.
        cycles = max(1, -(-args.steps // every))
        rows.append(measure(key, label, build, args.steps, device) if key != "ours" else
                    measure(key, label, build, cycles * every, device, statistic=statistics.fmean))

    # -- the floor --------------------------------------------------------------------------------------
    def build_floor():
        return Floor(load_hf(), batch.tokens, batch.response_mask, args.last_k).step

    rows.append(measure("floor", "the floor (hand-written, cached reference + prefix)", build_floor, args.steps,
                        device))

    # -- report ---------------------------------------------------------------------------------------------
    by_key = {r.key: r for r in rows}
    trl_pre, floor, ours = by_key["trl_precomputed"].step_s, by_key["floor"].step_s, by_key["ours"].step_s
    goals = {"vs_trl_precomputed": {"ratio": ours / trl_pre, "target": GOAL_VS_TRL},
             "vs_floor": {"ratio": ours / floor, "target": GOAL_VS_FLOOR}}
    for goal in goals.values():
        goal["pass"] = goal["ratio"] <= goal["target"]
    if not all(same_rows.values()):
        say(f"WARNING: not every contender trains on the same token rows: {same_rows}")
    if args.json:
        print(json.dumps({**header, "steps": args.steps, "same_token_rows": same_rows,
                          "rows": [{**dataclasses.asdict(r), "ratio_to_trl_precomputed": r.step_s / trl_pre,
                                    "ratio_to_floor": r.step_s / floor} for r in rows],
                          "goals": goals}, indent=2))
        return
    print(f"same token rows in every contender: {'yes' if all(same_rows.values()) else same_rows}\n")
    print("| step | median time | ratio to TRL (precomputed) | ratio to the floor | peak memory | one-off setup |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.label} | {r.step_s:.2f} s | {r.step_s / trl_pre:.2f}x | {r.step_s / floor:.2f}x | "
              f"{r.peak_mib:.0f} MiB | {r.setup_s:.1f} s |")
    a, b = goals["vs_trl_precomputed"], goals["vs_floor"]
    plain = by_key["ours_no_share"].step_s
    print(f"\nGradient-share metrics (yfpo/grad_norm_aux, yfpo/grad_norm_dpo, yfpo/aux_share), against the step "
          f"without them: {by_key['ours_share_every_step'].step_s / plain:.2f}x measured every step, "
          f"{by_key['ours'].step_s / plain:.2f}x measured every {every} steps (the default; mean over the cycle)")
    print(f"\nGoals: ours <= {GOAL_VS_TRL}x TRL precomputed: {a['ratio']:.2f}x, {'PASS' if a['pass'] else 'MISS'}; "
          f"ours <= {GOAL_VS_FLOOR}x the floor: {b['ratio']:.2f}x, {'PASS' if b['pass'] else 'MISS'}")


if __name__ == "__main__":
    main()
