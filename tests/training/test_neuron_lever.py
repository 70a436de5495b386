"""The neuron term as a lever, in the trainer: the gradient-share metrics against autograd, target-share mode,
the held-out probe and the set's stored signs (toy-architecture tiny model). The readout itself is tested by
hand in test_readout.py."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import trainer_config as config, trainer_for
from yfpo_core.training import metric_names as M


def _manual_grads(trainer, i):
    params = [p for _, p, _ in trainer.params]
    out = trainer.compute_loss(i)
    g_dpo = torch.autograd.grad(out.losses["dpo"], params, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(out.losses["aux"], params, allow_unused=True)
    flat = lambda gs: torch.cat([(torch.zeros_like(p) if g is None else g).flatten()  # noqa: E731
                                 for p, g in zip(params, gs, strict=True)])
    return flat(g_dpo), flat(g_aux)


@pytest.mark.parametrize("trainable", ["mlp_last_k", "units"])
def test_gradient_share_metrics_match_autograd(setup, trainable):  # noqa: F811
    _, tmp = setup
    cfg = config(tmp, lam=3.0, trainable=trainable, last_k=1, grad_clip=1e6, batch_pairs=8)
    trainer = trainer_for(cfg)
    g_dpo, g_aux = _manual_grads(trainer, trainer.batch_index(1))
    if trainable == "units":  # the unit-scope mask applies to both parts
        masks = torch.cat([(torch.ones_like(p) if m is None else m).flatten() for _, p, m in trainer.params])
        g_dpo, g_aux = g_dpo * masks, g_aux * masks
    trainer.optimizer.zero_grad(set_to_none=True)
    metrics = trainer.train_step(1)
    assert metrics[M.GRAD_NORM_DPO] == pytest.approx(float(g_dpo.norm()), rel=1e-4)
    assert metrics[M.GRAD_NORM_AUX] == pytest.approx(float(g_aux.norm()), rel=1e-4)
    assert float(g_aux.norm()) > 0
    share = g_aux.norm() / (g_aux.norm() + g_dpo.norm())
    assert metrics[M.AUX_SHARE] == pytest.approx(float(share), rel=1e-4)
    cos = torch.dot(g_aux, g_dpo) / (g_aux.norm() * g_dpo.norm())
    assert metrics[M.GRAD_COS] == pytest.approx(float(cos), rel=1e-3, abs=1e-6)
    # the applied gradient is the sum of the two parts (grad_norm is measured before clipping)
    assert metrics[M.GRAD_NORM] == pytest.approx(float((g_dpo + g_aux).norm()), rel=1e-4)


def test_neuron_part_of_variant_a_has_its_own_graph(setup):  # noqa: F811
    """The neuron term's gradient starts at the units: it equals ``loss - dpo`` in value but its graph does
    not reach the policy's log-probs, so its backward never crosses the log-softmax or the unembedding."""
    _, tmp = setup
    trainer = trainer_for(config(tmp, lam=2.0, trainable="mlp_last_k", last_k=1))
    i = trainer.batch_index(1)
    captured = {}
    original = trainer.forward_module.forward

    def spy(*args, **kwargs):
        logps, acts = original(*args, **kwargs)
        captured["logps"] = logps
        return logps, acts

    trainer.forward_module.forward = spy
    out = trainer.compute_loss(i)
    assert float(out.losses["aux"]) == pytest.approx(float(out.loss - out.losses["dpo"]), rel=1e-6)
    assert torch.autograd.grad(out.losses["aux"], captured["logps"], allow_unused=True)[0] is None
    assert torch.autograd.grad(out.losses["dpo"], captured["logps"], allow_unused=True)[0] is not None


def test_gradient_share_is_measured_on_its_schedule(setup):  # noqa: F811
    """Step 1, every grad_share_every-th step and the last step carry the metrics; the others train with one
    combined backward and log none of them."""
    _, tmp = setup
    trainer = trainer_for(config(tmp, lam=1.0, steps=7, grad_share_every=3))
    measured = [step for step in range(1, 8) if M.AUX_SHARE in trainer.train_step(step)]
    assert measured == [1, 3, 6, 7]
    every = trainer_for(config(tmp, lam=1.0, steps=3, grad_share_every=1))
    assert all(M.GRAD_NORM_AUX in every.train_step(step) for step in (1, 2, 3))
    off = trainer_for(config(tmp, lam=1.0, steps=3, grad_share=False))
    assert not any(M.AUX_SHARE in off.train_step(step) for step in (1, 2, 3))


def test_dpo_runs_report_no_neuron_share(setup):  # noqa: F811
    _, tmp = setup
    trainer = trainer_for(config(tmp, lam=0.0))
    metrics = trainer.train_step(1)
    assert metrics[M.AUX_SHARE] == 0.0 and metrics[M.GRAD_NORM_AUX] == 0.0
    assert metrics[M.GRAD_NORM_DPO] == pytest.approx(metrics[M.GRAD_NORM], rel=1e-5)


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_target_share_sets_lambda_so_the_term_supplies_that_share(setup, share):  # noqa: F811
    _, tmp = setup
    trainer = trainer_for(config(tmp, lam=0.0, target_share=share, grad_clip=1e6, batch_pairs=8))
    metrics = trainer.train_step(1)
    assert metrics[M.AUX_SHARE] == pytest.approx(share, rel=1e-4)
    assert metrics[M.LAM] > 0


def test_probe_margin_is_measured_on_the_users_set_in_every_arm(setup):  # noqa: F811
    """A random-control run and a DPO run report eval/neuron_margin on the same (the user's) units, which
    equals the base model's value at step 0."""
    _, tmp = setup
    values = {}
    for name, overrides in {"dpo": dict(lam=0.0), "random": dict(random_units_seed=3), "set": {}}.items():
        cfg = config(tmp, trainable="mlp_last_k", last_k=1, **overrides)
        from yfpo_core.runs import resolve_inputs
        from yfpo_core.training.trainer import YFPOTrainer

        inputs = resolve_inputs(cfg)
        trainer = YFPOTrainer(cfg, inputs.base, inputs.pairs, inputs.eval_problems, inputs.units, inputs.scores,
                              probe_units=inputs.probe_units, probe_scores=inputs.probe_scores)
        assert [u.label for u in trainer.probe_layout.units] == [f"blocks.1.mlp.hook_post:{i}" for i in range(5)]
        values[name] = trainer.evaluate()[M.EVAL_NEURON_MARGIN]
    assert values["dpo"] == pytest.approx(values["random"]) == pytest.approx(values["set"])


def test_sign_set_reads_the_sets_directions_and_falls_back_with_a_warning(setup):  # noqa: F811
    import warnings

    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.units.unit import Unit

    model, tmp = setup
    units = [Unit.neuron(1, i) for i in range(5)]
    directions = [1, -1, -1, 1, -1]
    path = NeuronSet.create(units, model, scores=[1.0] * 5).save(tmp / "plain.json")
    data = __import__("json").loads(path.read_text())
    for entry, d in zip(data["units"], directions, strict=True):
        entry["direction"] = d
    (tmp / "directed.json").write_text(__import__("json").dumps(data))
    assert [su.direction for su in NeuronSet.load(str(tmp / "directed.json"), model).units] == directions

    trainer = trainer_for(config(tmp, neuron_set=str(tmp / "directed.json"), sign="set"))
    assert trainer.readout.signs.tolist() == [float(d) for d in directions]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = trainer_for(config(tmp, neuron_set=str(tmp / "plain.json"), sign="set"))
    assert any("stores no direction" in str(w.message) for w in caught)
    pairs = trainer_for(config(tmp, neuron_set=str(tmp / "plain.json"), sign="pairs"))
    assert fallback.readout.signs.tolist() == pairs.readout.signs.tolist()
    assert set(pairs.readout.signs.tolist()) <= {1.0, -1.0}
    # the signs are the gradient signs the run records
    assert pairs.readout.signs.tolist() == [-1.0 if g < 0 else 1.0 for g in pairs.direction_gradient.tolist()]
    bad = dict(data, units=[dict(data["units"][0], direction=2)] + data["units"][1:])
    (tmp / "bad.json").write_text(__import__("json").dumps(bad))
    from yfpo_core.errors import YfpoError

    with pytest.raises(YfpoError):
        NeuronSet.load(str(tmp / "bad.json"), model)
