"""How a problem becomes model input, per model family.

A :class:`PromptFormat` turns a question into the prompt text (everything before the model's answer)
and a gold solution into the response text the model is expected to write. Scoring, attribution and
training all go through it, so the text the model is measured on is the text it is trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from yfpo_core.problems.base import ANSWER_MARKER

CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")

DEFAULT_INSTRUCTION = (
    "Solve the problem step by step. On the last line write the final answer as '#### <number>'."
)


def strip_calculator_notes(solution: str) -> str:
    """Remove GSM8K's ``<<48/2=24>>`` calculator annotations, which models never see in the wild."""
    return CALCULATOR_NOTE.sub("", solution)


class PromptFormat(Protocol):
    """The text around a problem for one model family."""

    name: str
    end_of_response: str  # text the model writes right after the final answer (EOS text or newline)

    def prompt(self, question: str) -> str: ...

    def response(self, solution: str) -> str: ...


@dataclass(frozen=True)
class ChatPromptFormat:
    """Chat models (SmolLM2-Instruct, Qwen-Instruct): the tokenizer's chat template, GSM8K-style answer.

    The instruction asks for GSM8K's ``#### N`` last line, which SmolLM2-Instruct already tends to write.
    """

    chat_template_prompt: str  # the template rendered around the placeholder {question}
    end_of_response: str
    name: str = "chat"

    @classmethod
    def from_tokenizer(cls, tokenizer, instruction: str = DEFAULT_INSTRUCTION) -> ChatPromptFormat:
        placeholder = "\x00QUESTION\x00"
        messages = [{"role": "user", "content": f"{placeholder}\n\n{instruction}"}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return cls(chat_template_prompt=rendered.replace(placeholder, "{question}"),
                   end_of_response=tokenizer.eos_token or "")

    def prompt(self, question: str) -> str:
        return self.chat_template_prompt.replace("{question}", question.strip())

    def response(self, solution: str) -> str:
        return _clean_solution(solution)


@dataclass(frozen=True)
class PlainPromptFormat:
    """Base models and the toy model: ``Q: <question>\\nA: <solution>\\n``."""

    question_prefix: str = "Q: "
    answer_prefix: str = "\nA: "
    end_of_response: str = "\n"
    name: str = "plain"

    def prompt(self, question: str) -> str:
        return f"{self.question_prefix}{question.strip()}{self.answer_prefix}"

    def response(self, solution: str) -> str:
        return _clean_solution(solution)


def _clean_solution(solution: str) -> str:
    """Gold solution as model text: calculator notes removed, blank line before ``####`` collapsed."""
    text = strip_calculator_notes(solution).strip()
    return re.sub(r"\n\s*\n(\s*" + re.escape(ANSWER_MARKER) + ")", r"\n\1", text)
