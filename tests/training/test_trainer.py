"""The YFPO trainer and its runs on a tiny random model: gradients, learning, files, resume, NaN guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import save_tiny_sae, trainer_config as config, trainer_for
from yfpo_core.runs import execute, latest_checkpoint, read_metrics, read_status, resolve_inputs
from yfpo_core.training.trainer import NonFiniteLossError, YFPOTrainer
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit


def test_neuron_term_gradient_reaches_only_the_units_weights(setup):
    model, tmp = setup
    grads = {}
    for lam in (0.0, 5.0):
        trainer = trainer_for(config(tmp, lam=lam, batch_pairs=8))
        trainer.compute_loss(0).loss.backward()
        w_in = trainer.model.blocks[1].mlp.W_in.grad
        assert w_in[:, 5:].abs().sum() == 0  # the gradient mask keeps other neurons fixed
        grads[lam] = w_in[:, :5].clone()
    assert grads[5.0].abs().sum() > 0 and not torch.allclose(grads[0.0], grads[5.0])
    assert model.model.blocks[1].mlp.W_in.grad is None  # the shared base model is never trained


def test_short_run_raises_the_units_margin_and_the_loss_falls(setup):
    _, tmp = setup
    margins = {}
    for lam in (0.0, 5.0):
        trainer = trainer_for(config(tmp, lam=lam, batch_pairs=8, steps=30))
        before = trainer.unit_margin_on_pairs()
        losses = [trainer.train_step(step)["loss"] for step in range(1, 31)]
        margins[lam] = trainer.unit_margin_on_pairs() - before
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert margins[5.0] > margins[0.0] + 0.05, margins


def test_lambda_zero_trains_exactly_like_dpo(setup):
    _, tmp = setup
    with_units = trainer_for(config(tmp, lam=0.0, trainable="mlp_last_k", last_k=1))
    without = trainer_for(config(tmp, lam=0.0, trainable="mlp_last_k", last_k=1, neuron_set=None))
    for step in (1, 2, 3):
        a, b = with_units.train_step(step), without.train_step(step)
        assert a["loss"] == b["loss"] and a["dpo/loss"] == b["dpo/loss"]


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(setup, monkeypatch):
    _, tmp = setup
    original = YFPOTrainer.compute_loss
    current = {"step": 0}

    def poisoned(self, i):
        out = original(self, i)
        if current["step"] == 5:
            out.loss = out.loss * float("nan")
        return out

    def counting_step(self, step):
        current["step"] = step
        return original_step(self, step)

    original_step = YFPOTrainer.train_step
    monkeypatch.setattr(YFPOTrainer, "compute_loss", poisoned)
    monkeypatch.setattr(YFPOTrainer, "train_step", counting_step)
    run = tmp / "nan"
    run.mkdir()
    with pytest.raises(NonFiniteLossError, match="step 5"):
        execute(run, config(tmp, steps=8))
    assert read_status(run)["state"] == "failed" and "step 5" in read_status(run)["error"]
    assert latest_checkpoint(run).name == "step-000004"
    assert [r["step"] for r in read_metrics(run)] == [0, 1, 2, 3, 4]


SETUP_TINY_LLAMA = """
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from yfpo_core.models import load_model
from yfpo_core.models.toy import toy_tokenizer
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit
root = sys.argv[1]
tok = toy_tokenizer()
torch.manual_seed(0)
m = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=256,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id))
m.save_pretrained(root + "/model")
tok.save_pretrained(root + "/model")
NeuronSet.create([Unit.neuron(1, i) for i in range(4)], load_model(root + "/model"), scores=[1.0] * 4).save(
    root + "/set.json")
"""


def test_two_process_data_parallel_run(tmp_path):
    """The same training code under torchrun with 2 CPU processes (gloo): accelerate wraps the policy in
    DistributedDataParallel, each process trains on its own batches, and the replicas end identical."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    (tmp_path / "setup.py").write_text(SETUP_TINY_LLAMA)
    subprocess.run([sys.executable, str(tmp_path / "setup.py"), str(tmp_path)], env=env, check=True,
                   capture_output=True, timeout=300)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "yfpo_core", "train",
           "--model", str(tmp_path / "model"), "--neuron-set", str(tmp_path / "set.json"), "--problems", "toy",
           "--eval-problems", "toy", "--n-train-problems", "16", "--n-eval-problems", "4", "--steps", "4",
           "--batch-pairs", "4", "--lam", "1.0", "--trainable", "mlp_last_k", "--last-k", "1", "--eval-every", "2",
           "--checkpoint-every", "2", "--out-dir", str(run)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["replicas_agree"] is True and summary["state"] == "finished"
    assert [r["step"] for r in read_metrics(run)] == [0, 1, 2, 3, 4]
    assert latest_checkpoint(run).name == "step-000004"


def test_runs_from_the_same_base_share_reference_prefix_and_first_eval(setup):
    """The experiment's arms reuse the frozen work (reference log-probs, prefix, step-0 eval), and reusing
    it changes nothing: a cold and a warm trainer give the same numbers."""
    from yfpo_core.training import shared_cache

    _, tmp = setup
    shared_cache.clear_shared()
    cold = trainer_for(config(tmp, lam=0.0, trainable="mlp_last_k", last_k=1))
    cold_eval = cold.evaluate()
    warm = trainer_for(config(tmp, lam=1.0, trainable="mlp_last_k", last_k=1))
    assert warm.ref_logps is cold.ref_logps and warm.prefix_for(0)[0] is cold.prefix_for(0)[0]
    assert warm.evaluate() == cold_eval
    shared_cache.clear_shared()
    fresh = trainer_for(config(tmp, lam=1.0, trainable="mlp_last_k", last_k=1))
    assert all(torch.equal(a, b) for a, b in zip(fresh.ref_logps, warm.ref_logps, strict=True))
    assert fresh.evaluate() == cold_eval
    # After a step the policy differs from the base: its evaluation is computed, not reused.
    warm.train_step(1)
    assert warm.evaluate()["eval/gold_logprob"] != cold_eval["eval/gold_logprob"]
    # Another seed makes other pairs: the reference is not shared, nor the probe's readout (its statistics
    # and signs come from the pairs), but the held-out ranking of the base model is (same problems).
    other = trainer_for(config(tmp, lam=1.0, trainable="mlp_last_k", last_k=1, seed=5, eval_seed=fresh.config.seed + 1))
    assert other.ref_logps is not cold.ref_logps
    calls = []
    other.held_out.ranking = lambda: calls.append("ranking")  # would be called on a cache miss
    other_eval = other.evaluate()
    assert calls == []
    ranking = ("eval/ranking_accuracy", "eval/gold_logprob", "eval/mean_margin")
    assert {k: other_eval[k] for k in ranking} == {k: cold_eval[k] for k in ranking}
    assert other.held_out.last["ranking"] == cold.held_out.last["ranking"]
    assert other_eval["eval/neuron_margin"] != cold_eval["eval/neuron_margin"]


# -- SAE features as units -------------------------------------------------------------------------------------
SAE_HOOK = "blocks.1.mlp.hook_post"


def feature(index: int) -> Unit:
    return Unit("sae_feature", SAE_HOOK, index, sae_id="tiny-sae")


def save_feature_set(model, tmp: Path, units, name: str = "features.json", sae_path: str | None = None) -> str:
    folder = tmp / "tiny-sae"
    if not folder.exists():
        save_tiny_sae(folder)
    entry = {"hook_name": SAE_HOOK, "d_sae": 16, "path_or_release": sae_path if sae_path is not None else str(folder)}
    NeuronSet.create(list(units), model, scores=[1.0] * len(units), sae={"tiny-sae": entry}).save(tmp / name)
    return str(tmp / name)


@pytest.mark.parametrize("last_k", [1, 2])
def test_feature_units_read_the_saes_encoding_of_their_hook(setup, last_k):
    """Neurons and features (also at the same hook) are read in the layout's column order, features as
    sae.encode(hook activation)[..., i], whether their layer is in the frozen prefix or in the policy pass."""
    model, tmp = setup
    units = [Unit.neuron(1, 3), feature(2), Unit.neuron(0, 1), feature(7), Unit.neuron(1, 5)]
    path = save_feature_set(model, tmp, units)
    trainer = trainer_for(config(tmp, neuron_set=path, trainable="mlp_last_k", last_k=last_k))
    assert trainer.start_layer == 2 - last_k
    assert [u.label for u in trainer.layout.units] == [
        "blocks.0.mlp.hook_post:1", "blocks.1.mlp.hook_post:3", "blocks.1.mlp.hook_post:5", "sae:tiny-sae:2",
        "sae:tiny-sae:7"]
    _, acts = trainer.policy_pass(0)
    sae = resolve_inputs(config(tmp, neuron_set=path)).saes["tiny-sae"].sae
    with torch.no_grad():
        _, cache = model.model.run_with_cache(trainer.batches[0].tokens)
        encoded = sae.encode(cache[SAE_HOOK])
    expected = torch.stack([cache["blocks.0.mlp.hook_post"][..., 1], cache[SAE_HOOK][..., 3],
                            cache[SAE_HOOK][..., 5], encoded[..., 2], encoded[..., 7]], dim=-1)
    assert encoded[..., [2, 7]].abs().sum() > 0  # the features fire: the comparison means something
    torch.testing.assert_close(acts, expected, rtol=1e-5, atol=1e-5)
    # the model's forward is unchanged: the SAE only reads its hook
    logps, _ = trainer.policy_pass(0)
    torch.testing.assert_close(logps, trainer.ref_logps[0])


def test_feature_term_gradient_reaches_the_model_and_not_the_sae(setup):
    model, tmp = setup
    path = save_feature_set(model, tmp, [feature(i) for i in range(5)])
    grads = {}
    for lam in (0.0, 5.0):
        inputs = resolve_inputs(config(tmp, neuron_set=path, lam=lam, batch_pairs=8, trainable="mlp_last_k",
                                       last_k=1))
        cfg = config(tmp, neuron_set=path, lam=lam, batch_pairs=8, trainable="mlp_last_k", last_k=1)
        trainer = YFPOTrainer(cfg, inputs.base, inputs.pairs, inputs.eval_problems, inputs.units, inputs.scores,
                              saes=inputs.saes)
        out = trainer.compute_loss(0)
        out.loss.backward()
        grads[lam] = trainer.model.blocks[1].mlp.W_in.grad.clone()
        for sae in (trainer.saes["tiny-sae"], inputs.saes["tiny-sae"].sae):
            assert all(p.grad is None for p in sae.parameters())
        assert not any(p.requires_grad for p in trainer.saes["tiny-sae"].parameters())
        if lam:
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.compute_loss(0).losses["aux"].backward()  # the feature term alone
            assert trainer.model.blocks[1].mlp.W_in.grad.abs().sum() > 0
            assert all(p.grad is None for p in trainer.saes["tiny-sae"].parameters())
    assert grads[5.0].abs().sum() > 0 and not torch.allclose(grads[0.0], grads[5.0])
    assert model.model.blocks[1].mlp.W_in.grad is None


@pytest.mark.parametrize("trainable", ["mlp_last_k", "all"])
def test_short_run_raises_the_features_margin(setup, trainable):
    model, tmp = setup
    path = save_feature_set(model, tmp, [feature(i) for i in range(5)])
    margins = {}
    for lam in (0.0, 5.0):
        trainer = trainer_for(config(tmp, neuron_set=path, lam=lam, batch_pairs=8, steps=30, trainable=trainable,
                                     last_k=1, lr=1e-2 if trainable == "mlp_last_k" else 3e-3))
        before = trainer.unit_margin_on_pairs()
        losses = [trainer.train_step(step)["loss"] for step in range(1, 31)]
        margins[lam] = trainer.unit_margin_on_pairs() - before
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert margins[5.0] > margins[0.0] + 0.5, margins  # about 1.9 vs 0.08 (mlp_last_k), 7.2 vs 0.15 (all)


def test_random_control_draws_features_of_the_same_sae(setup):
    model, tmp = setup
    units = [feature(i) for i in range(5)] + [Unit.neuron(1, 3), Unit.neuron(0, 2)]
    path = save_feature_set(model, tmp, units)
    drawn = {}
    for seed in (0, 1):
        inputs = resolve_inputs(config(tmp, neuron_set=path, random_units_seed=seed, trainable="mlp_last_k", last_k=2))
        features = [u for u in inputs.units if u.kind == "sae_feature"]
        neurons = [u for u in inputs.units if u.kind == "neuron"]
        assert len(features) == 5 and all(u.sae_id == "tiny-sae" and u.hook_name == SAE_HOOK for u in features)
        assert all(5 <= u.index < 16 for u in features)  # none of the set's features, inside d_sae
        assert sorted(u.layer for u in neurons) == [0, 1] and not {u.index for u in neurons if u.layer == 1} & {3}
        assert inputs.scores is None and set(inputs.saes) == {"tiny-sae"}
        drawn[seed] = inputs.units
        trainer = YFPOTrainer(config(tmp, neuron_set=path, trainable="mlp_last_k", last_k=2), inputs.base, inputs.pairs,
                              inputs.eval_problems, inputs.units, inputs.scores, saes=inputs.saes)
        assert trainer.unit_mean.shape == (7,)
    assert drawn[0] != drawn[1]
    # a set of neurons draws exactly what it drew before features were supported
    from yfpo_core.analysis.interventions import random_unit_sets

    neurons = [Unit.neuron(1, i) for i in range(5)]
    inputs = resolve_inputs(config(tmp, random_units_seed=4))
    assert inputs.units == random_unit_sets(neurons, {"blocks.1.mlp.hook_post": 64}, 1, seed=4, exclude=neurons)[0]


def test_feature_sets_give_clear_errors(setup):
    from yfpo_core.errors import YfpoError

    model, tmp = setup
    path = save_feature_set(model, tmp, [feature(2), Unit.neuron(1, 3)])
    with pytest.raises(YfpoError, match="trainable=units trains only the selected neurons' own weights.*mlp_last_k"):
        trainer_for(config(tmp, neuron_set=path, trainable="units"))
    inputs = resolve_inputs(config(tmp, neuron_set=path, trainable="mlp_last_k", last_k=2))
    with pytest.raises(YfpoError, match="SAE 'tiny-sae', which the trainer was not given"):
        YFPOTrainer(config(tmp, neuron_set=path, trainable="mlp_last_k", last_k=2), inputs.base, inputs.pairs,
                    inputs.eval_problems, inputs.units, inputs.scores)
    missing = save_feature_set(model, tmp, [feature(2)], name="missing.json", sae_path=str(tmp / "no-such-sae"))
    with pytest.raises(YfpoError, match="cannot load SAE 'tiny-sae'"):
        resolve_inputs(config(tmp, neuron_set=missing, trainable="mlp_last_k", last_k=2))
    empty = save_feature_set(model, tmp, [feature(2)], name="empty.json", sae_path="")
    with pytest.raises(YfpoError, match="no path_or_release"):
        resolve_inputs(config(tmp, neuron_set=empty, trainable="mlp_last_k", last_k=2))


def test_units_below_the_trainable_blocks_warn(setup):
    model, tmp = setup
    NeuronSet.create([Unit.neuron(0, i) for i in range(3)], model).save(tmp / "low.json")
    with pytest.warns(UserWarning, match="below layer 1"):
        trainer_for(config(tmp, neuron_set=str(tmp / "low.json"), trainable="mlp_last_k", last_k=1))


def test_neurons_and_features_with_the_same_hook_and_indices_share_no_cache(setup):
    from yfpo_core.training import shared_cache

    model, tmp = setup  # the setup set: neurons 0..4 of blocks.1.mlp.hook_post
    path = save_feature_set(model, tmp, [feature(i) for i in range(5)])
    shared_cache.clear_shared()
    neurons = trainer_for(config(tmp, trainable="mlp_last_k", last_k=1))
    features = trainer_for(config(tmp, neuron_set=path, trainable="mlp_last_k", last_k=1))
    assert not torch.allclose(neurons.unit_mean, features.unit_mean)
    _, cache = model.model.run_with_cache(features.batches[0].tokens)
    sae = features.saes["tiny-sae"]
    mask = features.batches[0].response_mask.bool()
    torch.testing.assert_close(features.policy_pass(0)[1][mask], sae.encode(cache[SAE_HOOK])[..., :5][mask])
