"""The fixed discriminators: SNGAN's residual CIFAR discriminator (AutoGAN's and alphaGAN's, for
every cell-based and DEGAS generator) and the same network seeing AutoGAN's growing stages."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def with_sn(module, enabled):
    """``module`` under spectral norm when ``enabled``."""
    return spectral_norm(module) if enabled else module


class DisBlock(nn.Module):
    """SNGAN residual block: [ReLU], conv3x3, ReLU, conv3x3, [avg-pool 2]; shortcut 1x1 conv
    (+ pool) when it down-samples. ``first`` is SNGAN's optimised first block (no leading ReLU,
    pool before the shortcut conv)."""

    def __init__(self, in_channels, out_channels, downsample, first=False, sn=True):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.c1 = with_sn(nn.Conv2d(in_channels, out_channels, 3, padding=1), sn)
        self.c2 = with_sn(nn.Conv2d(out_channels, out_channels, 3, padding=1), sn)
        self.c_sc = with_sn(nn.Conv2d(in_channels, out_channels, 1), sn) if (
            downsample or in_channels != out_channels) else None

    def forward(self, x):
        h = self.c2(F.relu(self.c1(x if self.first else F.relu(x))))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.c_sc is None:
            return h + x
        if self.first:
            return h + self.c_sc(F.avg_pool2d(x, 2))
        sc = self.c_sc(x)
        return h + (F.avg_pool2d(sc, 2) if self.downsample else sc)


class Discriminator(nn.Module):
    """AutoGAN's / SNGAN's CIFAR discriminator: optimised block (down), block (down), two blocks,
    ReLU, sum over positions, linear (no bias); spectral norm on every layer. (CT-GAN's critic,
    with dropout and mean pooling: ``conventional.spaces.ctgan``.)"""

    def __init__(self, df_dim=128, spectral_norm=True):
        super().__init__()
        self.blocks = nn.ModuleList([DisBlock(3, df_dim, True, first=True, sn=spectral_norm),
                                     DisBlock(df_dim, df_dim, True, sn=spectral_norm),
                                     DisBlock(df_dim, df_dim, False, sn=spectral_norm),
                                     DisBlock(df_dim, df_dim, False, sn=spectral_norm)])
        self.l5 = with_sn(nn.Linear(df_dim, 1, bias=False), spectral_norm)

    def forward(self, x):
        h = x
        for block in self.blocks:
            h = block(h)
        return self.l5(F.relu(h).sum(dim=(2, 3)))


class GrowingDiscriminator(Discriminator):
    """The SNGAN/AutoGAN discriminator seeing the stage's resolution: blocks 1..stage+1, block 4."""

    def forward(self, x, stage=2):
        h = x
        for block in (*self.blocks[:stage + 1], self.blocks[3]):
            h = block(h)
        return self.l5(F.relu(h).sum(dim=(2, 3)))
