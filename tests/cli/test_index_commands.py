"""yfpo index build, inspect --from-index and search (yfpo_core.cli.index_commands) on the tiny index model."""

from __future__ import annotations

import json

from tests.helpers import INDEX_TEXTS, attribution_toy


def test_cli_index_build_inspect_and_search(tmp_path, capsys):
    index_model = attribution_toy()  # the model of tests/analysis's index tests
    from yfpo_core.cli import main
    from yfpo_core.models import register_model

    register_model("tiny-index", lambda device: index_model)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t.text, "math": t.math, "id": t.id}) for t in INDEX_TEXTS))
    assert main(["inspect", "--model", "tiny-index", "--unit", "L1N40", "--from-index"]) == 2
    assert "yfpo index build --model tiny-index" in capsys.readouterr().err
    assert main(["index", "build", "--model", "tiny-index", "--corpus", str(corpus)]) == 0
    assert "index of 128 units over 5 texts" in capsys.readouterr().out
    assert main(["inspect", "--model", "tiny-index", "--unit", "L1N40", "--from-index"]) == 0
    out = capsys.readouterr().out
    assert "Top contexts" in out and "Quantile" in out and "math mean" in out and "drawn from the index" in out
    assert main(["search", "--model", "tiny-index", "--text", INDEX_TEXTS[0].text, "--position", "5", "--k", "3"]) == 0
    assert "Units most active on token 5" in capsys.readouterr().out
    assert main(["search", "--model", "tiny-index", "--token", "9", "--corpus", str(corpus)]) == 0
    assert "top_contexts_on_token" in capsys.readouterr().out
