"""The full GSM8K from the Hugging Face Hub (source ``gsm8k``).

Data source: the ``openai/gsm8k`` dataset, config ``main``, through :func:`datasets.load_dataset`
(7,473 train and 1,319 test problems, each a ``question`` and a gold ``answer`` solution ending in
``#### N``). It needs the Hub, or a copy in the local ``datasets`` cache. When neither is there (no network,
``HF_HUB_OFFLINE=1``), we raise a one-line :class:`ProblemDataError` that points to the offline sources
``gsm8k-test-100`` and ``gsm-symbolic`` instead of a long ``datasets`` traceback.

Ids are ``"gsm8k-<split>/<index, 4 digits>"``, e.g. ``"gsm8k-test/0473"``: the index is the row in the
split, the same number as ``meta['gsm8k_index']`` of the ``gsm8k-test-100`` problems.
"""

from __future__ import annotations

from typing import Any

from yfpo_core.problems.answers import extract_answer, format_number
from yfpo_core.errors import ProblemDataError
from yfpo_core.problems.base import Problem

SOURCE_NAME = "gsm8k"
DATASET_ID = "openai/gsm8k"
DATASET_CONFIG = "main"
SPLITS = ("train", "test")
OFFLINE_HINT = "use the offline sources 'gsm8k-test-100' or 'gsm-symbolic' instead"


def _load_rows(split: str) -> Any:
    """The raw ``datasets`` split; every failure becomes one user-facing line."""
    try:
        import datasets
    except ImportError as exc:
        raise ProblemDataError(
            f"Loading {DATASET_ID} needs the package `datasets` ({exc}); run `make install`, or "
            f"{OFFLINE_HINT}."
        ) from exc
    try:
        return datasets.load_dataset(DATASET_ID, DATASET_CONFIG, split=split)
    except Exception as exc:  # offline, DNS, HTTP, auth, missing cache: datasets raises many kinds
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProblemDataError(
            f"Cannot load {DATASET_ID} ({split}): the Hugging Face Hub is unreachable and the dataset is not "
            f"in the local cache ({type(exc).__name__}: {reason[:200]}); {OFFLINE_HINT}."
        ) from exc


def load_gsm8k(split: str = "test") -> list[Problem]:
    """All GSM8K problems of one split, in dataset order.

    Args:
        split: ``"test"`` (1,319 problems) or ``"train"`` (7,473).

    Raises:
        ProblemDataError: Unknown split, Hub unreachable, or a row without a parseable answer.
    """
    if split not in SPLITS:
        raise ProblemDataError(f"gsm8k: unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    rows = _load_rows(split)
    problems = []
    for index, row in enumerate(rows):
        solution = str(row["answer"]).strip()
        value = extract_answer(solution)
        if value is None:
            raise ProblemDataError(
                f"gsm8k ({split}) row {index}: the solution has no final answer after '####'; the cached "
                "dataset looks damaged. Delete it from the Hugging Face datasets cache and load again."
            )
        problems.append(Problem(
            id=f"gsm8k-{split}/{index:04d}",
            question=str(row["question"]).strip(),
            solution=solution,
            answer=format_number(value),
            source=SOURCE_NAME,
            meta={"gsm8k_index": index, "gsm8k_split": split},
        ))
    return problems
