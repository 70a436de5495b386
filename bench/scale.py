"""Scaling on this machine: the same command on the same problems as 1 process with 1 thread, 2 processes
with 1 thread each (``torchrun``, data-parallel), and 1 process with 2 threads, side by side in one run.

Each configuration runs the real CLI in a fresh process tree (``yfpo locate`` by default, or ``yfpo eval``),
so the numbers include what a user pays: interpreter start, imports, model load (once per process),
the work itself, the gather and the write. Two times are reported for each:

* **work**: the command's own timer (``seconds`` in the scores or summary file: from the first problem to the
  gathered result on rank 0), and the throughput in problems and tokens per second from it;
* **wall**: the whole command, start-up and model load included (``wall - work`` is the fixed cost).

The three results are checked against each other (same top units, scores within 1e-5 relative for
``locate``; same accuracy for ``eval``), so a speed-up never hides a different answer.

Usage: ``python bench/scale.py [--model smollm2-135m-instruct] [--problems gsm8k-test-100] [--limit 20]
[--command locate|eval] [--batch-size 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [  # (label, processes, threads per process)
    ("1 process x 1 thread", 1, 1),
    ("2 processes x 1 thread (torchrun)", 2, 1),
    ("1 process x 2 threads", 1, 2),
]


def command(args: argparse.Namespace, out: Path) -> list[str]:
    common = ["--model", args.model, "--problems", args.problems, "--limit", str(args.limit)]
    if args.command == "locate":
        return ["locate", *common, "--method", args.method, "--batch-size", str(args.batch_size), "--top-k", "100",
                "--out", str(out / "set.json")]
    return ["eval", *common, "--metric", "ranking", "--quiet", "--out", str(out / "rows.csv")]


def run(args: argparse.Namespace, processes: int, threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable, "-m", "yfpo_core"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
         "-m", "yfpo_core"]
    started = time.perf_counter()
    done = subprocess.run([*launcher, *command(args, out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) x {threads} thread(s) failed:\n{done.stderr[-3000:]}")
    if args.command == "locate":
        meta = json.loads((out / "set.scores.json").read_text())
        return {"wall": wall, "work": meta["params"]["seconds"], "processes": meta["params"]["processes"],
                "result": out / "set.scores"}
    summary = json.loads((out / "rows.summary.json").read_text())
    return {"wall": wall, "work": summary["seconds"], "processes": summary["processes"], "summary": summary}


def token_count(args: argparse.Namespace) -> int:
    """Tokens the work reads: for locate, each problem up to its last target position; for eval, the
    ranking context plus the five continuations."""
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems

    model = load_model(args.model)
    problems = load_problems(args.problems, limit=args.limit)
    if args.command == "locate":
        from yfpo_core.attribution.targets import prepare_problem

        return sum(prepare_problem(model, p, "answer_logprob").positions[-1] + 1 for p in problems)
    from yfpo_core.scoring.evaluate import build_ranking_item

    items = [build_ranking_item(p, model.prompt_format) for p in problems]
    return sum(len(model.encode_prompt(i.context)) + sum(len(model.encode(c)) for c in i.continuations)
               for i in items)


def check_same(args: argparse.Namespace, results: list[dict]) -> str:
    if args.command == "eval":
        keys = ("ranking_accuracy", "gold_logprob", "mean_margin")
        first = results[0]["summary"]
        ok = all(abs(r["summary"][k] - first[k]) <= 1e-5 * max(abs(first[k]), 1e-12) for r in results for k in keys)
        return "same accuracy, log-prob and margin (1e-5 relative)" if ok else "RESULTS DIFFER"
    from yfpo_core.attribution import AttributionResult

    loaded = [AttributionResult.load(r["result"]) for r in results]
    reference = loaded[0]
    top = [s.unit for s in reference.top(100)]
    gaps = [float((r.scores - reference.scores).abs().max() / reference.scores.abs().max()) for r in loaded[1:]]
    same_top = all([s.unit for s in r.top(100)] == top for r in loaded[1:])
    return (f"top-100 units {'identical' if same_top else 'DIFFER'}; largest score difference "
            f"{max(gaps):.1e} of the largest score")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--problems", default="gsm8k-test-100")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--command", choices=["locate", "eval"], default="locate")
    parser.add_argument("--method", default="attnlrp")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    tokens = token_count(args)
    print(f"{args.command} on {args.limit} problems of {args.problems} ({tokens} tokens), model {args.model}, "
          f"{os.cpu_count()} CPUs\n")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes, threads in CONFIGS:
            out = Path(tmp) / label.split()[0] / str(threads)
            out.mkdir(parents=True)
            results.append({"label": label, **run(args, processes, threads, out)})
            print(f"  done: {label}", file=sys.stderr)
        verdict = check_same(args, results)
    base = results[0]["work"]
    print("| configuration | work (s) | problems/s | tokens/s | speed-up (work) | wall (s) | fixed cost (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r['work']:.1f} | {args.limit / r['work']:.2f} | {tokens / r['work']:.0f} | "
              f"{base / r['work']:.2f}x | {r['wall']:.1f} | {r['wall'] - r['work']:.1f} |")
    print(f"\nresults: {verdict}")


if __name__ == "__main__":
    main()
