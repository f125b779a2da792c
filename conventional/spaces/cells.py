"""The frame of the cell-based generators (AutoGAN's and alphaGAN's code): linear z -> [gf, w, w]
(w = resolution / 8), three cells doubling the size, then to_rgb = BN, ReLU, conv 3x3, tanh.
DEGAS keeps the same head and tail around its own body (``degas_dag``)."""

from __future__ import annotations

from torch import nn

NUM_CELLS = 3


def bottom_width(resolution):
    if resolution % 8 or resolution < 8:
        raise ValueError(f"resolution must be a multiple of 8 (three cells double the bottom width), got {resolution}")
    return resolution // 8


class CellGenerator(nn.Module):
    """Head, cells, to_rgb. A cell is called as ``cell(h, [skip outputs of earlier cells])`` and
    returns ``(its skip output, h)``."""

    def __init__(self, resolution, gf_dim, latent_dim, cells):
        super().__init__()
        self.resolution, self.gf_dim, self.latent_dim = resolution, gf_dim, latent_dim
        self.width = bottom_width(resolution)
        self.l1 = nn.Linear(latent_dim, self.width ** 2 * gf_dim)
        self.cells = nn.ModuleList(cells)
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(gf_dim), nn.ReLU(), nn.Conv2d(gf_dim, 3, 3, padding=1), nn.Tanh())

    def forward(self, z):
        h = self.l1(z).view(-1, self.gf_dim, self.width, self.width)
        skips = []
        for cell in self.cells:
            skip, h = cell(h, skips)
            skips.append(skip)
        return self.to_rgb(h)
