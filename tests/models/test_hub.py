"""Models from Hugging Face folders and the hub (yfpo_core.models.hub): each agrees with its twin; offline, a hub
name fails in one line."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.errors import ModelUnavailableError
from yfpo_core.models import load_model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_local_folder_matches_its_hf_twin(local_folders, family):
    loaded = load_model(str(local_folders / family))
    ids = torch.tensor([loaded.encode_prompt("Q: Ann has 12 pens. She buys 7 more.\nA: 12+7=19.")])
    with torch.no_grad():
        tl_logits = loaded.model(ids)
        hf_logits = loaded.hf_twin()(ids).logits
    # TransformerLens centres the unembedding, so compare logits up to a constant per position.
    tl_logits = tl_logits - tl_logits.mean(-1, keepdim=True)
    hf_logits = hf_logits - hf_logits.mean(-1, keepdim=True)
    assert (tl_logits - hf_logits).abs().max() < 1e-4
    assert torch.equal(tl_logits.argmax(-1), hf_logits.argmax(-1))


def test_hub_name_offline_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_model("gpt2")
    message = str(err.value)
    assert "\n" not in message
    assert "hub is not reachable" in message and "smollm2-135m-instruct" in message
