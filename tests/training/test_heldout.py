"""Held-out metrics of a policy with frozen lower blocks (yfpo_core.training.heldout): the same numbers as a
full evaluation of the policy, before and after training, and the probe margin on held-out pairs."""

from __future__ import annotations

import pytest

from tests.helpers import trainer_config as config, trainer_for
from yfpo_core.scoring.evaluate import answer_ranking
from yfpo_core.training import metric_names as M


@pytest.mark.parametrize("trainable, last_k", [("mlp_last_k", 1), ("all", 1)])  # start layer 1, and from tokens
def test_ranking_from_frozen_states_equals_the_full_evaluation(setup, trainable, last_k):
    _, tmp = setup
    trainer = trainer_for(config(tmp, lam=0.0, trainable=trainable, last_k=last_k, lr=1e-2))
    for step in (None, 1, 2):  # before training, then after each step: the policy changes
        if step is not None:
            trainer.train_step(step)
        full = answer_ranking(trainer.policy, trainer.eval_problems).summary()
        held = trainer.held_out.ranking()
        assert held[M.EVAL_RANKING_ACCURACY] == full["ranking_accuracy"]
        assert held[M.EVAL_GOLD_LOGPROB] == pytest.approx(full["gold_logprob"], abs=1e-5)
        assert held[M.EVAL_MEAN_MARGIN] == pytest.approx(full["mean_margin"], abs=1e-5)
    assert [row["id"] for row in trainer.held_out.last["ranking"]] == [p.id for p in trainer.eval_problems]


def test_probe_margin_is_the_readout_on_held_out_pairs(setup):
    """The probe margin: the training readout (pooling, statistics, signs) on pairs made from the held-out
    problems, gold against a wrong final answer."""
    import torch

    from yfpo_core.training.batching import make_batches
    from yfpo_core.training.config import sequence_length
    from yfpo_core.training.pairs import corrupted_pairs

    _, tmp = setup
    trainer = trainer_for(config(tmp, trainable="mlp_last_k", last_k=1))
    margin = trainer.held_out.probe_margin()
    pairs = corrupted_pairs(trainer.eval_problems, trainer.policy.prompt_format, mode="final", seed=0)
    length = sequence_length(trainer.config.max_length, trainer.model.cfg.n_ctx)
    batches = make_batches(trainer.policy, pairs, 8, length)
    with torch.no_grad():
        expected = torch.cat([trainer.probe_readout.margin(trainer.unit_activations(b, trainer.probe_layout), b)
                              for b in batches])
    rows = trainer.held_out.last["neuron_margin"]
    assert [r["id"] for r in rows] == [p.id for p in pairs] and len(rows) == len(trainer.eval_problems)
    assert [r["neuron_margin"] for r in rows] == pytest.approx(expected.tolist(), abs=1e-6)
    assert margin == pytest.approx(float(expected.mean()), abs=1e-6)
    assert trainer.held_out.metrics()[M.EVAL_NEURON_MARGIN] == pytest.approx(margin)
