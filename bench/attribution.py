"""AttnLRP cost: time per problem as a ratio to one plain forward+backward of the same model on the same
problem (goal: at most 1.3x), and the whole run over a problem set, printed side by side.

Both sides run in this process on the same token sequences, alternating, medians over repeats:

* baseline A: forward + backward of the same target to the input embeddings with frozen parameters
  (exactly the work attribution needs, without AttnLRP's rules and without reading unit relevance; with
  attribution's own savings: tokens after the last target position dropped, logits only where the target
  reads them);
* baseline B: forward + backward with parameter gradients, the whole sequence and every logit (what a
  training step's backward costs);
* AttnLRP: :func:`yfpo_core.attribution.methods.gradient_relevance` with the rules, all MLP neurons.

``--full-run`` also times the whole ``attribute`` over all problems (AttnLRP, every MLP neuron) once per
batch size in ``--batch-sizes`` (problems per forward+backward pass), and checks that every batch size gives
the scores of the first (largest difference relative to the largest score; same top-100 units).

Usage: ``python bench/attribution.py [--model smollm2-135m-instruct] [--problems gsm8k-test-100]
[--sample 5] [--repeats 3] [--full-run] [--batch-sizes 1,4,8]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--problems", default="gsm8k-test-100")
    parser.add_argument("--limit", type=int, default=None, help="problems in the full run (default: all)")
    parser.add_argument("--sample", type=int, default=5, help="problems timed one by one for the ratio")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", default="answer_logprob")
    parser.add_argument("--full-run", action="store_true")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated batch sizes for --full-run")
    args = parser.parse_args()

    from yfpo_core.attribution import attribute
    from yfpo_core.attribution.methods import _final_logits, frozen_parameters, gradient_relevance
    from yfpo_core.units.space import neuron_space
    from yfpo_core.attribution.targets import prepare_problem, target_from_rows, target_value
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems

    model = load_model(args.model)
    problems = load_problems(args.problems, limit=args.limit)
    space = neuron_space(model.model)
    print(f"{model.name}: {space.n_rows} x {space.width} neurons; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")

    def plain(prepared, with_params: bool) -> None:
        tokens = torch.tensor([prepared.tokens])
        store = {}

        def leaf(x, hook):
            store["e"] = x.detach().requires_grad_(True)
            return store["e"]

        with torch.enable_grad():
            if with_params:
                target_value(model.model(tokens)[0], prepared).backward()
                model.model.zero_grad(set_to_none=True)
            else:  # the same savings as attribution: stop after the last target position, unembed only there
                cut = tokens[:, : prepared.positions[-1] + 1]
                with frozen_parameters(model.model), model.model.hooks(fwd_hooks=[("hook_embed", leaf)]):
                    residual = model.model(cut, stop_at_layer=model.model.cfg.n_layers)[0]
                    logits = _final_logits(model.model, residual[list(prepared.positions)])
                    target_from_rows(logits, prepared).backward()

    rows = []
    for problem in problems[: args.sample]:
        prepared = prepare_problem(model, problem, args.target)
        a = timed(lambda: plain(prepared, False), args.repeats)
        b = timed(lambda: plain(prepared, True), args.repeats)
        lrp = timed(lambda: gradient_relevance(model, space, prepared, lrp=True), args.repeats)
        rows.append((len(prepared.tokens), a, b, lrp))
    print("| tokens | fwd+bwd, frozen params (A) | fwd+bwd, param grads (B) | AttnLRP | AttnLRP / A | AttnLRP / B |")
    print("|---|---|---|---|---|---|")
    for n, a, b, lrp in rows:
        print(f"| {n} | {a:.3f} s | {b:.3f} s | {lrp:.3f} s | {lrp / a:.2f}x | {lrp / b:.2f}x |")
    ratio_a = statistics.median(r[3] / r[1] for r in rows)
    ratio_b = statistics.median(r[3] / r[2] for r in rows)
    print(f"\nmedian AttnLRP / plain forward+backward: {ratio_a:.2f}x (frozen params), {ratio_b:.2f}x (param grads);"
          " goal <= 1.3x")
    if args.full_run:
        print(f"\nfull AttnLRP run over {len(problems)} problems of {args.problems}, all {space.n_rows * space.width} "
              "neurons:\n")
        tokens = sum(prepare_problem(model, p, args.target).positions[-1] + 1 for p in problems)
        print(f"{tokens} tokens read (each problem up to its last target position)\n")
        print("| batch size | seconds | s / problem | tokens / s | vs first: largest score difference | same top-100 |")
        print("|---|---|---|---|---|---|")
        reference = None
        for size in [int(x) for x in args.batch_sizes.split(",")]:
            start = time.perf_counter()
            result = attribute(model, problems, "attnlrp", args.target, batch_size=size, keep_token_scores=False)
            elapsed = time.perf_counter() - start
            reference = reference or result
            gap = float((result.scores - reference.scores).abs().max() / reference.scores.abs().max())
            same = [s.unit for s in result.top(100)] == [s.unit for s in reference.top(100)]
            print(f"| {size} | {elapsed:.1f} | {elapsed / len(problems):.2f} | {tokens / elapsed:.0f} | {gap:.1e} | "
                  f"{'yes' if same else 'NO'} |", flush=True)
        print(f"\nmean relevance budget {result.params.get('relevance_budget_mean', float('nan')):.3f}")


if __name__ == "__main__":
    main()
