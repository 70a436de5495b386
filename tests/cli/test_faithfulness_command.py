"""yfpo faithfulness (yfpo_core.cli.faithfulness_command): JSON, CSV and HTML written; bad options refused."""

from __future__ import annotations

import json


def test_cli_writes_json_csv_and_html(tmp_path, capsys):
    from yfpo_core.cli import main
    from yfpo_core.models import register_model

    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model

    model = wrap_toy_model(build_toy_model(toy_config_kwargs({"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64,
                                                              "n_ctx": 256})), source="test")  # toy problems fit
    register_model("tiny-faithfulness", lambda device: model)
    out = tmp_path / "faith"
    assert main(["faithfulness", "--model", "tiny-faithfulness", "--problems", "toy", "--locate", "2", "--heldout",
                 "3", "--methods", "grad_x_act,activation", "--ks", "1,5", "--random", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out problems of toy" in printed and "jaccard" in printed and "cost: attribution" in printed
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["settings"]["ks"] == [1, 5] and len(data["settings"]["heldout_ids"]) == 3
    assert not set(data["settings"]["heldout_ids"]) & set(data["settings"]["locate_ids"])
    assert out.with_suffix(".csv").read_text().startswith("method,k,ranking_accuracy,gold_logprob")
    assert "plotly" in out.with_suffix(".html").read_text()
    assert main(["faithfulness", "--model", "tiny-faithfulness", "--methods", "magic", "--out", str(out)]) == 2
    assert main(["faithfulness", "--model", "tiny-faithfulness", "--ks", "0,5", "--out", str(out)]) == 2
