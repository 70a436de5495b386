"""The names of the metrics a run logs (one JSON line per step in ``metrics.jsonl``), in one place.

TRL's names where TRL has the metric (``rewards/margins``, ``logps/chosen``, ...); ``yfpo/`` for the neuron
term; ``eval/`` for held-out metrics. The trainer writes them and the experiment, CLI, app and reports read
them from here.
"""

STEP = "step"
LOSS = "loss"
DPO_LOSS = "dpo/loss"
REWARDS_CHOSEN = "rewards/chosen"
REWARDS_REJECTED = "rewards/rejected"
REWARDS_MARGINS = "rewards/margins"
REWARDS_ACCURACIES = "rewards/accuracies"
LOGPS_CHOSEN = "logps/chosen"
LOGPS_REJECTED = "logps/rejected"
GRAD_NORM = "grad_norm"
LR = "lr"
STEP_SECONDS = "step_seconds"
ELAPSED_S = "elapsed_s"  # wall time since the run (or its resume) started, added by the run's recorder

NEURON_MARGIN = "yfpo/neuron_margin"  # the training set's margin A(y_w) - A(y_l) on the step's batch
AUX_LOSS = "yfpo/aux_loss"
ACT_CHOSEN = "yfpo/act_chosen"
ACT_REJECTED = "yfpo/act_rejected"
GRAD_NORM_DPO = "yfpo/grad_norm_dpo"  # |gradient of the DPO loss| over the trainable parameters
GRAD_NORM_AUX = "yfpo/grad_norm_aux"  # |gradient of the neuron term| (as applied, lambda included)
AUX_SHARE = "yfpo/aux_share"  # |g_aux| / (|g_aux| + |g_dpo|): how much of the update the neuron term supplies
GRAD_COS = "yfpo/grad_cos"  # cosine between the two gradients (< 0: the neuron term pulls against DPO)
LAM = "yfpo/lam"  # the lambda a target-share run used at this step

EVAL_RANKING_ACCURACY = "eval/ranking_accuracy"
EVAL_GOLD_LOGPROB = "eval/gold_logprob"
EVAL_MEAN_MARGIN = "eval/mean_margin"  # log p(gold) - max log p(distractor), nats
EVAL_EXACT_MATCH = "eval/exact_match"
EVAL_NEURON_MARGIN = "eval/neuron_margin"  # the user's set's margin on held-out pairs (same units in every arm)

LEVER = (NEURON_MARGIN, AUX_SHARE, GRAD_NORM_AUX, GRAD_NORM_DPO)  # what the Train and Runs pages plot together
