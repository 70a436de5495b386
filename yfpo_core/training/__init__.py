"""Preference fine-tuning (DPO / YFPO): preference pairs, losses and the training loop."""
