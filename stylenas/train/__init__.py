"""Retraining: losses, regularisers, EMA, checkpoints, distributed training."""
