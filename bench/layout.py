"""The weight layout's effect (:mod:`yfpo_core.models.layout`), side by side in one process: the same work on
the embedded model with its weights as TransformerLens stores them (each forward copies them transposed)
and in the layouts the forward reads (views, no copies).

Timed, alternating the two layouts so that drift on the machine hits both alike:

* answer ranking of GSM8K problems (one context pass and one continuation batch each: evaluation,
  ablation and faithfulness curves are made of this);
* AttnLRP attribution of the same problems over all MLP neurons (one forward and one backward);
* a plain forward pass of one problem's tokens.

It also checks that both layouts give the same numbers (bit for bit for the forward pass).

Usage: ``python bench/layout.py [--problems 4] [--repeats 3] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def plain_layout(model) -> None:
    """Every parameter back to a contiguous tensor: the layout TransformerLens builds."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if not p.is_contiguous():
                p.data = p.data.contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from yfpo_core.cpu import prefer_passive_waiting

    prefer_passive_waiting()
    import copy

    import torch

    from yfpo_core.attribution import attribute
    from yfpo_core.models import load_model
    from yfpo_core.models.layout import use_fast_weight_layout
    from yfpo_core.problems import load_problems
    from yfpo_core.scoring.evaluate import answer_ranking

    if args.threads:
        torch.set_num_threads(args.threads)
    fast = load_model("smollm2-135m-instruct")
    plain = fast.with_model(copy.deepcopy(fast.model))  # with_model lays the copy out again: undo it below
    plain_layout(plain.model)
    assert use_fast_weight_layout(fast.model) == 0 and not plain.model.blocks[0].mlp.W_in.T.is_contiguous()
    problems = load_problems("gsm8k-test-100", limit=args.problems)
    tokens = torch.tensor([fast.encode_prompt(problems[0].question + problems[0].solution)])

    jobs = {
        "answer ranking (per problem)": lambda m: answer_ranking(m, problems),
        "AttnLRP, all neurons (per problem)": lambda m: attribute(m, problems, "attnlrp", batch_size=1),
        "forward pass of one problem": lambda m: m.model(tokens),
    }
    per = {"answer ranking (per problem)": len(problems), "AttnLRP, all neurons (per problem)": len(problems),
           "forward pass of one problem": 1}
    times: dict[str, dict[str, list[float]]] = {job: {"plain": [], "fast": []} for job in jobs}
    outputs: dict[str, dict[str, object]] = {job: {} for job in jobs}
    for job, fn in jobs.items():
        for m in (plain, fast):  # warm-up
            fn(m)
        for _ in range(args.repeats):
            for name, m in (("plain", plain), ("fast", fast)):
                started = time.perf_counter()
                with torch.set_grad_enabled(job.startswith("AttnLRP")):
                    outputs[job][name] = fn(m)
                times[job][name].append((time.perf_counter() - started) / per[job])
    same_forward = torch.equal(outputs["forward pass of one problem"]["plain"],
                               outputs["forward pass of one problem"]["fast"])
    rows = {k: v.rows for k, v in outputs["answer ranking (per problem)"].items()}
    largest = max(abs(a - b) for pa, pf in zip(rows["plain"], rows["fast"], strict=True)
                  for a, b in zip(pa["candidates"].values(), pf["candidates"].values(), strict=True))
    same_verdicts = [r["correct"] for r in rows["plain"]] == [r["correct"] for r in rows["fast"]]
    print(f"SmolLM2-135M-Instruct, {torch.get_num_threads()} threads, {args.problems} GSM8K problems, "
          f"medians of {args.repeats}\n")
    print("| work | TransformerLens layout | views layout | speed-up |\n|---|---|---|---|")
    for job in jobs:
        a, b = statistics.median(times[job]["plain"]), statistics.median(times[job]["fast"])
        print(f"| {job} | {a:.3f} s | {b:.3f} s | **{a / b:.2f}x** |")
    print(f"\nforward pass bit for bit equal: {same_forward}; answer ranking: same verdicts {same_verdicts}, "
          f"largest candidate log-prob difference {largest:.1e} nats (the unembedding reads W_U through a "
          "transposed view, another matmul kernel)")


if __name__ == "__main__":
    main()
