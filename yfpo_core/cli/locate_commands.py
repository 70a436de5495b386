"""``yfpo locate``, ``yfpo ablate`` and ``yfpo inspect``: find units, prove they matter, look at one."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from yfpo_core.cli.checks import check_output, count, parse_layers
from yfpo_core.errors import YfpoError


def _common(p: argparse.ArgumentParser, problems_default: str | None = "gsm8k-test-100") -> None:
    p.add_argument("--model", default=None, help="model name or folder (default: the set's model, else the "
                                                 "embedded smollm2-135m-instruct)")
    p.add_argument("--problems", default=problems_default, help="problem set name or file")
    p.add_argument("--limit", type=count(1), default=None, help="use the first N problems")
    p.add_argument("--seed", type=int, default=0, help="seed for generated problem sets and random sets")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>; under torchrun / accelerate launch, "
                                                   "cuda means each process's own GPU")


def register(sub: argparse._SubParsersAction) -> None:
    from yfpo_core.attribution.registry import METHODS, TARGETS

    p = sub.add_parser("locate", help="score every MLP neuron over a problem set and save the top ones as a set")
    _common(p)
    p.add_argument("--method", choices=METHODS, default="attnlrp")
    p.add_argument("--target", choices=TARGETS, default="answer_logprob")
    p.add_argument("--top-k", type=count(1), default=100, help="how many units go into the set (default 100)")
    p.add_argument("--rank-by", choices=["value", "abs", "negative"], default="value",
                   help="value: units that support the target most; abs: largest magnitude")
    p.add_argument("--units", default="neurons", help="neurons (all MLP neurons) or sae:<ref> for the features of "
                                                      "an SAE: sae:default (the shipped one), sae:<folder>, "
                                                      "sae:<release>/<sae_id>")
    p.add_argument("--layers", type=str, default=None, help="comma-separated layers to score (default: all)")
    p.add_argument("--from-scores", type=Path, default=None,
                   help="re-rank the saved scores of an earlier run (<set>.scores.json) instead of computing: "
                        "with --layers, --top-k and --rank-by to cut another set from the same run")
    p.add_argument("--steps", type=count(1), default=8, help="integrated-gradients path points")
    p.add_argument("--normalize", action="store_true", help="give every problem the same total weight")
    p.add_argument("--batch-size", type=count(1), default=4, help="problems per forward+backward pass for attnlrp "
                                                                  "and grad_x_act (same scores; default 4)")
    p.add_argument("--out", type=Path, required=True, help="neuron-set JSON to write; the full scores go "
                                                          "beside it as <out>.scores.json/.safetensors")
    p.set_defaults(handler=cmd_locate)

    p = sub.add_parser("ablate", help="ablate a set and random same-size sets; compare answer ranking")
    _common(p, problems_default=None)
    p.add_argument("--set", type=Path, required=True, help="neuron-set JSON (from `yfpo locate` or the app)")
    p.add_argument("--random", type=count(1), default=5, help="number of random sets of the same size (default 5)")
    p.add_argument("--kind", choices=["zero", "mean"], default="zero", help="zero or mean ablation")
    p.add_argument("--allow-other-model", action="store_true", help="use the set on a model it was not made for")
    p.add_argument("--out", type=Path, help="write the report as JSON")
    p.set_defaults(handler=cmd_ablate)

    p = sub.add_parser("inspect", help="profile one unit: top problems and tokens, histogram, logit effect")
    _common(p)
    p.add_argument("--unit", required=True, help="blocks.<L>.mlp.hook_post:<i>, L<L>N<i>, <L>:<i>, or sae:<ref>:<i> "
                                               "for a feature of an SAE (ref as in `yfpo locate --units`)")
    p.add_argument("--top", type=count(1), default=8, help="top-activating problems to show")
    p.add_argument("--effect", action="store_true", help="also measure answer ranking with the unit zeroed "
                                                        "and doubled")
    p.add_argument("--from-index", action="store_true", help="draw the unit's corpus dashboard from the activation "
                                                            "index (`yfpo index build`) instead of --problems")
    p.set_defaults(handler=cmd_inspect)


def _problems(args, fallback: str):
    from yfpo_core.problems import load_problems

    return load_problems(args.problems or fallback, limit=args.limit, seed=args.seed)


def _share(dist) -> str:
    """What rank 0's progress bar counts when there are several processes."""
    return f" (rank 0's share, {dist.world} processes)" if dist.world > 1 else ""


def units_flag_sae(args: argparse.Namespace, model, device: str):
    """The SAE that ``--units sae:<ref>`` names (``None`` for ``--units neurons``)."""
    if args.units == "neurons":
        return None
    if not args.units.startswith("sae:"):
        raise YfpoError(f"--units must be 'neurons' or 'sae:<ref>', not {args.units!r}")
    from yfpo_core.saes.sae import load_sae

    return load_sae(args.units[4:], model, device=device)


def cmd_locate(args: argparse.Namespace) -> int:
    """Under torchrun / accelerate launch every process scores its share of the problems; rank 0 alone
    prints, ranks the units and writes the set and the scores (see :mod:`yfpo_core.distributed`)."""
    from yfpo_core.cli import print_error
    from yfpo_core.distributed import launched

    check_output(args.out)
    with launched(args.device, announce=print_error) as dist:
        return _locate(args, dist)


def _locate(args: argparse.Namespace, dist) -> int:
    from yfpo_core.attribution import AttributionResult, attribute_sharded
    from yfpo_core.cli.output import print_table
    from yfpo_core.models import DEFAULT_MODEL, load_model
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.progress import tqdm_progress

    layers = parse_layers(args.layers)
    if args.from_scores is not None and not dist.is_main:
        return 0  # re-ranking is rank 0's alone
    if args.from_scores is not None:  # re-rank an earlier run: no model pass
        result = AttributionResult.load(args.from_scores)
        model = load_model(args.model or result.model_name, device=dist.device)
        parse_layers(args.layers, int(model.model.cfg.n_layers))
        if model.fingerprint != result.model_fingerprint:
            raise YfpoError(f"{args.from_scores} was computed on other weights of {result.model_name} "
                            f"(fingerprint {result.model_fingerprint}, loaded {model.fingerprint}): recompute it")
        sae_entries = None
        if result.space.kind == "sae_feature":  # the set must describe the features' SAE
            if not args.units.startswith("sae:"):
                raise YfpoError(f"{args.from_scores} scores features of SAE {result.space.sae_id}: name it with "
                                "--units sae:<ref> so the set can record where the SAE lives")
            sae = units_flag_sae(args, model, dist.device)
            if sae.sae_id != result.space.sae_id:
                raise YfpoError(f"--units names SAE {sae.sae_id}, but the scores are of SAE {result.space.sae_id}")
            sae_entries = {sae.sae_id: sae.neuron_set_entry()}
            from yfpo_core.saes.sae import SAESpace

            result = replace(result, space=SAESpace(sae))  # the saved space names the SAE's hooks, not its units'
        problems_info = dict(result.params.get("problems") or {"source": "see scores file",
                                                              "n": len(result.problem_ids)})
        scores_base = Path(str(args.from_scores).removesuffix(".json").removesuffix(".safetensors"))
    else:
        model = load_model(args.model or DEFAULT_MODEL, device=dist.device)
        parse_layers(args.layers, int(model.model.cfg.n_layers))
        problems = _problems(args, "gsm8k-test-100")
        space, sae_entries = None, None
        sae = units_flag_sae(args, model, dist.device)
        if sae is not None:
            from yfpo_core.saes.sae import SAESpace

            space, sae_entries = SAESpace(sae), {sae.sae_id: sae.neuron_set_entry()}
        with tqdm_progress(f"{args.method} on {model.name}{_share(dist)}", unit="problem",
                           disable=not dist.is_main) as progress:
            result = attribute_sharded(dist, model, problems, args.method, args.target, units=space, layers=layers,
                                       steps=args.steps, normalize=args.normalize, batch_size=args.batch_size,
                                       progress=progress)
        if result is None:
            return 0  # rank 0 has every problem's scores and writes the files
        problems_info = {"source": args.problems, "n": len(problems), "limit": args.limit, "seed": args.seed}
        result.params["problems"] = problems_info
        scores_base = Path(f"{args.out.with_suffix('') if args.out.suffix == '.json' else args.out}.scores")
        result.save(scores_base)
    try:
        top = result.top(args.top_k, by=args.rank_by, layers=layers)
    except ValueError as exc:
        raise YfpoError(f"{exc}: pick scored layers with --layers") from None
    print_table([{"rank": s.rank, "unit": s.unit.label, "score": s.score} for s in top[:20]])
    if len(top) > 20:
        print(f"... and {len(top) - 20} more")
    neuron_set = NeuronSet.create(
        [s.unit for s in top], model, scores=[s.score for s in top],
        selection={"method": result.method, "target": result.target, "top_k": args.top_k, "rank_by": args.rank_by,
                   "params": result.params | {"layers": layers}, "scores_file": scores_base.name,
                   "processes": result.params.get("processes", 1)},
        problems=problems_info, name=f"{result.method} top {args.top_k}", sae=sae_entries)
    path = neuron_set.save(args.out)
    budget = result.params.get("relevance_budget_mean")
    if args.from_scores is None:
        processes = result.params.get("processes", 1)
        print(f"\n{problems_info['n']} problems in {result.params['seconds']:.1f} s"
              + (f" on {processes} processes" if processes > 1 else "")
              + (f"; mean relevance budget {budget:.3f} (1 - budget went to softmax and biases)" if budget else ""))
        print(f"wrote {path} ({len(top)} units) and {scores_base}.json/.safetensors (all scores)")
    else:
        print(f"\nwrote {path} ({len(top)} units), re-ranked from {args.from_scores}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """Data-parallel like ``locate``: every process scores its share of the problems under every condition
    (the same random sets, drawn from ``--seed``); rank 0 computes the metrics and writes the report."""
    from yfpo_core.cli import print_error
    from yfpo_core.distributed import launched

    check_output(args.out)
    with launched(args.device, announce=print_error) as dist:
        return _ablate(args, dist)


def _ablate(args: argparse.Namespace, dist) -> int:
    from yfpo_core.cli.output import print_table
    from yfpo_core.analysis.interventions import Intervention, ablation_test_sharded
    from yfpo_core.models import load_model
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.progress import tqdm_progress
    from yfpo_core.saes.set_saes import single_set_sae

    header = NeuronSet.load(args.set)  # validate the file before loading a model
    if not len(header):
        raise YfpoError(f"{args.set} has no units, so there is nothing to ablate; add units to the set (yfpo locate "
                        "or the app's Neuron set page)")
    model = load_model(args.model or header.model_name, device=dist.device)
    neuron_set = NeuronSet.load(args.set, model, allow_other_model=args.allow_other_model)
    source = args.problems or neuron_set.problems.get("source")
    if not source:
        raise YfpoError(f"{args.set} does not say which problems it was made on: pass --problems")
    limit = args.limit if args.limit is not None else neuron_set.problems.get("limit")
    from yfpo_core.problems import load_problems

    problems = load_problems(source, limit=limit, seed=args.seed)
    units = neuron_set.units_only()
    sae = single_set_sae(neuron_set, model, dist.device)
    with tqdm_progress(f"ablating {len(units)} units{_share(dist)}", unit="eval", disable=not dist.is_main) as progress:
        report = ablation_test_sharded(dist, model, problems, units, intervention=Intervention(args.kind),
                                       n_random=args.random, seed=args.seed, sae=sae, progress=progress)
    if report is None:
        return 0  # rank 0 reports
    print(f"\n{args.kind} ablation of {len(units)} units from {args.set.name} vs {args.random} random sets of "
          f"the same size and layers, on {len(problems)} problems of {source}"
          + (f" ({dist.world} processes)" if dist.world > 1 else "") + ":")
    print_table(report.rows())
    if args.out:
        from yfpo_core.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(report.to_dict(), indent=2))
        print(f"wrote {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_table
    from yfpo_core.analysis.inspection import intervention_effect, profile_unit
    from yfpo_core.models import DEFAULT_MODEL, load_model
    from yfpo_core.progress import tqdm_progress
    from yfpo_core.units.unit import Unit

    model = load_model(args.model or DEFAULT_MODEL, device=args.device)
    sae = None
    if args.unit.startswith("sae:"):
        from yfpo_core.saes.set_saes import typed_feature

        unit, sae = typed_feature(args.unit, model, device=args.device)
    else:
        try:
            unit = Unit.parse(args.unit)
        except ValueError as exc:
            raise YfpoError(str(exc)) from None
    if args.from_index:
        from yfpo_core.cli.index_commands import print_dashboard

        return print_dashboard(model, unit, sae, top=args.top, model_arg=args.model)
    problems = _problems(args, "gsm8k-test-100")
    try:
        with tqdm_progress(f"activations of {unit.short_label}", unit="problem") as progress:
            profile = profile_unit(model, unit, problems, top_n=args.top, sae=sae, progress=progress)
    except ValueError as exc:
        raise YfpoError(str(exc)) from None
    print(f"{unit.label} on {len(problems)} problems: mean {profile.mean:.3f}, std {profile.std:.3f}, "
          f"max {profile.max:.3f}, active (> {profile.threshold:g}) on {profile.density:.1%} of tokens\n")
    print("Top-activating problems (the max token in [brackets]):")
    for ex in profile.top_examples:
        text = "".join(f"[{t}]" if j == ex["position"] - max(0, ex["position"] - 8) else t
                       for j, (t, _) in enumerate(ex["context"]))
        print(f"  {ex['max_activation']:8.3f}  {ex['problem_id']:<28} {' '.join(text.split())!r}")
    print("\nLogit effect (direct path): promoted", ", ".join(f"{t!r} {v:+.2f}" for t, v in profile.promoted[:8]))
    print("                           suppressed", ", ".join(f"{t!r} {v:+.2f}" for t, v in profile.suppressed[:8]))
    if args.effect:
        with tqdm_progress("intervention effect", unit="eval") as progress:
            rows = intervention_effect(model, [unit], problems, sae=sae, progress=progress)
        print()
        print_table(rows)
    return 0
