"""YFPO Workbench: locate the units that carry math in a language model, pick them, fine-tune with them.

The public API, used by the notebooks, the app and scripts (everything else is reachable through the
submodules)::

    import yfpo_core as yf

    model = yf.load_model("toy-arith")                      # or "smollm2-135m-instruct" (default)
    problems = yf.load_problems("toy", limit=50)            # or "gsm8k-test-100", "gsm-symbolic", a file
    print(yf.evaluate(model, problems).summary())            # answer-ranking accuracy
    result = yf.attribute(model, problems, "attnlrp")        # every MLP neuron scored
    units = [s.unit for s in result.top(20)]
    print(yf.ablate(model, problems, units).rows())          # top-20 vs random 20-unit sets
    yf.NeuronSet.create(units, model).save("set.json")       # export; NeuronSet.load to import
    run = yf.train(yf.YFPOConfig(model="toy-arith", neuron_set="set.json", problems="toy",
                                 eval_problems="toy", steps=20))
    yf.read_metrics(run)                                     # one dict per step

Imports are lazy: ``import yfpo_core`` is instant; torch and TransformerLens load on first use.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "LoadedModel": "yfpo_core.models.base",
    "Problem": "yfpo_core.problems.base",
    "Unit": "yfpo_core.units.unit",
    "NeuronSet": "yfpo_core.units.neuron_set",
    "AttributionResult": "yfpo_core.attribution.result",
    "Intervention": "yfpo_core.analysis.interventions",
    "YFPOConfig": "yfpo_core.training.config",
    "TrainingRun": "yfpo_core.runs",
    "read_metrics": "yfpo_core.runs",
    "list_runs": "yfpo_core.runs",
    "default_runs_dir": "yfpo_core.runs",
    "load_sae": "yfpo_core.saes.sae",
    "profile_unit": "yfpo_core.analysis.inspection",
    "METHODS": "yfpo_core.attribution",
    "TARGETS": "yfpo_core.attribution",
}

__all__ = ["__version__", "load_model", "load_problems", "evaluate", "exact_match", "attribute", "ablate",
           "make_pairs", "train", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from yfpo_core.attribution.result import AttributionResult
    from yfpo_core.models.base import LoadedModel
    from yfpo_core.problems.base import Problem


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yfpo_core' has no attribute {name!r}")


def load_model(name: str = "smollm2-135m-instruct", device: str = "cpu") -> LoadedModel:
    """Load a model: the embedded default, ``"toy-arith"``, a TransformerLens name or a local folder.

    >>> model = load_model("toy-arith")
    >>> model.model.cfg.n_layers, model.model.cfg.d_mlp
    """
    from yfpo_core.models import load_model as _load

    return _load(name, device=device)


def load_problems(source: str = "gsm8k-test-100", limit: int | None = None, **options: Any) -> list[Problem]:
    """Load a problem set by name (``gsm8k-test-100``, ``gsm-symbolic``, ``gsm8k``, ``toy``) or file.

    >>> problems = load_problems("gsm8k-test-100", limit=5)
    >>> problems[0].question, problems[0].answer
    """
    from yfpo_core.problems import load_problems as _load

    return _load(source, limit=limit, **options)


def evaluate(model: LoadedModel, problems: list[Problem], **kwargs: Any):
    """Answer-ranking accuracy (teacher-forced gold answer vs nearby wrong ones); fast.

    >>> report = evaluate(load_model("toy-arith"), load_problems("toy", limit=20))
    >>> report.summary()["ranking_accuracy"], report.to_frame().head()
    """
    from yfpo_core.scoring.evaluate import answer_ranking

    return answer_ranking(model, problems, **kwargs)


def exact_match(model: LoadedModel, problems: list[Problem], **kwargs: Any):
    """Exact match of the greedy answer with the gold one; slow (generation).

    >>> report = exact_match(load_model("toy-arith"), load_problems("toy", limit=20))
    >>> report.accuracy
    """
    from yfpo_core.scoring.evaluate import exact_match as _exact

    return _exact(model, problems, **kwargs)


def attribute(model: LoadedModel, problems: list[Problem], method: str = "attnlrp", target: str = "answer_logprob",
              **kwargs: Any) -> AttributionResult:
    """Score every MLP neuron (or SAE feature, ``units=SAESpace(load_sae(...))``) over a problem set.

    >>> result = attribute(model, problems, "attnlrp", "answer_logprob")
    >>> result.to_frame(k=10)
    """
    from yfpo_core.attribution import attribute as _attribute

    return _attribute(model, problems, method, target, **kwargs)


def ablate(model: LoadedModel, problems: list[Problem], units: list, n_random: int = 5, **kwargs: Any):
    """Zero (or mean-ablate) ``units`` and ``n_random`` random same-size sets; compare answer ranking.

    >>> report = ablate(model, problems, [s.unit for s in result.top(20)])
    >>> report.rows()   # effect, random mean and std, z per metric
    """
    from yfpo_core.analysis.interventions import ablation_test

    return ablation_test(model, problems, units, n_random=n_random, **kwargs)


def make_pairs(model: LoadedModel, problems: list[Problem], mode: str = "final", seed: int = 0) -> list:
    """Preference pairs: the gold solution (chosen) against the same solution with a wrong final answer
    (``mode="final"``) or a wrong step (``"step"``); see :mod:`yfpo_core.training.on_policy` for on-policy pairs.

    >>> pairs = make_pairs(model, load_problems("toy", limit=16))
    >>> pairs[0].chosen, pairs[0].rejected
    """
    from yfpo_core.training.pairs import corrupted_pairs

    return corrupted_pairs(problems, model.prompt_format, mode=mode, seed=seed)


def train(config: Any, run_dir: str | Path | None = None, model: LoadedModel | None = None) -> Path:
    """Train synchronously (YFPO, or DPO when ``config.lam == 0``); returns the run directory.

    >>> run = train(YFPOConfig(model="toy-arith", neuron_set="set.json", problems="toy", eval_problems="toy"))
    >>> read_metrics(run)[-1]["eval/ranking_accuracy"]
    """
    from yfpo_core.runs import execute, new_run_dir, run_slug

    path = Path(run_dir) if run_dir else new_run_dir(run_slug(config))
    path.mkdir(parents=True, exist_ok=True)
    execute(path, config, base=model)
    return path
