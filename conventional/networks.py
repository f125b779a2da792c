"""Generators of conventional genotypes and the fixed SNGAN/AutoGAN residual discriminator.

Every generator is linear z -> [gf, w, w] (w = resolution / 8), three cells doubling the size,
then to_rgb = BN, ReLU, conv 3x3, tanh (AutoGAN's and alphaGAN's code); DEGAS has its own body
(conventional/degas.py) between the same head and tail. Built at gf 256 / df 128 the published
genotypes have the parameter counts of their authors' code (tests/test_conventional.py).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .genotypes import load_genotype
from .ops import Up, alphagan_op


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


# ---------------------------------------------------------------------------- alphaGAN cells

def skip_sources(cell_index):
    """(earlier cell, number of doublings) of each cross-cell skip into cell ``cell_index`` (1-based)."""
    return [(source, cell_index - source) for source in range(1, cell_index)]


class AlphaGANCell(nn.Module):
    """node1 = up0(x), shortcut = up1(x); out = n1(n0(node1)) + n2(shortcut) + skips; the skip
    output is node1 (alphaGAN's Cell_gen_Auto)."""

    def __init__(self, channels, cell_index, up, normal, skip):
        super().__init__()
        self.up = nn.ModuleList(alphagan_op(op, channels) for op in up)
        self.normal = nn.ModuleList(alphagan_op(op, channels) for op in normal)
        self.skip = nn.ModuleList(Up(op, channels, times) for op, (_, times) in zip(skip, skip_sources(cell_index)))
        self.sources = [source - 1 for source, _ in skip_sources(cell_index)]

    def forward(self, x, skips):
        node1, shortcut = self.up[0](x), self.up[1](x)
        out = self.normal[1](self.normal[0](node1)) + self.normal[2](shortcut)
        for op, source in zip(self.skip, self.sources):
            out = out + op(skips[source])
        return node1, out


# ---------------------------------------------------------------------------- AutoGAN cells

class AutoGANCell(nn.Module):
    """AutoGAN's cell. ``pre``: [norm], ReLU, up, conv3x3 / [norm], ReLU, conv3x3 (the published
    models); ``post``: up, conv3x3, [norm], ReLU / conv3x3, [norm], ReLU (the search space).
    Skip inputs are resized with the cell's up mode (deconv: k2 s2 per doubling), passed through
    a 1x1 conv each and added after the first conv; the shortcut is a 1x1 conv of up(x).

    The skip output is the first conv's output. (AutoGAN's code adds the skip inputs in place
    on the same tensor, so its cell 2 also passes them on; we pass the conv output the paper
    describes. The parameter count is the same.)"""

    def __init__(self, channels, conv="pre", norm="none", up="nearest", shortcut=False, skip_in=(), cell_index=1):
        super().__init__()
        self.conv_type, self.up_mode = conv, up
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)
        norms = {"none": nn.Identity, "bn": nn.BatchNorm2d, "in": nn.InstanceNorm2d}
        self.n1 = norms[norm](channels) if norm != "none" else nn.Identity()
        self.n2 = norms[norm](channels) if norm != "none" else nn.Identity()
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2) if up == "deconv" else None
        self.c_sc = nn.Conv2d(channels, channels, 1) if shortcut else None
        self.deconv_sc = nn.ConvTranspose2d(channels, channels, 2, stride=2) if shortcut and up == "deconv" else None
        self.sources = [s - 1 for s in sorted(skip_in)]
        self.skip_in_ops = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in self.sources)
        self.skip_deconvs = nn.ModuleList(
            nn.Sequential(*[nn.ConvTranspose2d(channels, channels, 2, stride=2) for _ in range(cell_index - s)])
            for s in sorted(skip_in)) if up == "deconv" else None

    def _up(self, x, deconv):
        return deconv(x) if self.up_mode == "deconv" else F.interpolate(x, scale_factor=2, mode=self.up_mode)

    def forward(self, x, skips):
        if self.conv_type == "pre":
            h = self.c1(self._up(F.relu(self.n1(x)), self.deconv))
        else:
            h = F.relu(self.n1(self.c1(self._up(x, self.deconv))))
        skip_out = h
        for i, (source, op) in enumerate(zip(self.sources, self.skip_in_ops)):
            ft = skips[source]
            ft = self.skip_deconvs[i](ft) if self.up_mode == "deconv" else F.interpolate(
                ft, size=h.shape[-2:], mode=self.up_mode)
            h = h + op(ft)
        out = self.c2(F.relu(self.n2(h))) if self.conv_type == "pre" else F.relu(self.n2(self.c2(h)))
        if self.c_sc is not None:
            out = out + self.c_sc(self._up(x, self.deconv_sc))
        return skip_out, out


# ---------------------------------------------------------------------------- discriminator

def _sn(module, enabled):
    return spectral_norm(module) if enabled else module


class DisBlock(nn.Module):
    """SNGAN residual block: [ReLU], conv3x3, ReLU, conv3x3, [avg-pool 2]; shortcut 1x1 conv
    (+ pool) when it down-samples. ``first`` is SNGAN's optimised first block (no leading ReLU,
    pool before the shortcut conv)."""

    def __init__(self, in_channels, out_channels, downsample, first=False, sn=True):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.c1 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1), sn)
        self.c2 = _sn(nn.Conv2d(out_channels, out_channels, 3, padding=1), sn)
        self.c_sc = _sn(nn.Conv2d(in_channels, out_channels, 1), sn) if (
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
    ReLU, sum over positions, linear (no bias); spectral norm on every layer.

    ``dropout`` > 0 adds dropout after each block: CT-GAN's consistency term compares two
    stochastic passes. ``forward(x, features=True)`` also returns the pooled features (the
    second-to-last layer CT-GAN's term uses)."""

    def __init__(self, df_dim=128, spectral_norm=True, dropout=0.0):
        super().__init__()
        self.blocks = nn.ModuleList([DisBlock(3, df_dim, True, first=True, sn=spectral_norm),
                                     DisBlock(df_dim, df_dim, True, sn=spectral_norm),
                                     DisBlock(df_dim, df_dim, False, sn=spectral_norm),
                                     DisBlock(df_dim, df_dim, False, sn=spectral_norm)])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.l5 = _sn(nn.Linear(df_dim, 1, bias=False), spectral_norm)

    def forward(self, x, features=False):
        h = x
        for block in self.blocks:
            h = self.dropout(block(h))
        h = F.relu(h).sum(dim=(2, 3))
        out = self.l5(h)
        return (out, h) if features else out


# ---------------------------------------------------------------------------- construction

def init_weights(module):
    """AutoGAN's and alphaGAN's retraining initialisation (``--init_type xavier_uniform``):
    xavier-uniform weights of every Conv2d (transposed convs and linears keep PyTorch's
    default, as their ``classname.find("Conv2d")`` test), BN weights N(1, 0.02) and biases 0.
    Under spectral norm the raw weight ``weight_orig`` is the one initialised."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight_orig if hasattr(m, "weight_orig") else m.weight)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def build_generator(genotype, resolution=32, gf_dim=256, latent_dim=128):
    genotype = load_genotype(genotype)
    space, body = genotype.search_space, genotype.body
    if space == "alphagan_conv":
        cells = [AlphaGANCell(gf_dim, c, cell["up"], cell["normal"], cell.get("skip", []))
                 for c, cell in enumerate(body["cells"], 1)]
        return CellGenerator(resolution, gf_dim, latent_dim, cells)
    if space == "autogan":
        cells = [AutoGANCell(gf_dim, cell["conv"], cell["norm"], cell["up"], cell["shortcut"], cell.get("skip_in", []),
                             cell_index=c) for c, cell in enumerate(body["cells"], 1)]
        return CellGenerator(resolution, gf_dim, latent_dim, cells)
    if space == "degas":
        from .degas import DegasGenerator

        return DegasGenerator(genotype, resolution, gf_dim, latent_dim)
    if space == "dggan":
        return _grown(genotype, resolution)[0]
    if space == "agan":
        from .agan import AGANGenerator

        return AGANGenerator(body, resolution, gf_dim, latent_dim)
    raise ValueError(f"no generator for search space {space!r}")


def build_networks(genotype, resolution=32, gf_dim=256, df_dim=128, latent_dim=128, d_dropout=0.0,
                   d_spectral_norm=True, init=True):
    """(G, D) of a genotype (a ConventionalGenotype, a published name or a genotype.json path).
    ``G(z)`` maps ``[N, latent_dim]`` to ``[N, 3, resolution, resolution]`` in [-1, 1]. A ``dggan``
    genotype fixes its own widths and latent size and brings its own ProgGAN D (equalised
    learning rate: ``init`` does not apply); an ``agan`` genotype brings its searched D (conventional/agan.py)."""
    genotype = load_genotype(genotype)
    if genotype.search_space == "dggan":
        return _grown(genotype, resolution)
    G = build_generator(genotype, resolution, gf_dim, latent_dim)
    if genotype.search_space == "agan":  # AGAN searched D too (its modules are in the genotype)
        from .agan import AGANDiscriminator

        D = AGANDiscriminator(genotype.body, df_dim, sn=d_spectral_norm)
    else:
        D = Discriminator(df_dim, spectral_norm=d_spectral_norm, dropout=d_dropout)
    if init:
        init_weights(G), init_weights(D)
    return G, D


def _grown(genotype, resolution):
    from .dggan import build_grown, stage_resolutions

    grown = stage_resolutions(genotype.body)[-1]
    if grown != resolution:
        raise ValueError(f"the dggan genotype was grown to {grown}px, not {resolution}px (train it on {grown}px data)")
    return build_grown(genotype)


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
