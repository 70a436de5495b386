"""Load and forward-pass timings of the embedded default model, printed side by side.

Measures, each in a fresh Python process so that nothing is warm but the OS file cache:

1. first load: conversion of the GGUF into a new, empty cache folder (``YFPO_CACHE_DIR`` = a temp dir);
2. cached load: ``load_model()`` again from that cache (goal: under 5 s on 2 cores), several times; it
   includes the SHA-256 check of every file it reads (issue 11), which runs in a background thread while
   the weights load; the same check run alone, in the foreground, is printed beside it (its cost if it
   could not overlap);

and in one process, on the same GSM8K prompt with its gold solution:

3. one forward pass of the TransformerLens model vs its Hugging Face twin (the ratio is the price of
   hooks), and greedy generation of the same tokens on both paths (why generation uses the twin).

Usage: ``python bench/load.py [--repeats 3] [--keep-cache]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LOAD_SNIPPET = r"""
import json, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import torch, transformer_lens  # yfpo_core.models imports them lazily: time them on their own
from yfpo_core.models import load_model
t1 = time.perf_counter()
model = load_model("smollm2-135m-instruct")
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1}))
"""


def timed_load(cache_dir: str) -> dict[str, float]:
    env = {**os.environ, "YFPO_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def digest_check_alone(cache_dir: str, repeats: int) -> float:
    """Median seconds of the load-time digest check of the cached entry, run alone (no overlap)."""
    from pathlib import Path

    from yfpo_core.models import smollm2
    from yfpo_core.models.cache import digest_problem, read_manifest

    os.environ["YFPO_CACHE_DIR"] = cache_dir
    entry = smollm2.cache_entry()
    manifest = read_manifest(Path(entry)) or {}
    files = smollm2.manifest_files_under(manifest, "tl", "tokenizer")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        assert digest_problem(entry, manifest, files) is None
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_and_generation(cache_dir: str, repeats: int, new_tokens: int) -> dict[str, float]:
    os.environ["YFPO_CACHE_DIR"] = cache_dir
    import torch

    from yfpo_core.scoring.generation import generate_hf, generate_tl
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems

    model = load_model("smollm2-135m-instruct")
    twin = model.hf_twin()
    problem = load_problems("gsm8k-test-100", limit=1)[0]
    text = model.prompt_format.prompt(problem.question) + model.prompt_format.response(problem.solution)
    ids = torch.tensor([model.encode_prompt(text)])
    prompt_ids = model.encode_prompt(model.prompt_format.prompt(problem.question))
    with torch.no_grad():
        tl_forward = median_time(lambda: model.model(ids), repeats)
        hf_forward = median_time(lambda: twin(ids), repeats)
    # Generation: greedy on both paths gives the same tokens (same weights), so both stop at the same place.
    tl_tokens = generate_tl(model, prompt_ids, new_tokens).n_new_tokens
    hf_tokens = generate_hf(model, twin, [prompt_ids], new_tokens)[0].n_new_tokens
    if tl_tokens != hf_tokens:
        print(f"warning: TransformerLens made {tl_tokens} tokens, the HF twin {hf_tokens}")
    tl_gen = median_time(lambda: generate_tl(model, prompt_ids, new_tokens), max(1, repeats // 2))
    hf_gen = median_time(lambda: generate_hf(model, twin, [prompt_ids], new_tokens), max(1, repeats // 2))
    new_tokens = hf_tokens
    return {"tokens": ids.shape[1], "tl_forward_s": tl_forward, "hf_forward_s": hf_forward,
            "tl_generate_s": tl_gen, "hf_generate_s": hf_gen, "new_tokens": new_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--keep-cache", action="store_true", help="keep the temporary cache folder")
    args = parser.parse_args()

    import torch

    cache_dir = tempfile.mkdtemp(prefix="yfpo-bench-load-")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cache {cache_dir}\n")
    try:
        first = timed_load(cache_dir)
        cached = [timed_load(cache_dir) for _ in range(args.repeats)]
        digest_s = digest_check_alone(cache_dir, args.repeats)
        speed = forward_and_generation(cache_dir, args.repeats * 3, args.new_tokens)
    finally:
        if not args.keep_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)

    cached_load = statistics.median(c["load_s"] for c in cached)
    cached_import = statistics.median(c["import_s"] for c in cached)
    print("| measurement | value | goal / baseline |")
    print("|---|---|---|")
    print(f"| first load (GGUF -> TransformerLens + cache) | {first['load_s']:.1f} s | once per machine |")
    cached_total = statistics.median(c["load_s"] + c["import_s"] for c in cached)
    print(f"| cached load, median of {args.repeats} fresh processes | {cached_load:.2f} s | goal < 5 s |")
    print(f"| of which: SHA-256 check of the files read (background thread; alone it takes {digest_s:.2f} s) "
          f"| overlapped | every load |")
    print(f"| `import torch, transformer_lens` before it | {cached_import:.2f} s | not in the load time |")
    print(f"| fresh process to loaded model (imports + cached load) | {cached_total:.2f} s | |")
    print(f"| forward, {speed['tokens']} tokens: TransformerLens / HF twin | "
          f"{speed['tl_forward_s']:.3f} s / {speed['hf_forward_s']:.3f} s | "
          f"ratio {speed['tl_forward_s'] / speed['hf_forward_s']:.2f}x |")
    print(f"| greedy generation, {speed['new_tokens']} tokens: TransformerLens loop / HF twin | "
          f"{speed['tl_generate_s']:.2f} s / {speed['hf_generate_s']:.2f} s | "
          f"ratio {speed['tl_generate_s'] / speed['hf_generate_s']:.2f}x |")


if __name__ == "__main__":
    main()
