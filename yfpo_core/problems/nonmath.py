"""Everyday English text without any mathematics: the contrast set for locating "math" neurons.

MathNeuro-style analysis finds neurons that matter for math reasoning by comparing their importance on
math problems with their importance on ordinary text; a neuron important for both is general language
machinery, not math. The contrast only works if the ordinary text is really free of math, so this set is
hand-written for the purpose and ships with the package (``data/nonmath_passages.txt``, so it works
offline): over a hundred short passages of two to four sentences on weather, cooking, travel, animals,
history, sports, music, gardening, friendship, art, nature, school and work. They contain no digits, no
number words (cardinal, ordinal, fraction or multiplier), no arithmetic and no measurements; the tests
check that.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

DATA_PACKAGE = "yfpo_core.problems"
DATA_FILE = "data/nonmath_passages.txt"


@lru_cache(maxsize=1)
def _passages() -> tuple[str, ...]:
    """Read the passages once: one per line, ``#`` comment lines and blank lines skipped."""
    text = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def load_nonmath_texts(limit: int | None = None) -> list[str]:
    """The non-math passages, in file order (the order is fixed, so ``limit`` is deterministic).

    Args:
        limit: Keep only the first ``limit`` passages; ``None`` for all.

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be at least 0, got {limit}")
    passages = list(_passages())
    return passages if limit is None else passages[:limit]
