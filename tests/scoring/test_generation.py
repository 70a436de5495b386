"""Generation (yfpo_core.scoring.generation): the stopping rule, the TransformerLens and Hugging Face paths give
the same greedy responses, batched or one at a time, and seeded sampling on the twin."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.models import load_model
from yfpo_core.scoring.generation import find_stop, generate_hf, generate_tl, greedy_generate, sample_responses


@pytest.mark.parametrize("text, end, expected", [
    ("12+7=19. #### 19\n", "\n", (16, "end_of_response")),
    ("Step one.\nSo 3.\n#### 3\nThe answer", "<|im_end|>", (22, "answer_line")),
    ("Step one.\n#### 3", "<|im_end|>", None),             # the answer line is not finished yet
    ("Almost<|im_end|>", "<|im_end|>", (6, "end_of_response")),
    ("#### \nmore", "<|im_end|>", None),                      # a #### line without a number does not stop
])
def test_find_stop(text, end, expected):
    assert find_stop(text, end) == expected


def test_generation_paths_agree(local_folders):
    loaded = load_model(str(local_folders / "llama"))
    prompt = loaded.encode_prompt("Q: How many?\nA: ")
    with torch.no_grad():
        tl = generate_tl(loaded, prompt, max_new_tokens=12)
        (hf,) = generate_hf(loaded, loaded.hf_twin(), [prompt], max_new_tokens=12)
    assert tl == hf
    # A batch with prompts of different lengths (left padding) gives the same as one at a time.
    prompts = ["Q: a\nA: ", "Q: a longer question here\nA: "]
    batched = greedy_generate(loaded, prompts, max_new_tokens=8, batch_size=2)
    single = [greedy_generate(loaded, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_hf_twin_sampling_is_seeded_and_cut():
    from transformers import GPT2Config, GPT2LMHeadModel

    from yfpo_core.models.base import LoadedModel
    from yfpo_core.models.prompts import PlainPromptFormat
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, toy_tokenizer

    tok = toy_tokenizer()
    twin = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok), n_positions=128,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))
    arch = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32}
    model = LoadedModel(name="twin-test", model=build_toy_model(toy_config_kwargs(arch)), tokenizer=tok,
                        prompt_format=PlainPromptFormat(), prepend_bos=True, source="test", fingerprint="-",
                        hf_twin_loader=lambda: twin)
    state = torch.random.get_rng_state()
    texts = sample_responses(model, "Q: How many?\nA: ", samples=3, temperature=0.8, max_new_tokens=16, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(texts) == 3 and all("\n" not in t for t in texts)
    assert sample_responses(model, "Q: How many?\nA: ", samples=3, temperature=0.8, max_new_tokens=16,
                            seed=5) == texts
    assert sample_responses(model, "Q: How many?\nA: ", samples=3, temperature=0.8, max_new_tokens=16,
                            seed=6) != texts
