"""alphaGAN's search space on AutoGAN-style cells (Tian et al., section 4.2, Fig. 2; the
authors' ``Cell_gen_Auto`` and ``MixedOp``).

Three cells double the size. In a cell, two up edges read the input (node 1 and the shortcut
node), three normal edges follow (node 1 -> node 2, node 2 -> right, shortcut -> left), and
the output adds left, right and the cross-cell skips (cell 2 from cell 1, cell 3 from cells 1
(x4) and 2). Every edge is a MixedOp: sum_o softmax(alpha)_o o(x) (eq. 8). Alphas: per cell
``normal`` [3, 6] and ``up`` [2, 3]; ``skip_2`` [1, 3]; ``skip_3`` [2, 3]. The derived genotype
keeps the argmax op of every edge (all edges kept).

Genotype body (search space ``alphagan_conv``): three cells, each ``{"up": [op, op], "normal":
[op, op, op], "skip": [...]}``: up edge 0 makes node 1 from the cell input, up edge 1 the shortcut
node; normal edge 0 maps node 1 to node 2, edge 1 node 2 to the right input of the output, edge 2
the shortcut node to the left input; ``skip`` holds the up op of each cross-cell skip (cell 2: from
cell 1; cell 3: from cell 1 (x4), cell 2). The discrete generator is ``AlphaGANCell``s in a
``CellGenerator``; the published alphaGAN (l) and (s) are in ``PUBLISHED``.
"""

from __future__ import annotations

import torch
from torch import nn

from ...search.supernet import ArchitectureSplit
from ..genotypes import ConventionalGenotype, check
from ..ops import ALPHAGAN_NORMAL_OPS, ALPHAGAN_UP_OPS, Up, alphagan_op
from .cells import NUM_CELLS, CellGenerator

KEYS = ("cells",)  # of the genotype body


def validate(body, where):
    """The ``alphagan_conv`` body (see the module docstring)."""
    cells = body.get("cells")
    check(isinstance(cells, list) and len(cells) == NUM_CELLS, where, f"\"cells\" must be a list of {NUM_CELLS} cells")
    for c, cell in enumerate(cells, 1):
        check(isinstance(cell, dict), where, f"cell {c} must be an object")
        for key, count, valid in (("up", 2, ALPHAGAN_UP_OPS), ("normal", 3, ALPHAGAN_NORMAL_OPS),
                                  ("skip", c - 1, ALPHAGAN_UP_OPS)):
            ops = cell.get(key, [] if key == "skip" and c == 1 else None)
            check(isinstance(ops, list) and len(ops) == count, where,
                  f"cell {c}: \"{key}\" must list {count} operations, got {ops!r}")
            for op in ops:
                check(op in valid, where, f"cell {c}: {key} op {op!r} is not one of {', '.join(valid)}")


# ---------------------------------------------------------------------------- the discrete network

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


def build_generator(body, resolution, gf_dim, latent_dim):
    cells = [AlphaGANCell(gf_dim, c, cell["up"], cell["normal"], cell.get("skip", []))
             for c, cell in enumerate(body["cells"], 1)]
    return CellGenerator(resolution, gf_dim, latent_dim, cells)


def _alphagan(cells, name):
    body = {"cells": [{"up": up, "normal": normal, "skip": skip} for up, normal, skip in cells]}
    return ConventionalGenotype("alphagan_conv", 32, body, source={"published": name})


# The authors' models/genotypes.py (yuesongtian/AlphaGAN), alphaGAN (l) and (s) of Table 2.
PUBLISHED = {
    "alphagan_l": lambda: _alphagan([
        (["deconv", "bilinear"], ["conv_5x5", "conv_5x5", "sep_conv_5x5"], []),
        (["deconv", "bilinear"], ["conv_5x5", "conv_1x1", "conv_3x3"], ["nearest"]),
        (["nearest", "bilinear"], ["conv_1x1", "conv_5x5", "sep_conv_3x3"], ["bilinear", "nearest"])], "alphaGAN (l)"),
    "alphagan_s": lambda: _alphagan([
        (["bilinear", "deconv"], ["conv_1x1", "sep_conv_3x3", "conv_1x1"], []),
        (["deconv", "deconv"], ["sep_conv_5x5", "sep_conv_3x3", "sep_conv_3x3"], ["nearest"]),
        (["deconv", "nearest"], ["sep_conv_5x5", "sep_conv_3x3", "sep_conv_3x3"], ["deconv", "bilinear"])],
        "alphaGAN (s)"),
}


# ---------------------------------------------------------------------------- the supernet

ARCH_INIT_SCALE = 1e-3  # alphas start near uniform, 1e-3 * randn (DARTS, the authors' code)


def space_size():
    """Architectures in the space: 6 normal ops on 9 edges, 3 up ops on 6 up edges and 3 skip
    edges: 6^9 * 3^6 * 3^3 = (6^3 * 3^2)^3 * 3^3, about 2.0e11 (section 4.2)."""
    edges_normal, edges_up = 3 * NUM_CELLS, 2 * NUM_CELLS
    edges_skip = sum(c - 1 for c in range(1, NUM_CELLS + 1))
    return len(ALPHAGAN_NORMAL_OPS) ** edges_normal * len(ALPHAGAN_UP_OPS) ** (edges_up + edges_skip)


class MixedOp(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.ops = nn.ModuleDict(ops)

    def forward(self, x, weights):
        out = 0
        for w, op in zip(weights, self.ops.values()):
            out = out + w * op(x)
        return out


class SuperCell(nn.Module):
    def __init__(self, channels, cell_index):
        super().__init__()
        self.up = nn.ModuleList(MixedOp({op: alphagan_op(op, channels) for op in ALPHAGAN_UP_OPS}) for _ in range(2))
        self.normal = nn.ModuleList(MixedOp({op: alphagan_op(op, channels) for op in ALPHAGAN_NORMAL_OPS})
                                    for _ in range(3))
        self.skip = nn.ModuleList(MixedOp({op: Up(op, channels, times) for op in ALPHAGAN_UP_OPS})
                                  for _, times in skip_sources(cell_index))
        self.sources = [source - 1 for source, _ in skip_sources(cell_index)]

    def forward(self, x, skips, up, normal, skip):
        """``up`` [2, 3], ``normal`` [3, 6], ``skip`` [skips, 3]: softmax weights per edge."""
        node1, shortcut = self.up[0](x, up[0]), self.up[1](x, up[1])
        out = self.normal[1](self.normal[0](node1, normal[0]), normal[1]) + self.normal[2](shortcut, normal[2])
        for i, (op, source) in enumerate(zip(self.skip, self.sources)):
            out = out + op(skips[source], skip[i])
        return node1, out


class AlphaGANSuperGenerator(ArchitectureSplit, CellGenerator):
    """The supernet; ``arch_parameters()`` are the alphas, ``weight_parameters()`` the rest
    (the interface of ``stylenas.search.AlphaGANSearcher``)."""

    def __init__(self, resolution=32, gf_dim=256, latent_dim=128):
        arch = nn.ParameterDict()
        for c in range(1, NUM_CELLS + 1):
            arch[f"up_{c}"] = nn.Parameter(ARCH_INIT_SCALE * torch.randn(2, len(ALPHAGAN_UP_OPS)))
            arch[f"normal_{c}"] = nn.Parameter(ARCH_INIT_SCALE * torch.randn(3, len(ALPHAGAN_NORMAL_OPS)))
            if c > 1:
                arch[f"skip_{c}"] = nn.Parameter(ARCH_INIT_SCALE * torch.randn(c - 1, len(ALPHAGAN_UP_OPS)))
        super().__init__(resolution, gf_dim, latent_dim, [SuperCell(gf_dim, c) for c in range(1, NUM_CELLS + 1)])
        self.arch = arch

    def forward(self, z):
        h = self.l1(z).view(-1, self.gf_dim, self.width, self.width)
        skips = []
        for c, cell in enumerate(self.cells, 1):
            weights = [torch.softmax(self.arch[f"{kind}_{c}"], dim=-1) if f"{kind}_{c}" in self.arch else []
                       for kind in ("up", "normal", "skip")]
            skip, h = cell(h, skips, *weights)
            skips.append(skip)
        return self.to_rgb(h)

    def op_weights(self):
        """{alpha key: softmax weights [edges, ops]} as lists."""
        return {key: torch.softmax(value.detach().float().cpu(), dim=-1).tolist() for key, value in self.arch.items()}

    def genotype(self, resolution=None, source=None):
        """The argmax op of every edge (section 4.2)."""
        cells = []
        for c in range(1, NUM_CELLS + 1):
            cell = {"up": [ALPHAGAN_UP_OPS[int(i)] for i in self.arch[f"up_{c}"].argmax(-1)],
                    "normal": [ALPHAGAN_NORMAL_OPS[int(i)] for i in self.arch[f"normal_{c}"].argmax(-1)],
                    "skip": [ALPHAGAN_UP_OPS[int(i)] for i in self.arch[f"skip_{c}"].argmax(-1)] if c > 1 else []}
            cells.append(cell)
        arch = {key: value.detach().cpu().tolist() for key, value in self.arch.items()}
        return ConventionalGenotype("alphagan_conv", resolution or self.resolution, {"cells": cells}, arch,
                                    source).validate()

    def discrete_state_dict(self, genotype):
        """Weights of the discrete network of ``genotype`` (``build_generator``) taken from the
        supernet: the chosen candidate of every edge."""
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("arch."):
                continue
            parts = key.split(".")
            if len(parts) > 5 and parts[0] == "cells" and parts[4] == "ops":
                c, kind, edge, op = int(parts[1]) + 1, parts[2], int(parts[3]), parts[5]
                if genotype.body["cells"][c - 1][kind][edge] != op:
                    continue
                key = ".".join(parts[:4] + parts[6:])
            state[key] = value
        return state
