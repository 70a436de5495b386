"""Generation (yfpo_core.scoring.generation): the stopping rule, and the TransformerLens and Hugging Face paths
give the same greedy responses, batched or one at a time."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.models import load_model
from yfpo_core.scoring.generation import find_stop, generate_hf, generate_tl, greedy_generate


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
