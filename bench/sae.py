"""SAE cost on 2 cores: tokens per second of SAE training (sae-lens's runner, the model's forward pass
included) and of feature attribution (AttnLRP through the spliced SAE), next to neuron attribution on the
same problems as the baseline.

Usage: ``python bench/sae.py [--model smollm2-135m-instruct] [--tokens 16384] [--problems 5]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--hook", default="blocks.15.mlp.hook_post")
    parser.add_argument("--tokens", type=int, default=16384, help="SAE training tokens to time")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--problems", type=int, default=5, help="problems for the attribution timing")
    parser.add_argument("--sae", default="default", help="SAE for the attribution timing")
    args = parser.parse_args()

    import torch

    from yfpo_core.attribution import attribute
    from yfpo_core.units.space import neuron_space
    from yfpo_core.attribution.targets import prepare_problem
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems
    from yfpo_core.saes.config import SAETrainConfig
    from yfpo_core.saes.sae import SAESpace, load_sae, train_sae

    model = load_model(args.model)
    print(f"{model.name}, torch {torch.__version__} with {torch.get_num_threads()} threads\n")
    with tempfile.TemporaryDirectory() as tmp:
        config = SAETrainConfig(model=model.name, hook=args.hook, tokens=args.tokens, width=args.width, checkpoints=0)
        trained = train_sae(config, Path(tmp) / "bench-sae", model=model)
        train_seconds = trained.meta["train_seconds"]  # sae-lens's runner only, not the quality evaluation
    problems = load_problems("toy" if model.name == "toy-arith" else "gsm8k-test-100", limit=args.problems)
    n_tokens = sum(len(prepare_problem(model, p, "answer_logprob").tokens) for p in problems)
    sae = load_sae(args.sae, model)
    timings = {}
    for label, space in (("neurons, all layers", neuron_space(model.model)),
                         ("neurons, SAE's layer only", neuron_space(model.model, [sae.layer])),
                         (f"SAE features ({sae.sae_id})", SAESpace(sae))):
        started = time.perf_counter()
        attribute(model, problems, "attnlrp", units=space)
        timings[label] = time.perf_counter() - started
    print("| measurement | tokens | seconds | tokens / s |")
    print("|---|---|---|---|")
    print(f"| SAE training (width {args.width} at {args.hook}, the model's forward pass included) | "
          f"{args.tokens} | {train_seconds:.1f} | {args.tokens / train_seconds:.0f} |")
    for label, seconds in timings.items():
        print(f"| AttnLRP attribution, {label} | {n_tokens} | {seconds:.1f} | {n_tokens / seconds:.0f} |")


if __name__ == "__main__":
    main()
