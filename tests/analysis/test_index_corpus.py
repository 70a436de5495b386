"""The texts an activation index is built over (yfpo_core.analysis.index_corpus): the default corpus and user files."""

from __future__ import annotations

import pytest

from yfpo_core.analysis.index_corpus import default_corpus, read_corpus
from yfpo_core.errors import YfpoError


def test_default_corpus_and_user_corpus_files(index_model, tmp_path):
    corpus = default_corpus(index_model)
    assert {t.math for t in corpus} == {True, False} and len(corpus) == 300
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "Q: 1+1\\nA: 2", "math": true}\n\n{"id": "x", "text": "Q: hi\\nA: yo"}\n')
    texts = read_corpus(path)
    assert [(t.id, t.math) for t in texts] == [("c/1", True), ("x", False)]
    path.write_text('{"txt": 1}\n')
    with pytest.raises(YfpoError, match="line 1"):
        read_corpus(path)
