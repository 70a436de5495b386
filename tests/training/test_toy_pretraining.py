"""Pre-training the toy model (yfpo_core.training.toy_pretraining): masks, drills and example rows, a short
deterministic run, the held-out eval seed."""

from __future__ import annotations

import re

import pytest
import torch

from yfpo_core.models.base import weights_fingerprint
from yfpo_core.models.toy import toy_tokenizer
from yfpo_core.problems.synthetic import TOY_ALPHABET, generate_toy_problems
from yfpo_core.training.toy_pretraining import (
    ToyTrainConfig,
    drill_text,
    encode_batch,
    example_stream,
    response_mask,
    train_toy_model,
)

TINY = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_mlp": 64, "n_ctx": 192}


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


def test_encode_batch_masks(tokenizer):
    texts = ["Q: x\nA: 12\n", "Q: a longer one\nA: b\n"]
    ids, mask = encode_batch(texts, tokenizer, loss_on="all")
    assert ids.shape == (2, len(texts[1]) + 2) and mask.shape == (2, ids.shape[1] - 1)
    assert ids[0, 0] == tokenizer.bos_token_id and ids[0, len(texts[0]) + 1] == tokenizer.eos_token_id
    assert ids[0, len(texts[0]) + 2:].eq(tokenizer.pad_token_id).all()
    assert mask[0].sum() == len(texts[0]) + 1 and mask[1].sum() == len(texts[1]) + 1
    _, response = encode_batch(texts, tokenizer, loss_on="response")
    assert response[0].sum() == len("12\n") + 1  # the answer, its newline and <eos>
    predicted = ids[0, 1:][response[0].bool()]
    assert tokenizer.decode(predicted.tolist()) == "12\n<eos>"


def test_drills_and_multi_example_rows(tokenizer):
    two_step = generate_toy_problems(4, seed=0)[3]
    a, b, c = two_step.meta["numbers"]
    op1, op2 = two_step.meta["ops"]
    assert drill_text(two_step) == f"Q: What is {a}{op1}{b}{op2}{c}?\nA: {two_step.solution}\n"
    row = "Q: What is 2+3?\nA: 2+3=5. #### 5\nQ: What is 4*2?\nA: 4*2=8. #### 8\n"
    keep = response_mask(row, "response")
    trained = "".join(ch for ch, k in zip(row, keep, strict=False) if k)
    assert trained == "2+3=5. #### 5\n4*2=8. #### 8\n" and keep[-1]  # both answers and the final <eos>
    assert all(response_mask(row, "all"))
    config = ToyTrainConfig()
    rows = [r for r, _ in zip(example_stream(config), range(600), strict=False)]
    assert rows == [r for r, _ in zip(example_stream(config), range(600), strict=False)]
    drills = sum(r.startswith("Q: What is") for r in rows) / len(rows)
    facts = sum(not re.search(r"\d", r) for r in rows) / len(rows)
    assert abs(drills - config.drill_fraction) < 0.07 and abs(facts - config.nonmath_fraction) < 0.07
    assert all(r.count("Q: What is") == config.drills_per_row for r in rows if r.startswith("Q: What is"))
    assert set("".join(rows)) <= set(TOY_ALPHABET)


def test_short_training_is_deterministic():
    config = ToyTrainConfig(steps=30, batch_size=4, warmup_steps=5, eval_problems=0, **TINY)
    first, second = train_toy_model(config), train_toy_model(config)
    assert first.history == second.history
    for (name, a), (_, b) in zip(first.model.named_parameters(), second.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert first.history[-1]["loss"] < first.history[0]["loss"]
    other = train_toy_model(ToyTrainConfig(steps=30, batch_size=4, warmup_steps=5, eval_problems=0, seed=1, **TINY))
    assert weights_fingerprint(other.model) != weights_fingerprint(first.model)


def test_config_rejects_eval_on_training_seed():
    with pytest.raises(ValueError, match="held out"):
        ToyTrainConfig(seed=3, eval_seed=3)
