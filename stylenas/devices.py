"""The ``--device`` option shared by every command, and timing on a device for the benchmarks."""

from __future__ import annotations

import statistics
import time

import torch


def resolve_device(device="auto"):
    """'auto' (a GPU when one is visible, else the CPU), 'cpu', 'cuda' or 'cuda:N' -> torch.device.

    Raises ValueError with a one-line message for an unknown name or a GPU that is not there.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
    return resolved


def synchronize(device):
    """Wait for the work queued on ``device`` (nothing to wait for on the CPU), so a clock read after
    it times finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, repeats, device, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones (cuDNN
    autotuning, the allocator), each call synchronised on ``device``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
