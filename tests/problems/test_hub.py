"""The full GSM8K from the Hugging Face Hub (yfpo_core.problems.hub, source gsm8k), with the hub faked."""

from __future__ import annotations

import sys
import time

import pytest

from yfpo_core.errors import ProblemDataError
from yfpo_core.problems import load_problems


def test_gsm8k_offline_raises_one_line_pointing_to_offline_sources(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub and datasets read the variable at import; pin their copies too if already imported.
    for module, attribute in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], attribute, True)
    started = time.perf_counter()
    with pytest.raises(ProblemDataError) as info:
        load_problems("gsm8k")
    assert time.perf_counter() - started < 20
    message = str(info.value)
    assert "\n" not in message
    assert "unreachable" in message
    assert "gsm8k-test-100" in message and "gsm-symbolic" in message


def test_gsm8k_converts_hub_rows(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return [{"question": "Q0?", "answer": "2*3=<<2*3=6>>6\n#### 6"}, {"question": "Q1?", "answer": "#### 1,000"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_problems("gsm8k", split="train")
    assert calls == [("openai/gsm8k", "main", "train")]
    assert [(p.id, p.answer, p.source) for p in problems] == [("gsm8k-train/0000", "6", "gsm8k"),
                                                              ("gsm8k-train/0001", "1000", "gsm8k")]
    with pytest.raises(ProblemDataError, match="unknown split"):
        load_problems("gsm8k", split="validation")
