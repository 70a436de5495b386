"""The :class:`Problem` record shared by every problem source, and its JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

ANSWER_MARKER = "####"


@dataclass(frozen=True)
class Problem:
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        return cls(id=str(d["id"]), question=str(d["question"]), solution=str(d["solution"]),
                   answer=str(d["answer"]), source=str(d["source"]), meta=dict(d.get("meta") or {}))
