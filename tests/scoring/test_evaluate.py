from fractions import Fraction

from yfpo_core.scoring.evaluate import build_ranking_item, distractor_answers
from yfpo_core.problems.base import Problem
from yfpo_core.models.prompts import PlainPromptFormat

FMT = PlainPromptFormat()


def make(solution: str, answer: str) -> Problem:
    return Problem(id="t/1", question="How many?", solution=solution, answer=answer, source="test")


def test_distractors_are_near_and_wrong():
    assert distractor_answers(Fraction(72)) == [73, 71, 74, 82]
    # gold 0: gold-1 would be negative, so +3 replaces it
    assert distractor_answers(Fraction(0)) == [1, 3, 2, 10]
    assert Fraction(0) not in distractor_answers(Fraction(0))


def test_cut_at_first_statement_of_the_answer_and_replace_every_occurrence():
    item = build_ranking_item(make("48/2 = <<48/2=24>>24 in May.\n48+24 = <<48+24=72>>72 in all.\n#### 72", "72"), FMT)
    assert item.context == "Q: How many?\nA: 48/2 = 24 in May.\n48+24 ="
    assert item.continuations[0] == " 72 in all.\n#### 72\n"
    assert item.continuations[1] == " 73 in all.\n#### 73\n"
    assert item.answers[0] == 72 and len(item.continuations) == 5
    # every continuation shares the context and differs only in the answer
    assert len(set(item.continuations)) == 5


def test_answer_only_after_marker_cuts_at_the_marker():
    item = build_ranking_item(make("Add them up.\n#### 9", "9"), FMT)
    assert item.context.endswith("Add them up.\n####")
    assert item.continuations[0] == " 9\n"
    assert item.continuations[2] == " 8\n"


def test_decimals_and_thousands_keep_their_style():
    item = build_ranking_item(make("The total is $1,250.50.\n#### 1250.5", "1250.5"), FMT)
    assert item.context.endswith("The total is $")  # the currency sign stays in the shared context
    assert item.continuations[0] == "1,250.50.\n#### 1250.5\n"
    assert item.continuations[1] == "1,251.50.\n#### 1251.5\n"


def test_solution_without_marker_gets_one():
    item = build_ranking_item(make("It is 4 apples", "5"), FMT)
    assert item.continuations[0].endswith("#### 5\n")
    assert item.continuations[1].endswith("#### 6\n")


def test_streamed_exact_match_is_exact_match_shown_token_by_token(toy, toy_problems):
    """On the toy model (TransformerLens path in both): the same row as exact_match; the text handed out
    grows by one token at a time and ends with the generated text; progress counts tokens."""
    from yfpo_core.scoring.evaluate import exact_match, stream_exact_match

    problem = toy_problems[0]
    texts, calls = [], []
    row = stream_exact_match(toy, problem, max_new_tokens=12, on_text=texts.append,
                             progress=lambda done, total, message="": calls.append((done, total, message)))
    assert row == exact_match(toy, [problem], max_new_tokens=12).rows[0]
    assert len(texts) == row["new_tokens"] and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert texts[-1].startswith(row["output"])
    assert calls == [(k, 12, "generating") for k in range(len(texts) + 1)]


def test_streamed_exact_match_uses_the_twin_once_it_is_built(toy, toy_problems):
    """With the Hugging Face twin built, the stream comes from it (what exact_match uses: the same row, token
    by token); before, from the TransformerLens loop, and the stream never builds the twin itself."""
    import dataclasses

    from transformers import GPT2Config, GPT2LMHeadModel

    from yfpo_core.scoring.evaluate import exact_match, stream_exact_match

    tok = toy.tokenizer
    twin = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok), n_positions=512,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))
    twinned = dataclasses.replace(toy, hf_twin_loader=lambda: twin, _hf_twin=None)
    problem = toy_problems[1]
    tl_row = stream_exact_match(twinned, problem, max_new_tokens=10)
    assert twinned.built_hf_twin() is None and tl_row == exact_match(toy, [problem], max_new_tokens=10).rows[0]
    twinned.hf_twin()
    texts = []
    row = stream_exact_match(twinned, problem, max_new_tokens=10, on_text=texts.append)
    assert row == exact_match(twinned, [problem], max_new_tokens=10).rows[0]
    assert len(texts) >= row["new_tokens"] >= 1 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
