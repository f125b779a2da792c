"""Retraining: losses, regularisers, EMA, checkpoints, distributed training.

Modules (nothing is imported here, so ``import stylenas.train.checkpoint`` stays light):
- ``checkpoint``: atomic, weights_only checkpoints shared by every trainer, RNG capture,
  ``load_generator(path, device)`` for any trainer's checkpoint.
- ``distributed``: torchrun -> ``Dist`` (rank, world size, device, gradient all-reduce, sharding).
- ``runlog``: log.jsonl, progress with ETA, snapshot names, grids, plots, keep-best.
- ``config``: NVlabs' ``--cfg`` presets and ``tiny``; ``loss``: StyleGAN2's losses and regularisers.
- ``augment``: ADA's augmentation pipe and p controller (NVlabs' AugmentPipe);
- ``data``: training batches derived from (seed, step), ``--mirror``; ``stylegan2``: the trainer;
  ``run``: the run behind ``stylenas train``; ``generate``: images, style mixing, FID of generators;
  ``bench``: ``stylenas bench-train``; ``commands``: the click commands.
See docs/training.md.
"""
