"""AutoGAN's search space (Gong et al., ICCV 2019, section 3.1; the authors'
models_search/building_blocks_search.py): three cells, each (conv pre/post, norm none/BN/IN, up
bilinear/nearest/deconv, shortcut 0/1), cell 2 one skip bit (from cell 1), cell 3 a skip number
0..3 (bit 1 from cell 1, bit 0 from cell 2): AutoGAN's 14 integers (``autogan_from_code``), of which
``space_size()`` = 36^3 * 2 * 4 = 373,248 exist; AutoGAN-A/B/C (``PUBLISHED``) are points of it.

Genotype body (search space ``autogan``): three cells ``{"conv": "pre"|"post", "norm":
"none"|"bn"|"in", "up": "bilinear"|"nearest"|"deconv", "shortcut": bool, "skip_in": [earlier cells
feeding this one]}``. The discrete generator is ``AutoGANCell``s in a ``CellGenerator``; the
search trains ``SharedGenerator``, every option of every cell with its own weights.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from ...search.genotype import GenotypeError
from ..genotypes import ConventionalGenotype, check
from .cells import NUM_CELLS, CellGenerator, bottom_width

# AutoGAN's encoding (models_search/building_blocks_search.py)
AUTOGAN_CONV = ("post", "pre")
AUTOGAN_NORM = ("none", "bn", "in")
AUTOGAN_UP = ("bilinear", "nearest", "deconv")
KEYS = ("cells",)  # of the genotype body


def validate(body, where):
    """The ``autogan`` body (see the module docstring)."""
    cells = body.get("cells")
    check(isinstance(cells, list) and len(cells) == NUM_CELLS, where, f"\"cells\" must be a list of {NUM_CELLS} cells")
    for c, cell in enumerate(cells, 1):
        check(isinstance(cell, dict), where, f"cell {c} must be an object")
        for key, valid in (("conv", AUTOGAN_CONV), ("norm", AUTOGAN_NORM), ("up", AUTOGAN_UP)):
            check(cell.get(key) in valid, where, f"cell {c}: {key} must be one of {', '.join(valid)}, "
                                                 f"got {cell.get(key)!r}")
        check(isinstance(cell.get("shortcut"), bool), where, f"cell {c}: shortcut must be true or false")
        skip = cell.get("skip_in", [])
        check(isinstance(skip, list) and all(s in range(1, c) for s in skip) and len(set(skip)) == len(skip),
              where, f"cell {c}: skip_in must list distinct earlier cells (1..{c - 1}), got {skip!r}")


# ---------------------------------------------------------------------------- AutoGAN's code

def autogan_from_code(code, resolution=32, source=None):
    """AutoGAN's 14 integers: per cell [conv (0 post, 1 pre), norm (0 none, 1 bn, 2 in),
    up (0 bilinear, 1 nearest, 2 deconv), shortcut (0, 1)], cell 2 adds a skip bit (from cell 1),
    cell 3 a skip number whose bit 0 means from cell 2 and bit 1 from cell 1."""
    code = [int(c) for c in code]
    if len(code) != 14:
        raise GenotypeError(f"an AutoGAN code has 14 integers, got {len(code)}")
    if min(code) < 0:
        raise GenotypeError(f"AutoGAN code {code}: values must be non-negative")
    cells, i = [], 0
    for c in range(1, NUM_CELLS + 1):
        conv, norm, up, shortcut = code[i:i + 4]
        i += 4
        skip = []
        if c == 2:
            skip = [1] if code[i] else []
            i += 1
        elif c == 3:
            skip = [s for s, bit in ((1, 2), (2, 1)) if code[i] & bit]
            i += 1
        try:
            cells.append({"conv": AUTOGAN_CONV[conv], "norm": AUTOGAN_NORM[norm], "up": AUTOGAN_UP[up],
                          "shortcut": bool(shortcut), "skip_in": skip})
        except IndexError:
            raise GenotypeError(f"AutoGAN code {code}: cell {c} has a value out of range") from None
    if code[8] not in (0, 1) or code[13] not in range(4) or any(code[k] not in (0, 1) for k in (3, 7, 12)):
        raise GenotypeError(f"AutoGAN code {code}: skip or shortcut value out of range")
    return ConventionalGenotype("autogan", resolution, {"cells": cells}, source=source).validate()


def autogan_code(genotype):
    code = []
    for c, cell in enumerate(genotype.body["cells"], 1):
        code += [AUTOGAN_CONV.index(cell["conv"]), AUTOGAN_NORM.index(cell["norm"]), AUTOGAN_UP.index(cell["up"]),
                 int(cell["shortcut"])]
        if c == 2:
            code.append(int(1 in cell["skip_in"]))
        elif c == 3:
            code.append(2 * (1 in cell["skip_in"]) + (2 in cell["skip_in"]))
    return code


PUBLISHED = {
    "autogan_a": lambda: autogan_from_code([1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3], source={"published": "AutoGAN-A"}),
    "autogan_b": lambda: autogan_from_code([1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 3], source={"published": "AutoGAN-B"}),
    "autogan_c": lambda: autogan_from_code([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3], source={"published": "AutoGAN-C"}),
}


# ---------------------------------------------------------------------------- the discrete network

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


def build_generator(body, resolution, gf_dim, latent_dim):
    cells = [AutoGANCell(gf_dim, cell["conv"], cell["norm"], cell["up"], cell["shortcut"], cell.get("skip_in", []),
                         cell_index=c) for c, cell in enumerate(body["cells"], 1)]
    return CellGenerator(resolution, gf_dim, latent_dim, cells)


# ---------------------------------------------------------------------------- the shared GAN of the search

# options per decision, per stage: conv, norm, up, shortcut (+ skip number from cell 2 on)
STAGE_CHOICES = ([len(AUTOGAN_CONV), len(AUTOGAN_NORM), len(AUTOGAN_UP), 2],
                 [len(AUTOGAN_CONV), len(AUTOGAN_NORM), len(AUTOGAN_UP), 2, 2],
                 [len(AUTOGAN_CONV), len(AUTOGAN_NORM), len(AUTOGAN_UP), 2, 4])


def space_size():
    """Number of AutoGAN architectures: the product of all decisions' options (373,248)."""
    return math.prod(math.prod(c) for c in STAGE_CHOICES)


def decode(code):
    """Cells (genotype dicts) of a full or partial code: 4, 9 or 14 integers."""
    code = [int(c) for c in code]
    if len(code) not in (4, 9, 14):
        raise ValueError(f"an AutoGAN prefix has 4, 9 or 14 integers, got {len(code)}")
    cells = len(code) // 5 + 1
    return autogan_from_code(code + [0] * (14 - len(code))).body["cells"][:cells]


def _up(x, mode, deconv):
    return deconv(x) if mode == "deconv" else F.interpolate(x, scale_factor=2, mode=mode)


class SharedCell(nn.Module):
    """Every option of one cell with its own weights (the authors' search Cell): a conv block per
    conv type and position with its BN, IN and (first block) deconv; shortcut deconv + 1x1 conv;
    per earlier cell a 1x1 conv and the deconvs that resize it. ``forward(x, skips, cell)`` takes
    the path ``cell`` (a genotype cell) chooses, as ``AutoGANCell`` of the same cell."""

    def __init__(self, channels, cell_index):
        super().__init__()
        self.blocks = nn.ModuleDict()
        for conv in AUTOGAN_CONV:
            for position in (1, 2):
                parts = {"conv": nn.Conv2d(channels, channels, 3, padding=1), "bn": nn.BatchNorm2d(channels),
                         "in": nn.InstanceNorm2d(channels)}
                if position == 1:
                    parts["deconv"] = nn.ConvTranspose2d(channels, channels, 2, stride=2)
                self.blocks[f"{conv}{position}"] = nn.ModuleDict(parts)
        self.deconv_sc = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.c_sc = nn.Conv2d(channels, channels, 1)
        self.skip_in_ops = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(1, cell_index))
        self.skip_deconvs = nn.ModuleList(
            nn.Sequential(*[nn.ConvTranspose2d(channels, channels, 2, stride=2) for _ in range(cell_index - s)])
            for s in range(1, cell_index))

    def _block(self, x, cell, position):
        block = self.blocks[f"{cell['conv']}{position}"]
        norm = (lambda h: h) if cell["norm"] == "none" else block[cell["norm"]]
        if cell["conv"] == "pre":
            h = F.relu(norm(x))
            return block["conv"](_up(h, cell["up"], block["deconv"]) if position == 1 else h)
        h = _up(x, cell["up"], block["deconv"]) if position == 1 else x
        return F.relu(norm(block["conv"](h)))

    def forward(self, x, skips, cell):
        h = self._block(x, cell, 1)
        skip_out = h
        for source in cell["skip_in"]:
            feature = skips[source - 1]
            if cell["up"] == "deconv":
                feature = self.skip_deconvs[source - 1](feature)
            else:
                feature = F.interpolate(feature, size=h.shape[-2:], mode=cell["up"])
            h = h + self.skip_in_ops[source - 1](feature)
        out = self._block(h, cell, 2)
        if cell["shortcut"]:
            out = out + self.c_sc(_up(x, cell["up"], self.deconv_sc))
        return skip_out, out


class SharedGenerator(nn.Module):
    """linear -> the cells of ``arch`` (1 to 3; the output doubles per cell) -> to_rgb."""

    def __init__(self, resolution, gf_dim, latent_dim):
        super().__init__()
        self.gf_dim, self.latent_dim, self.width = gf_dim, latent_dim, bottom_width(resolution)
        self.l1 = nn.Linear(latent_dim, self.width ** 2 * gf_dim)
        self.cells = nn.ModuleList(SharedCell(gf_dim, c) for c in (1, 2, 3))
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(gf_dim), nn.ReLU(), nn.Conv2d(gf_dim, 3, 3, padding=1), nn.Tanh())
        self.arch = None  # cells used when forward gets none

    def forward(self, z, arch=None):
        arch = arch if arch is not None else self.arch
        h = self.l1(z).view(-1, self.gf_dim, self.width, self.width)
        skips = []
        for module, cell in zip(self.cells, arch):
            skip, h = module(h, skips, cell)
            skips.append(skip)
        return self.to_rgb(h)
