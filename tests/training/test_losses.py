"""The YFPO objective: DPO by hand and against TRL, the neuron term's variants, pooling."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from yfpo_core.training.losses import activation_score, dpo_loss, yfpo_loss

T = torch.tensor


def test_dpo_by_hand():
    # beta 0.1, policy log-probs (chosen -1, rejected -2), reference (-1.5, -1.5):
    # log-ratios +0.5 and -0.5, h = 1.0, beta*h = 0.1, loss = ln(1 + e^-0.1) = 0.644397
    losses, logits, chosen_r, rejected_r = dpo_loss(T([-1.0]), T([-2.0]), T([-1.5]), T([-1.5]), beta=0.1)
    assert math.isclose(losses.item(), math.log(1 + math.exp(-0.1)), rel_tol=1e-6)
    assert math.isclose(logits.item(), 0.1, rel_tol=1e-6)
    assert math.isclose(chosen_r.item(), 0.05, rel_tol=1e-6) and math.isclose(rejected_r.item(), -0.05, rel_tol=1e-6)
    # equal log-probs everywhere: ln 2
    losses, *_ = dpo_loss(T([-3.0]), T([-3.0]), T([-3.0]), T([-3.0]))
    assert math.isclose(losses.item(), math.log(2), rel_tol=1e-6)


def test_lambda_zero_is_exactly_dpo():
    logits = T([0.3, -1.2, 2.0])
    margin = T([1.0, -2.0, 0.5], requires_grad=True)
    for variant in "ACD":
        total, aux = yfpo_loss(logits, margin, lam=0.0, variant=variant, fixed_margin=margin.detach())
        assert torch.equal(total, -torch.nn.functional.logsigmoid(logits)) and torch.equal(aux, torch.zeros(3))


def test_variants_by_hand():
    logits, margin = T([0.1]), T([2.0])
    # A: L_DPO - lam * log sigmoid(gamma * m): 0.644397 + 0.5 * 0.126928
    total, aux = yfpo_loss(logits, margin, lam=0.5, gamma=1.0, variant="A")
    assert math.isclose(aux.item(), 0.5 * 0.126928, rel_tol=1e-5)
    assert math.isclose(total.item(), 0.644397 + 0.063464, rel_tol=1e-5)
    # C: -log sigmoid(beta h + lam m) = -log sigmoid(1.1) = 0.287335
    total, _ = yfpo_loss(logits, margin, lam=0.5, variant="C")
    assert math.isclose(total.item(), 0.287335, rel_tol=1e-5)
    # D: -log sigmoid(beta h - lam m0) with m0 = 2: -log sigmoid(-0.9) = 1.241154
    total, _ = yfpo_loss(logits, None, lam=0.5, variant="D", fixed_margin=T([2.0]))
    assert math.isclose(total.item(), 1.241154, rel_tol=1e-5)


def test_activation_score_pooling_by_hand():
    acts = T([[[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [100.0, 100.0]]])  # [1, 4 positions, 2 units]
    mask = T([[0, 1, 1, 0]])  # response = positions 1 and 2
    assert activation_score(acts, mask, "mean").item() == pytest.approx(((3 + 5) / 2 + (20 + 30) / 2) / 2)
    assert activation_score(acts, mask, "max").item() == pytest.approx((5 + 30) / 2)
    assert activation_score(acts, mask, "last").item() == pytest.approx((5 + 30) / 2)
    standardised = activation_score(acts, mask, "mean", mean=T([4.0, 25.0]), std=T([1.0, 5.0]))
    assert standardised.item() == pytest.approx(0.0)
    signed = activation_score(acts, mask, "mean", signs=T([1.0, -1.0]))
    assert signed.item() == pytest.approx((4 - 25) / 2)


def test_neuron_term_gradient_in_float64():
    def loss(margin):
        return yfpo_loss(T([0.2, -0.4], dtype=torch.float64), margin, lam=0.3, gamma=2.0, variant="A")[0].sum()

    assert torch.autograd.gradcheck(loss, (torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True),))

    def score(acts):
        return activation_score(acts, torch.tensor([[1, 1, 0]]), "mean")

    assert torch.autograd.gradcheck(score, (torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True),))


def test_dpo_matches_trl(tmp_path):
    """TRL's DPOTrainer computes the loss and its rewards from per-token log-probs; give it the same
    sequence log-probs we give ours (through a stub model) and compare to 1e-6."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from yfpo_core.models.toy import toy_tokenizer

    tokenizer = toy_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer),
                                         pad_token_id=tokenizer.pad_token_id))
    data = Dataset.from_dict({"prompt": ["Q: a\nA: "] * 2, "chosen": ["1\n"] * 2, "rejected": ["2\n"] * 2})
    args = DPOConfig(output_dir=str(tmp_path), beta=0.1, report_to=[], per_device_train_batch_size=2,
                     activation_checkpointing=False, bf16=False, use_cpu=True, precompute_ref_log_probs=False)
    trainer = DPOTrainer(model=model, ref_model=LlamaForCausalLM(model.config), args=args, train_dataset=data,
                         processing_class=tokenizer)
    trainer.precompute_ref_logps = True  # take the reference log-probs from the batch, as below

    torch.manual_seed(0)
    b, t = 3, 6
    policy = torch.randn(2 * b) * 3 - 10
    ref = torch.randn(2 * b) * 3 - 10
    per_token = torch.zeros(2 * b, t - 1)
    per_token[:, 2] = policy  # all of a sequence's log-prob on one completion position
    completion = torch.zeros(2 * b, t, dtype=torch.long)
    completion[:, 3] = 1
    stub = SimpleNamespace(log_probs=per_token, entropy=torch.zeros(2 * b, t - 1),
                           mean_logits=torch.zeros(2 * b, t - 1), is_top1=torch.zeros(2 * b, t - 1, dtype=torch.bool))
    inputs = {"input_ids": torch.ones(2 * b, t, dtype=torch.long), "attention_mask": torch.ones(2 * b, t),
              "completion_mask": completion, "ref_chosen_logps": ref[:b], "ref_rejected_logps": ref[b:]}
    trl_loss = trainer.compute_loss(lambda **kw: stub, inputs)
    trainer.log({})  # TRL's public way out for the metrics of that call (averaged over one call: its values)
    trl_metrics = trainer.state.log_history[-1]
    if not trainer.model.training:
        trl_metrics = {k.removeprefix("eval_"): v for k, v in trl_metrics.items()}

    losses, _, chosen_r, rejected_r = dpo_loss(policy[:b], policy[b:], ref[:b], ref[b:], beta=0.1)
    assert abs(trl_loss.item() - losses.mean().item()) < 1e-6
    assert abs(trl_metrics["rewards/chosen"] - chosen_r.mean().item()) < 1e-6
    assert abs(trl_metrics["rewards/rejected"] - rejected_r.mean().item()) < 1e-6
    assert abs(trl_metrics["rewards/margins"] - (chosen_r - rejected_r).mean().item()) < 1e-6
    assert abs(trl_metrics["rewards/accuracies"] - (chosen_r > rejected_r).float().mean().item()) < 1e-6
