"""The KV-cache continuation scorer must equal the plain full-sequence computation."""

import pytest
import torch

from tests.helpers import tiny_hooked
from yfpo_core.scoring.logprobs import continuation_logprobs, continuation_logprobs_naive, right_pad, token_logprobs


def test_token_logprobs_equals_log_softmax_gather():
    logits = torch.randn(2, 5, 11, dtype=torch.float64)
    targets = torch.randint(0, 11, (2, 5))
    expected = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(token_logprobs(logits, targets), expected.float())


def test_right_pad_mask():
    ids, mask = right_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_kv_cache_scoring_matches_naive(tiny_model):
    context = [3, 5, 7, 9, 11, 2]
    continuations = [[4], [4, 6, 8], [10, 1], [12, 13, 14, 15]]  # different lengths: padding is exercised
    with torch.no_grad():
        fast = continuation_logprobs(tiny_model, context, continuations)
        slow = continuation_logprobs_naive(tiny_model, context, continuations)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_naive_scoring_is_the_sum_of_next_token_logprobs():
    model = tiny_hooked("gpt2")
    context, continuation = [1, 2, 3], [4, 5]
    with torch.no_grad():
        logits = model(torch.tensor([context + continuation]))
        logp = torch.log_softmax(logits[0], -1)
        expected = logp[2, 4] + logp[3, 5]  # position t predicts token t+1
        got = continuation_logprobs_naive(model, context, [continuation])
    torch.testing.assert_close(got[0], expected)


def test_forward_hooks_apply_to_context_and_continuations():
    model = tiny_hooked("llama")
    context, continuations = [1, 2, 3, 4], [[5, 6], [7]]

    def zero_mlp(act, hook):
        return torch.zeros_like(act)

    with torch.no_grad():
        clean = continuation_logprobs(model, context, continuations)
        with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", zero_mlp)]):
            fast = continuation_logprobs(model, context, continuations)
            slow = continuation_logprobs_naive(model, context, continuations)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, clean)
    assert not model.hook_dict["blocks.0.mlp.hook_post"].fwd_hooks  # hooks removed after the block


@pytest.mark.parametrize("layer", [1, 2])
def test_continuation_logprobs_from_states_equal_the_full_pass(tiny_model, layer):
    """Starting at a layer from cached lower-block states gives the same scores as the whole model, also after
    the upper blocks change (what the trainer's held-out evaluation relies on)."""
    from yfpo_core.scoring.logprobs import continuation_logprobs_from_states, continuation_states

    context = [1, 5, 7, 9, 3, 2]
    continuations = [[4, 6, 8], [4, 11], [12, 6, 8, 2, 30]]
    states = continuation_states(tiny_model, context, continuations, layer)
    expected = continuation_logprobs(tiny_model, context, continuations)
    got = continuation_logprobs_from_states(tiny_model, states)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # train-like change of the upper block: states from the old lower blocks still hold
        for p in tiny_model.blocks[-1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    if layer < tiny_model.cfg.n_layers:
        torch.testing.assert_close(continuation_logprobs_from_states(tiny_model, states),
                                   continuation_logprobs(tiny_model, context, continuations), rtol=1e-5, atol=1e-5)


def test_scoring_applies_the_models_logit_soft_cap():
    """A Gemma-2-style soft cap squashes every logit; the scorer must see what the model's own forward sees."""
    model = tiny_hooked("llama", output_logits_soft_cap=0.5)
    context, continuations = [1, 2, 3, 4], [[5, 6, 7], [8]]
    with torch.no_grad():
        fast = continuation_logprobs(model, context, continuations)
        slow = continuation_logprobs_naive(model, context, continuations)
        model.cfg.output_logits_soft_cap = -1.0  # the same weights without the cap score differently
        uncapped = continuation_logprobs(model, context, continuations)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, uncapped, atol=1e-3)


@pytest.mark.parametrize("continuations", [[[4], [9], [2]], [[4, 6], [9]]])
def test_states_of_one_token_continuations_score_like_the_full_pass(tiny_model, continuations):
    """The last token of a continuation is never run (it predicts nothing scored): one-token continuations
    keep no states at all, and still score."""
    from yfpo_core.scoring.logprobs import continuation_logprobs_from_states, continuation_states, every_layer_states

    context = [1, 5, 7, 9]
    states = continuation_states(tiny_model, context, continuations, 1)
    assert states.continuations.shape[1] == max(len(c) for c in continuations) - 1
    expected = continuation_logprobs_naive(tiny_model, context, continuations)
    torch.testing.assert_close(continuation_logprobs_from_states(tiny_model, states), expected, rtol=1e-5, atol=1e-5)
    for layer_states in every_layer_states(tiny_model, context, continuations):
        torch.testing.assert_close(continuation_logprobs_from_states(tiny_model, layer_states), expected,
                                   rtol=1e-5, atol=1e-5)
