"""SAE features as units, on a tiny model with a tiny SAE."""

from __future__ import annotations


import pytest
import torch

from tests.helpers import PLANTED_FEATURE, hand_problems, planted_model, planted_sae
from tests.helpers import tiny_toy
from yfpo_core.attribution import attribute
from yfpo_core.errors import YfpoError
from yfpo_core.analysis.interventions import Intervention, ablation_test
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.saes.config import SAETrainConfig
from yfpo_core.saes.sae import SAESpace, feature_logit_effect, load_sae, sae_quality, train_sae
from yfpo_core.units.unit import Unit

def tiny():
    loaded = tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=96)
    return loaded


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    model = tiny()
    model.name = "toy-arith"  # use the toy training texts
    folder = tmp_path_factory.mktemp("sae") / "tiny-sae"
    config = SAETrainConfig(model="toy-arith", hook="blocks.1.mlp.hook_post", tokens=4096, width=32,
                            context_size=64, batch_tokens=256, buffer_batches=8, checkpoints=0)
    return model, train_sae(config, folder, model=model), folder


def test_train_save_reload_gives_identical_outputs(trained):
    model, loaded, folder = trained
    again = load_sae(str(folder), model)
    assert again.sae_id == "tiny-sae" and again.hook_name == "blocks.1.mlp.hook_post" and again.d_sae == 32
    x = torch.randn(5, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.sae.encode(x), loaded.sae.encode(x))
        torch.testing.assert_close(again.sae.decode(again.sae.encode(x)), loaded.sae.decode(loaded.sae.encode(x)))
    for key in ("l0", "explained_variance", "loss_delta", "loss_recovered"):
        assert key in again.meta["quality"]
    assert (folder / "cfg.json").exists() and (folder / "sae_weights.safetensors").exists()


def test_splicing_with_the_error_term_leaves_logits_unchanged(trained):
    model, loaded, _ = trained
    tokens = torch.tensor([model.encode_prompt("Q: Ann has 12 pens. She buys 7 more.\nA: 12+7=19. #### 19")])
    seen = {}
    with torch.no_grad():
        clean = model.model(tokens)
        with SAESpace(loaded).reading(model.model, lambda name, f: seen.setdefault(name, f)):
            spliced = model.model(tokens)
    torch.testing.assert_close(spliced, clean, atol=1e-5, rtol=1e-5)
    assert seen["blocks.1.mlp.hook_post.hook_sae_acts_post"].shape[-1] == 32
    # without the error term the reconstruction replaces the activation and the loss changes
    quality = sae_quality(model, loaded, ["Q: Ann has 12 pens.\nA: 12"])
    assert quality["loss_spliced"] != quality["loss_clean"]


@pytest.mark.parametrize("method", ["attnlrp", "grad_x_act", "activation"])
def test_planted_feature_ranks_first(method):
    model = planted_model()
    space = SAESpace(planted_sae(model))
    result = attribute(model, hand_problems(), method, "answer_logprob", units=space)
    best = result.top(1)[0].unit
    assert best.kind == "sae_feature" and best.index == PLANTED_FEATURE and best.sae_id == "planted"
    assert best.hook_name == "blocks.1.mlp.hook_post"


def test_feature_ablation_and_feature_sets(tmp_path):
    model = planted_model()
    sae = planted_sae(model)
    units = [Unit("sae_feature", sae.hook_name, PLANTED_FEATURE, sae_id="planted")]
    report = ablation_test(model, hand_problems(), units, n_random=3, sae=sae)
    # removing the feature that drives the answer hurts the gold log-prob far more than random features
    assert report.effect("gold_logprob") < min(report.random_effects("gold_logprob")) - 1.0
    mean_report = ablation_test(model, hand_problems(), units, n_random=2, sae=sae,
                                intervention=Intervention("mean"))
    assert mean_report.n_units == 1
    neuron_set = NeuronSet.create(units, model, scores=[1.0], sae={"planted": sae.neuron_set_entry()})
    again = NeuronSet.from_json(neuron_set.to_json(), model)
    assert again.units_only() == units
    promoted, _ = feature_logit_effect(model, sae, PLANTED_FEATURE, k=2)
    assert {t for t, _ in promoted} == {" ", "9"}  # the driver writes towards " 9"


def test_bad_sae_references():
    model = tiny()
    model.name = "tiny-without-sae"
    with pytest.raises(YfpoError, match="neither a folder"):
        load_sae("nonsense", model)
    with pytest.raises(YfpoError, match="no shipped SAE"):
        load_sae("default", model)


def test_resolve_sae_ref_reads_each_form_once(tmp_path, monkeypatch):
    from tests.helpers import save_tiny_sae
    from yfpo_core.saes import sae as saes
    from yfpo_core.saes.sae import resolve_sae_ref

    folder = save_tiny_sae(tmp_path / "my-sae")
    monkeypatch.chdir(tmp_path)
    assert resolve_sae_ref("my-sae") == str(folder.resolve())  # a folder: absolute, loads from anywhere
    assert resolve_sae_ref(" ./my-sae ") == str(folder.resolve())
    assert resolve_sae_ref("gpt2-small-res-jb/blocks.8.hook_resid_pre") == "gpt2-small-res-jb/blocks.8.hook_resid_pre"
    with pytest.raises(YfpoError, match="There is no folder /no/such/sae"):
        resolve_sae_ref("/no/such/sae")
    with pytest.raises(YfpoError, match="is a file, not an SAE folder"):
        resolve_sae_ref(str(folder / "cfg.json"))
    with pytest.raises(YfpoError, match="neither a folder"):
        resolve_sae_ref("nonsense")
    model = tiny()
    model.name = "toy-arith"
    monkeypatch.setattr(saes, "SHIPPED_DIR", tmp_path / "shipped")
    with pytest.raises(YfpoError, match="not on disk .*yfpo sae train --model toy-arith"):
        resolve_sae_ref("default", model)
    monkeypatch.setitem(saes.DEFAULT_SAES, "toy-arith", "my-sae")
    monkeypatch.setattr(saes, "SHIPPED_DIR", tmp_path)
    assert resolve_sae_ref("default", model) == str(tmp_path / "my-sae")
    assert load_sae("default", model).source == str(tmp_path / "my-sae")
