"""The :class:`Problem` record shared by every problem source, and its JSON form (:class:`TextRecord`, which
preference pairs share)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

ANSWER_MARKER = "####"


class TextRecord:
    """A frozen dataclass of text fields plus a ``meta`` mapping, as one JSON object: the one writing and
    reading of problems and of preference pairs (:class:`~yfpo_core.training.pairs.PreferencePair`).

    Every text field must be present (a ``KeyError`` names the first missing one), except those in
    ``OPTIONAL_TEXT``, read as ``""`` when missing or null; ``meta`` is optional."""

    OPTIONAL_TEXT: ClassVar[tuple[str, ...]] = ()
    meta: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        text = {f.name: str(d.get(f.name) or "") if f.name in cls.OPTIONAL_TEXT else str(d[f.name])
                for f in fields(cls) if f.name != "meta"}  # type: ignore[arg-type]
        return cls(**text, meta=dict(d.get("meta") or {}))


@dataclass(frozen=True)
class Problem(TextRecord):
    """One math word problem with its gold solution.

    Attributes:
        id: Stable identifier, unique within its source, e.g. ``"gsm8k-test-100/0473"``.
        question: The problem text shown to the model.
        solution: The gold solution in GSM8K format: reasoning lines (possibly with ``<<a*b=c>>``
            calculator notes) and a last line ``#### <answer>``.
        answer: The canonical final answer as a string (``"18"``, ``"3.5"``, ``"-4"``): what
            :func:`yfpo_core.problems.answers.extract_answer` returns for a correct solution.
        source: The loader that produced it (``"gsm8k-test-100"``, ``"gsm-symbolic"``, ``"toy"``,
            ``"file:<path>"``, ``"gsm8k"``).
        meta: Source-specific extras (template id, operation kind, row number) kept for filtering.
    """

    id: str
    question: str
    solution: str
    answer: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def size(self) -> int:
        """Characters of question and solution: a proxy for what scoring the problem costs, used to deal
        problems out evenly over processes (:meth:`yfpo_core.distributed.Distributed.shard_by_cost`)."""
        return len(self.question) + len(self.solution)
