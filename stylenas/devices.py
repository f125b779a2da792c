"""The ``--device`` option shared by every command."""

from __future__ import annotations

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
