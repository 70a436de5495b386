"""Prompt formats (yfpo_core.models.prompts): the text a model is measured on is the text it is trained on."""

from __future__ import annotations

from types import SimpleNamespace

from yfpo_core.models.prompts import DEFAULT_INSTRUCTION, ChatPromptFormat, PlainPromptFormat, strip_calculator_notes

SOLUTION = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n\n#### 24\n"


def test_calculator_notes_and_the_blank_line_before_the_answer_go():
    assert strip_calculator_notes(SOLUTION) == "Natalia sold 48/2 = 24 clips in May.\n\n#### 24\n"
    assert PlainPromptFormat().response(SOLUTION) == "Natalia sold 48/2 = 24 clips in May.\n#### 24"


def test_plain_format():
    fmt = PlainPromptFormat()
    assert fmt.prompt("  How many? ") == "Q: How many?\nA: "
    assert (fmt.end_of_response, fmt.name) == ("\n", "plain")


def test_chat_format_renders_the_template_once_around_the_question():
    rendered = []

    def apply_chat_template(messages, tokenize, add_generation_prompt):
        rendered.append(messages)
        return f"<user>{messages[0]['content']}</user><assistant>"

    tokenizer = SimpleNamespace(apply_chat_template=apply_chat_template, eos_token="<end>")
    fmt = ChatPromptFormat.from_tokenizer(tokenizer)
    assert fmt.prompt(" What is 2+3? ") == f"<user>What is 2+3?\n\n{DEFAULT_INSTRUCTION}</user><assistant>"
    assert fmt.prompt("Q2") == f"<user>Q2\n\n{DEFAULT_INSTRUCTION}</user><assistant>" and len(rendered) == 1
    assert fmt.end_of_response == "<end>" and fmt.response(SOLUTION) == PlainPromptFormat().response(SOLUTION)
