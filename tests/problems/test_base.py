"""The Problem record and the JSON form it shares with preference pairs (yfpo_core.problems.base.TextRecord)."""

from __future__ import annotations

import json

import pytest

from yfpo_core.problems.base import Problem
from yfpo_core.training.pairs import PreferencePair


def test_a_problem_round_trips_through_json():
    problem = Problem("toy/1", "Q?", "1+1=2. #### 2", "2", "toy", {"template": 3, "numbers": [1, 1]})
    doc = problem.to_dict()
    assert doc == {"id": "toy/1", "question": "Q?", "solution": "1+1=2. #### 2", "answer": "2", "source": "toy",
                   "meta": {"template": 3, "numbers": [1, 1]}}
    assert Problem.from_dict(json.loads(json.dumps(doc))) == problem
    assert Problem.from_dict({**doc, "answer": 2, "meta": None}) == Problem("toy/1", "Q?", "1+1=2. #### 2", "2", "toy")


def test_every_text_field_is_required_unless_declared_optional():
    doc = Problem("a", "q", "s", "1", "src").to_dict()
    with pytest.raises(KeyError, match="solution"):
        Problem.from_dict({k: v for k, v in doc.items() if k != "solution"})
    pair = PreferencePair("p#1", "p", "q", "good", "bad", "", "file:x.jsonl", {"line": 3})
    row = {k: v for k, v in pair.to_dict().items() if k != "gold_answer"}  # a pairs file may leave it out
    assert PreferencePair.from_dict(row) == pair and PreferencePair.from_dict({**row, "gold_answer": None}) == pair
    with pytest.raises(KeyError, match="rejected"):
        PreferencePair.from_dict({k: v for k, v in row.items() if k != "rejected"})
