import pytest

from yfpo_core.scoring.generation import find_stop


@pytest.mark.parametrize("text, end, expected", [
    ("12+7=19. #### 19\n", "\n", (16, "end_of_response")),
    ("Step one.\nSo 3.\n#### 3\nThe answer", "<|im_end|>", (22, "answer_line")),
    ("Step one.\n#### 3", "<|im_end|>", None),             # the answer line is not finished yet
    ("Almost<|im_end|>", "<|im_end|>", (6, "end_of_response")),
    ("#### \nmore", "<|im_end|>", None),                      # a #### line without a number does not stop
])
def test_find_stop(text, end, expected):
    assert find_stop(text, end) == expected
