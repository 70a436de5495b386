"""``yfpo steer``: the plain and the steered answer to the same problems, side by side, checked against gold."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from yfpo_core.cli.checks import check_output, count
from yfpo_core.errors import YfpoError


# The kinds of yfpo_core.analysis.steering.STEER_KINDS (a test checks they agree), written out here so that
# `yfpo --help` does not load torch through the steering module.
STEER_KINDS: tuple[str, ...] = ("clamp", "scale", "add")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steer", help="generate with a unit set clamped, scaled or added to, beside the plain answer")
    p.add_argument("--model", default=None, help="model name or folder (default: the set's model, else the "
                                                 "embedded smollm2-135m-instruct)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--set", type=Path, help="neuron-set JSON whose units are steered")
    what.add_argument("--unit", action="append", help="a unit to steer (repeat for several): L<L>N<i>, <L>:<i>, "
                                                      "blocks.<L>.mlp.hook_post:<i>, or sae:<ref>:<i> for a feature")
    p.add_argument("--mode", choices=STEER_KINDS, default="add",
                   help="clamp: set each unit to VALUE; scale: multiply by VALUE; add: add VALUE (default)")
    p.add_argument("--value", type=float, required=True, help="the clamp value, scale factor or amount added")
    p.add_argument("--problems", default="gsm8k-test-100", help="problem set name or file (gold answers are checked)")
    p.add_argument("--limit", type=count(1), default=3, help="use the first N problems (default 3)")
    p.add_argument("--prompt", default=None, help="a free question instead of --problems (no gold to check)")
    p.add_argument("--seed", type=int, default=0, help="seed for generated problem sets")
    p.add_argument("--max-new-tokens", type=count(1), default=128)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>")
    p.add_argument("--out", type=Path, default=None, help="write every comparison as JSON")
    p.set_defaults(handler=cmd_steer)


def _units(args: argparse.Namespace, model, device: str):
    """The units to steer and their SAE (``None`` for neurons only)."""
    from yfpo_core.saes.set_saes import single_set_sae, typed_feature
    from yfpo_core.units.unit import Unit

    if args.set is not None:
        from yfpo_core.units.neuron_set import NeuronSet

        neuron_set = NeuronSet.load(args.set, model)
        if not len(neuron_set):
            raise YfpoError(f"{args.set} has no units, so there is nothing to steer")
        return neuron_set.units_only(), single_set_sae(neuron_set, model, device)
    units, sae = [], None
    for text in args.unit:
        if text.startswith("sae:"):
            unit, sae = typed_feature(text, model, device=device, sae=sae)
            units.append(unit)
        else:
            try:
                units.append(Unit.parse(text))
            except ValueError as exc:
                raise YfpoError(str(exc)) from None
    return units, sae


def _side(title: str, answer, gold: str | None) -> None:
    from yfpo_core.errors import printable

    verdict = "" if answer.correct is None else ("  ✓ correct" if answer.correct else f"  ✗ wrong (gold {gold})")
    print(f"--- {title}: answer {answer.answer or '(none)'}{verdict}")
    print(printable(answer.text.strip()) or "(empty)")


def cmd_steer(args: argparse.Namespace) -> int:
    from yfpo_core.models import DEFAULT_MODEL, load_model
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.analysis.steering import Steering, steer_generation

    check_output(args.out)
    default_model = NeuronSet.load(args.set).model_name if args.set is not None else DEFAULT_MODEL
    model = load_model(args.model or default_model, device=args.device)
    units, sae = _units(args, model, args.device)
    if args.prompt is not None:
        questions = [args.prompt]
    else:
        from yfpo_core.problems import load_problems

        questions = load_problems(args.problems, limit=args.limit, seed=args.seed)
    try:
        steering = Steering(args.mode, args.value)
        results = []
        for question in questions:
            result = steer_generation(model, question, units, steering, sae=sae, max_new_tokens=args.max_new_tokens)
            results.append(result)
            where = result.problem_id or "prompt"
            print(f"\n=== {where} · {steering.describe()} on {len(units)} unit{'s' if len(units) != 1 else ''}")
            _side("plain", result.plain, result.gold)
            _side("steered", result.steered, result.gold)
            first = result.first_difference
            print("(identical token for token)" if first is None else f"(first difference at new token {first})")
    except ValueError as exc:
        raise YfpoError(str(exc)) from None
    if results and results[0].gold is not None:
        plain = sum(bool(r.plain.correct) for r in results)
        steered = sum(bool(r.steered.correct) for r in results)
        print(f"\nexact match: plain {plain}/{len(results)}, steered {steered}/{len(results)}")
    if args.out:
        from yfpo_core.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps({"model": model.name, "steering": steering.describe(),
                                                "units": [u.label for u in units],
                                                "results": [r.to_dict() for r in results]}, indent=2))
        print(f"wrote {args.out}")
    return 0
