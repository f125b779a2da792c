"""Spreading candidate evaluations (child models, rewards, grown networks) over the processes of a
``torchrun`` launch, for the searchers that score many architectures: AutoGAN, AGAN, DGGAN.

Job ``i`` of a list runs on rank ``i % world_size`` with every random generator (torch, CUDA,
numpy, Python) seeded from ``(seed, i)`` alone, and the results come back in job order on every
rank. A job's result therefore depends on the job, the seed and its index, never on the number of
processes: a search run with 1, 2 or 16 processes makes the same decisions.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["job_seed", "seeded", "spread_jobs"]


def job_seed(seed, index):
    """The seed of job ``index`` of a run seeded ``seed`` (a 63-bit mix of the two)."""
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 64)
    return mixed >> 1


@contextmanager
def seeded(seed):
    """Run a block with torch (CPU and every CUDA device), numpy and Python's ``random`` seeded
    from ``seed``; the previous states come back afterwards, so the caller's stream is untouched."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def spread_jobs(jobs, evaluate, seed, dist=None, log=None):
    """``[evaluate(job, index) for index, job in enumerate(jobs)]``, computed on all processes of
    ``dist`` (a ``stylenas.train.distributed.Dist``; ``None`` or one process: here) and returned,
    in job order, on every rank. ``evaluate`` must return a picklable object (numbers, lists,
    state dicts moved to the CPU). Every process must call this with the same ``jobs``."""
    world, rank = (dist.world_size, dist.rank) if dist is not None else (1, 0)
    mine = {}
    for index in range(rank, len(jobs), world):
        with seeded(job_seed(seed, index)):
            mine[index] = evaluate(jobs[index], index)
        if log is not None:
            log(f"job {index + 1}/{len(jobs)} done on rank {rank}")
    gathered = dist.gather_objects(mine) if dist is not None and world > 1 else [mine]
    results = {}
    for part in gathered:
        results.update(part)
    missing = [i for i in range(len(jobs)) if i not in results]
    if missing:
        raise RuntimeError(f"spread_jobs: no result for jobs {missing[:5]} (the processes disagree on the job list)")
    return [results[i] for i in range(len(jobs))]
