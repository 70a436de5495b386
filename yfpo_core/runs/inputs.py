"""What a run trains on, resolved from its config: the model, the pairs, held-out problems and the units.

:func:`resolve_inputs` is the one place that turns a :class:`YFPOConfig` into those objects; the held-out
problems share no template with the training ones, and the random-set control draws its units here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, phase, report
from yfpo_core.training.config import YFPOConfig, sequence_length
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit


@dataclass
class RunInputs:
    """What a trainer needs, resolved from a config: model, pairs, held-out problems, units."""

    base: LoadedModel
    pairs: list
    eval_problems: list[Problem]
    exact_problems: list[Problem]
    units: list[Unit] = field(default_factory=list)
    scores: list[float | None] | None = None
    saes: dict[str, Any] = field(default_factory=dict)  # sae_id -> LoadedSAE, for the features in ``units``
    probe_units: list[Unit] | None = None  # the user's set (before any random control), for eval/neuron_margin
    probe_scores: list[float | None] | None = None
    directions: list[int | None] | None = None  # the set's stored unit directions (sign = set), aligned with units
    probe_directions: list[int | None] | None = None


# Generated sources with an ``n`` option (default size) whose first problems do not depend on ``n``.
GROWABLE_SOURCES = {"toy": 200}
HELD_OUT_TEMPLATE_CHUNK = 10  # GSM-Symbolic templates generated at a time for held-out problems (~45 problems)


def _split_by_template(problems: Sequence[Problem]) -> dict[str, list[Problem]]:
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        key = str(p.meta.get("template", p.id))
        groups.setdefault(key, []).append(p)
    return groups


def resolve_inputs(config: YFPOConfig, base: LoadedModel | None = None,
                   progress: ProgressCallback | None = None, neuron_set: NeuronSet | None = None,
                   saes: Mapping[str, Any] | None = None) -> RunInputs:
    """Load the model, make or read the pairs, pick held-out problems that share no template with the
    training problems, and read the units (or draw the random control set).

    ``neuron_set`` is the set ``config.neuron_set`` names, when the caller holds it already (the app: its
    current set, which it also saved into the run folder); it is then used as it is instead of being read
    back. ``saes`` (sae_id -> :class:`~yfpo_core.saes.sae.LoadedSAE`) are SAEs the caller has loaded; the
    set's other SAEs are loaded here. ``progress`` hears each phase by name ("model", "training problems",
    "pairs", "units") with its own count where it has one."""
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems
    from yfpo_core.saes.set_saes import load_set_saes
    from yfpo_core.training.on_policy import on_policy_pairs
    from yfpo_core.training.pairs import corrupted_pairs
    from yfpo_core.training.pairs_io import load_pairs
    from yfpo_core.training.scope import check_scope

    base = base or load_model(config.model, device=config.device, progress=phase(progress, "model"))
    sequence_length(config.max_length, base.model.cfg.n_ctx)  # refuse a length the model cannot hold, before any work
    check_scope(config, base.model.cfg.n_layers)  # before the pairs, which can take minutes to make
    eval_seed = config.seed + 1 if config.eval_seed is None else config.eval_seed
    if config.problems == config.eval_problems == "gsm-symbolic":
        # Split by template index, so each side generates only its own templates (generation costs seconds
        # per template) and the held-out problems share no template with the training ones.
        train_templates = list(range(min(config.n_train_templates, 99)))
        train_source = load_problems(config.problems, seed=config.seed, templates=train_templates,
                                     progress=phase(progress, "training problems"))
        # The held-out side generates its templates a chunk at a time, only until it has the problems asked
        # for: the first ones are the same as from all 80 (each template has its own seed), minutes sooner.
        rest, eval_pool = [t for t in range(100) if t not in train_templates], []
        for start in range(0, len(rest), HELD_OUT_TEMPLATE_CHUNK):
            eval_pool += load_problems(config.eval_problems, seed=eval_seed,
                                       templates=rest[start: start + HELD_OUT_TEMPLATE_CHUNK],
                                       progress=phase(progress, "held-out problems"))
            if len(eval_pool) >= max(config.n_eval_problems, config.n_exact_problems):
                break
    else:
        train_source = load_problems(config.problems, seed=config.seed, progress=phase(progress, "training problems"))
        eval_pool = load_problems(config.eval_problems, seed=eval_seed, progress=phase(progress, "held-out problems"))
    groups = _split_by_template(train_source)
    keys = sorted(groups)
    train_keys, train_problems = [], []
    for key in keys:  # whole templates go to training until there are enough problems
        if len(train_problems) >= config.n_train_problems:
            break
        train_keys.append(key)
        train_problems += groups[key]
    train_problems = train_problems[: config.n_train_problems]
    used = set(train_keys)
    train_ids = {t.id for t in train_problems}

    def held_out(pool: Sequence[Problem]) -> list[Problem]:
        return [p for p in pool if str(p.meta.get("template", p.id)) not in used and p.id not in train_ids]

    eval_pool = held_out(eval_pool)
    wanted = max(config.n_eval_problems, config.n_exact_problems)
    size = GROWABLE_SOURCES.get(config.eval_problems)
    while size and len(eval_pool) < wanted and size < 64 * GROWABLE_SOURCES[config.eval_problems]:
        # A generated source whose first problems are the same for any n: ask for more, so that the
        # template split leaves as many held-out problems as asked (the first ones do not change).
        size *= 2
        eval_pool = held_out(load_problems(config.eval_problems, seed=eval_seed, n=size))
    eval_problems = eval_pool[: config.n_eval_problems]
    exact_problems = eval_pool[: config.n_exact_problems]
    if config.n_eval_problems and not eval_problems:
        raise YfpoError(f"no held-out problems left in {config.eval_problems} after taking {len(train_problems)} "
                        "training problems: lower n_train_problems or use another eval set")
    pairs_progress = phase(progress, "pairs", len(train_problems))
    if config.pairs:
        pairs = load_pairs(config.pairs)
    elif config.pair_source == "on-policy":
        pairs, _ = on_policy_pairs(base, train_problems, seed=config.seed, progress=pairs_progress)
    else:
        mode = config.pair_source.split("-", 1)[1]
        pairs = corrupted_pairs(train_problems, base.prompt_format, mode=mode, seed=config.seed)
    report(progress, 0, 0, "units")
    units: list[Unit] = []
    scores = None
    loaded: dict[str, Any] = {}
    if config.neuron_set:
        neuron_set = neuron_set if neuron_set is not None else NeuronSet.load(config.neuron_set, base)
        if not len(neuron_set) and config.lam > 0:
            raise YfpoError(f"{config.neuron_set} has no units, so the neuron term has nothing to reward; add units "
                            "to the set, or set lam = 0 for plain DPO")
        units = neuron_set.units_only()
        scores = [su.score for su in neuron_set.units]
        loaded = load_set_saes(neuron_set, units, base, config.device, where=config.neuron_set, given=saes)
        directions = [su.direction for su in neuron_set.units]
        probe_units, probe_scores, probe_directions = list(units), list(scores), list(directions)
        if config.random_units_seed is not None:
            units = random_control_units(units, base, loaded, config.random_units_seed)
            scores, directions = None, None
        if config.probe_set and config.probe_set != config.neuron_set:
            probe = NeuronSet.load(config.probe_set, base)
            probe_units = probe.units_only()
            probe_scores = [su.score for su in probe.units]
            probe_directions = [su.direction for su in probe.units]
            loaded.update(load_set_saes(probe, probe_units, base, config.device, where=config.probe_set,
                                        given=saes))
    if not config.neuron_set:
        return RunInputs(base, pairs, eval_problems, exact_problems, units, scores, loaded)
    return RunInputs(base, pairs, eval_problems, exact_problems, units, scores, loaded, probe_units, probe_scores,
                     directions, probe_directions)


def random_control_units(units: Sequence[Unit], base: LoadedModel, saes: dict[str, Any], seed: int) -> list[Unit]:
    """The random-set control: as many random neurons per hook as ``units`` has, and as many random features
    of each SAE as it has of that SAE, none of the set's own units.

    Neurons are drawn exactly as before features were supported (one :func:`random_unit_sets` call with
    ``seed``); each SAE's features are drawn separately with a seed derived from ``seed`` and the SAE's id
    (``random_unit_sets`` keys widths by hook, and a neuron and a feature can share a hook)."""
    import zlib

    from yfpo_core.analysis.interventions import random_unit_sets

    neurons = [u for u in units if u.kind == "neuron"]
    out: list[Unit] = []
    if neurons:
        widths = {u.hook_name: int(base.model.cfg.d_mlp) for u in neurons}
        out += random_unit_sets(neurons, widths, 1, seed=seed, exclude=neurons)[0]
    for sae_id in sorted({u.sae_id for u in units if u.kind == "sae_feature" and u.sae_id}):
        features = [u for u in units if u.kind == "sae_feature" and u.sae_id == sae_id]
        widths = {features[0].hook_name: int(saes[sae_id].d_sae)}
        sae_seed = seed * 1_000_003 + zlib.crc32(sae_id.encode())
        try:
            out += random_unit_sets(features, widths, 1, seed=sae_seed, exclude=features)[0]
        except ValueError as exc:
            raise YfpoError(f"random-set control: SAE {sae_id!r}: {exc}") from None
    return out
