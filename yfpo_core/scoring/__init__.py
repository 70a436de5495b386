"""Scoring a model on problems: log-probs of continuations, greedy and sampled generation, evaluation.

The "is the answer right?" layer that attribution, analysis and training all build on:
:mod:`~yfpo_core.scoring.logprobs` (teacher-forced log-probs), :mod:`~yfpo_core.scoring.generation`
(decoding loops) and :mod:`~yfpo_core.scoring.evaluate` (answer ranking and exact match).
"""
