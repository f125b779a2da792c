"""The shared GAN of AutoGAN's search (section 3.3) beside its training steps: precise BatchNorm
statistics for one candidate before its reward, and the dynamic-reset rule on the loss windows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..train import latents


@torch.no_grad()
def recalibrate_batchnorm(G, arch, samples, batch, seed):
    """Recompute the running statistics of every BatchNorm of ``G`` (a copy) for ``arch``: the
    average of the batch statistics of ``samples`` latents in batches of ``batch`` (precise BN),
    then put G in eval mode."""
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    G.train()
    device = G.l1.weight.device
    for start in range(0, samples, batch):
        n = min(batch, samples - start)
        G(latents(seed, start, 11, n, G.latent_dim, device), arch)
    return G.eval()


class LossWindows:
    """AutoGAN's dynamic reset rule: windows of the last ``size`` G and D losses; once the G window
    is full, a variance (population) of either window below ``threshold`` means collapse."""

    def __init__(self, size, threshold):
        self.size, self.threshold = size, threshold
        self.g, self.d = [], []

    def push(self, d_loss=None, g_loss=None):
        for window, value in ((self.d, d_loss), (self.g, g_loss)):
            if value is not None:
                window.append(float(value))
                del window[:-self.size]

    def collapsed(self):
        return len(self.g) >= self.size and (float(np.var(self.g)) < self.threshold
                                             or float(np.var(self.d)) < self.threshold)

    def clear(self):
        self.g.clear(), self.d.clear()

    def state_dict(self):
        return {"g": list(self.g), "d": list(self.d)}

    def load_state_dict(self, state):
        self.g, self.d = list(state["g"]), list(state["d"])


# ---------------------------------------------------------------------------- the search
