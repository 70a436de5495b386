"""The corpus of an activation index (:mod:`yfpo_core.analysis.activation_index`): its texts, the default
corpus (GSM8K, GSM-Symbolic and non-math texts, or the toy model's own), a user's JSONL corpus, and the
fingerprint that names an index's folder."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel


class IndexError_(YfpoError):
    """An index is missing, stale or damaged."""


@dataclass(frozen=True)
class CorpusText:
    """One text of the corpus: its id, whether it is math, and where it came from."""

    id: str
    text: str
    math: bool
    source: str


def default_corpus(model: LoadedModel, gsm_symbolic: bool = True) -> list[CorpusText]:
    """The 100 GSM8K test problems with gold solutions, the default GSM-Symbolic variants (when
    ``gsm_symbolic``) and the non-math texts, in the model's prompt format; for the toy model, its own
    problems and digit-free texts."""
    fmt = model.prompt_format
    texts: list[CorpusText] = []
    if model.native_problems == "toy":
        from yfpo_core.problems.synthetic import generate_toy_nonmath, generate_toy_problems

        texts += [CorpusText(p.id, fmt.prompt(p.question) + fmt.response(p.solution), True, "toy")
                  for p in generate_toy_problems(200, seed=0)]
        texts += [CorpusText(f"toy-nonmath/{i}", t, False, "toy-nonmath")
                  for i, t in enumerate(generate_toy_nonmath(100, seed=0))]
        return texts
    from yfpo_core.problems import load_problems
    from yfpo_core.problems.nonmath import load_nonmath_texts

    sources = ["gsm8k-test-100"] + (["gsm-symbolic"] if gsm_symbolic else [])
    for source in sources:
        texts += [CorpusText(p.id, fmt.prompt(p.question) + fmt.response(p.solution), True, source)
                  for p in load_problems(source)]
    texts += [CorpusText(f"nonmath/{i}", fmt.prompt(t), False, "nonmath") for i, t in enumerate(load_nonmath_texts())]
    return texts


def read_corpus(path: str | os.PathLike[str]) -> list[CorpusText]:
    """A user corpus: JSONL with ``text`` and optional ``id`` and ``math`` (default false) per line."""
    path = Path(path)
    texts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexError_(f"cannot read the corpus {path}: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"]
            if not isinstance(text, str) or not text:
                raise ValueError("text must be a non-empty string")
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexError_(f"{path}, line {n}: each line must be a JSON object with a \"text\" string "
                              f"(and optional \"id\", \"math\"): {exc}") from None
        texts.append(CorpusText(str(row.get("id", f"{path.stem}/{n}")), text, bool(row.get("math", False)),
                                f"file:{path.name}"))
    if not texts:
        raise IndexError_(f"{path} holds no texts")
    return texts


def corpus_fingerprint(texts: Sequence[CorpusText]) -> str:
    digest = hashlib.sha256()
    for t in texts:
        digest.update(json.dumps([t.id, t.text, t.math]).encode())
    return digest.hexdigest()[:16]
