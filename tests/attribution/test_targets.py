"""What an attribution explains (yfpo_core.attribution.targets): positions and tokens on a character-level
toy model, and each target's value by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from tests.helpers import tiny_toy
from yfpo_core.attribution.targets import ProblemTooLongError, prepare_problem, target_from_rows, target_value
from yfpo_core.problems.base import Problem

PROBLEM = Problem("hand/0", "Ann has 4 pens and buys 5. How many?", "4+5=9. #### 9", "9", "test")


@pytest.fixture(scope="module")
def model():
    return tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=128)  # one token per character


def test_answer_logprob_reads_the_answer_where_the_reasoning_states_it(model):
    prepared = prepare_problem(model, PROBLEM, "answer_logprob")
    assert model.decode(list(prepared.target_tokens)) == "9"  # the "9" of "4+5=9", given "4+5="
    assert model.decode(list(prepared.tokens[: prepared.positions[0] + 1])).endswith("A: 4+5=")
    for position, token in zip(prepared.positions, prepared.target_tokens, strict=True):
        assert prepared.tokens[position + 1] == token  # position t predicts token t + 1
    assert prepared.contrast_tokens == () and prepared.tokens == prepared.gold_tokens


def test_solution_logprob_reads_the_whole_response(model):
    prepared = prepare_problem(model, PROBLEM, "solution_logprob")
    response = model.decode(list(prepared.tokens[prepared.response_start:]))
    assert response == "4+5=9. #### 9\n" and model.decode(list(prepared.target_tokens)) == response
    assert prepared.positions == tuple(range(prepared.response_start - 1, len(prepared.tokens) - 1))


def test_logit_diff_reads_the_first_token_where_gold_and_wrong_differ(model):
    prepared = prepare_problem(model, PROBLEM, "logit_diff")
    (position,) = prepared.positions
    assert (model.decode(list(prepared.target_tokens)), model.decode(list(prepared.contrast_tokens))) == ("9", "1")
    assert prepared.gold_tokens[: position + 1] == prepared.wrong_tokens[: position + 1]  # gold 9, wrong 10


def test_each_target_by_hand():
    model = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=128)
    prepared, vocab = prepare_problem(model, PROBLEM, "logit_diff"), model.model.cfg.d_vocab
    rows = torch.zeros(1, vocab)
    rows[0, prepared.target_tokens[0]], rows[0, prepared.contrast_tokens[0]] = 2.0, 0.5
    assert target_from_rows(rows, prepared).item() == pytest.approx(1.5)
    logits = torch.zeros(len(prepared.tokens), vocab)
    logits[prepared.positions[0]] = rows[0]
    assert target_value(logits, prepared).item() == pytest.approx(1.5)  # the same row, picked by position
    logprob = replace(prepared, contrast_tokens=())
    uniform = torch.zeros(2, vocab)
    two = replace(logprob, target_tokens=(3, 5), positions=(0, 1))
    assert target_from_rows(uniform, two).item() == pytest.approx(2 * -math.log(vocab))  # log 1/vocab, twice


def test_unknown_targets_and_problems_too_long(model):
    with pytest.raises(ValueError, match="unknown target 'loss'; choose one of answer_logprob"):
        prepare_problem(model, PROBLEM, "loss")
    short = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=32)
    # <bos> + "Q: " + 36 characters + "\nA: " + "4+5=" is the 48-token context; the wrong answer's "10. #### 10\n"
    # (12) makes the longest sequence: 60 tokens
    with pytest.raises(ProblemTooLongError, match="problem hand/0 needs 60 tokens but toy-arith reads at most 32"):
        prepare_problem(short, PROBLEM, "answer_logprob")
