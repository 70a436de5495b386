"""Activation index cost on 2 cores: build throughput (tokens per second, and the time the whole default
corpus would take) and the time to draw one unit's dashboard from a finished index; optionally the steering
generation speed (plain and steered streams in turns).

Goals (issue 14): the index of every MLP neuron of SmolLM2 over about 100k tokens in at most 15 minutes on
2 cores (>= 111 tokens/s); one unit's dashboard in at most 200 ms.

Usage: ``python bench/index.py [--model smollm2-135m-instruct] [--texts 60] [--units 30] [--steer-tokens 32]``
(``--texts 0``: the whole default corpus). The index is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--texts", type=int, default=60, help="texts of the default corpus to index (0: all)")
    parser.add_argument("--units", type=int, default=30, help="random units whose dashboards are timed")
    parser.add_argument("--steer-tokens", type=int, default=0, help="also time a steered generation of N tokens")
    args = parser.parse_args()

    import torch

    from yfpo_core.analysis.activation_index import ActivationIndex, build_index, default_corpus
    from yfpo_core.analysis.dashboards import unit_dashboard
    from yfpo_core.models import load_model

    model = load_model(args.model)
    print(f"{model.name}, torch {torch.__version__} with {torch.get_num_threads()} threads")
    corpus = default_corpus(model)
    n_tokens = sum(len(model.encode_prompt(t.text)) for t in corpus)
    texts = corpus if args.texts == 0 else random.Random(0).sample(corpus, min(args.texts, len(corpus)))
    print(f"default corpus: {len(corpus)} texts, {n_tokens} tokens; indexing {len(texts)} of them")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        folder = build_index(model, texts, folder=Path(tmp) / "index", checkpoint_s=1e9)
        wall = time.perf_counter() - started
        index = ActivationIndex(folder)
        rate = index.n_tokens / wall
        size = (folder / "index.safetensors").stat().st_size / 2**20
        print(f"\nbuild: {index.n_tokens} tokens, {index.meta['n_units']} units in {wall:.1f} s = {rate:.0f} tokens/s "
              f"(index file {size:.0f} MiB)")
        print(f"  the whole default corpus ({n_tokens} tokens) at this rate: {n_tokens / rate / 60:.1f} min; "
              f"100k tokens: {1e5 / rate / 60:.1f} min (goal <= 15 min)")
        rng = random.Random(1)
        columns = rng.sample(range(index.meta["n_units"]), args.units)
        first = unit_dashboard(index, index.unit_at(columns[0]), model)  # opens the file, reads the tokens once
        times = []
        for column in columns:
            started = time.perf_counter()
            unit_dashboard(index, index.unit_at(column), model)
            times.append(time.perf_counter() - started)
        print(f"\ndashboard from the index: first {1000 * first.seconds:.0f} ms, then median "
              f"{1000 * statistics.median(times):.0f} ms, max {1000 * max(times):.0f} ms over {len(times)} units "
              "(goal <= 200 ms)")
    if args.steer_tokens:
        from yfpo_core.analysis.steering import Steering, steer_generation

        units = [index.unit_at(c) for c in columns[:8]]
        started = time.perf_counter()
        from yfpo_core.problems import load_problems

        problem = load_problems("toy" if model.native_problems == "toy" else "gsm8k-test-100", limit=1)[0]
        result = steer_generation(model, problem, units, Steering("add", 2.0), max_new_tokens=args.steer_tokens)
        wall = time.perf_counter() - started
        n = len(result.plain.token_ids) + len(result.steered.token_ids)
        print(f"\nsteering: {n} tokens (plain + steered, in turns) in {wall:.1f} s = {n / wall:.1f} tokens/s")


if __name__ == "__main__":
    main()
