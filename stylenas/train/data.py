"""Training batches that depend only on (seed, step), never on the process count or on a restart.

Global batch ``step`` holds the images at positions step * B ... step * B + B - 1 of an endless
stream made of one seeded permutation of the dataset per epoch (epoch e: ``randperm`` seeded with
seed + e). Process ``rank`` of ``world`` reads rows rank, rank + world, ... of every global batch
(``Dist.shard``), so the data are split between processes without overlap, like a distributed
sampler, and a resumed run continues at the very position where it stopped.

``mirror`` (``--mirror 1``; off by default, as NVlabs' ``--mirror``): each image is mirrored
horizontally with probability 1/2, drawn from (seed, step) for the whole global batch too. NVlabs
doubles the dataset instead (index i >= n is image i - n flipped), so each epoch there holds every
image once each way; here every draw is an image in one of its two orientations with equal odds, the
same distribution, with no epoch bookkeeping tied to the flip.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ..datasets.loader import worker_init

FLIP_STREAM = 5


def stream_generator(seed, step, stream, device="cpu"):
    """A generator seeded by (seed, step, stream): every random draw of a training step comes from one."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 9_973 + stream * 7_919_191) % (2 ** 63 - 1))
    return g


class GlobalBatchSampler(Sampler):
    """Yields this process's indices of global batches start_step, start_step + 1, ..."""

    def __init__(self, length, batch, seed=0, rank=0, world_size=1, start_step=0):
        self.length, self.batch, self.seed = length, batch, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self._epoch, self._perm = None, None

    def _permutation(self, epoch):
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
        return self._perm

    def global_indices(self, step):
        positions = range(step * self.batch, (step + 1) * self.batch)
        return [int(self._permutation(p // self.length)[p % self.length]) for p in positions]

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.global_indices(step)[self.rank::self.world_size]
            step += 1


def flip_mask(seed, step, batch):
    """Which rows of global batch ``step`` are mirrored (bool [batch])."""
    return torch.rand(batch, generator=stream_generator(seed, step, FLIP_STREAM)) < 0.5


class TrainingBatches:
    """``next()`` -> (step, float [B / world, 3, R, R] in [-1, 1] on ``device``)."""

    def __init__(self, dataset, batch, dist, seed=0, start_step=0, num_workers=0, mirror=False):
        self.batch, self.dist, self.seed, self.step, self.mirror = batch, dist, seed, start_step, mirror
        self.sampler = GlobalBatchSampler(len(dataset), batch, seed, dist.rank, dist.world_size, start_step)
        pin = dist.device.type == "cuda"
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers, pin_memory=pin,
                                 prefetch_factor=2 if num_workers > 0 else None,
                                 persistent_workers=num_workers > 0, worker_init_fn=worker_init(num_workers))
        self._iter = None

    def __next__(self):
        if self._iter is None:
            self._iter = iter(self.loader)
        images = next(self._iter).to(self.dist.device, non_blocking=True)
        if self.mirror:
            flips = self.dist.shard(flip_mask(self.seed, self.step, self.batch)).to(self.dist.device)
            images = torch.where(flips[:, None, None, None], images.flip(3), images)
        step, self.step = self.step, self.step + 1
        return step, images.float() / 127.5 - 1
