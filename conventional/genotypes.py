"""Conventional genotypes: the envelope of ``stylenas.search.genotype`` (``format``, ``version``,
``search_space``, ``resolution``, ``arch_parameters``, ``source``) around a space-specific body.

``alphagan_conv`` (alphaGAN section 4.2, AutoGAN-style cells) has three cells, each
``{"up": [op, op], "normal": [op, op, op], "skip": [...]}``: up edge 0 makes node 1 from the
cell input, up edge 1 the shortcut node; normal edge 0 maps node 1 to node 2, edge 1 node 2
to the right input of the output, edge 2 the shortcut node to the left input; ``skip`` holds
the up op of each cross-cell skip (cell 2: from cell 1; cell 3: from cell 1 (x4), cell 2).

``autogan`` (Gong et al.; AutoGAN's 14-integer code) has three cells
``{"conv": "pre"|"post", "norm": "none"|"bn"|"in", "up": "bilinear"|"nearest"|"deconv",
"shortcut": bool, "skip_in": [earlier cells feeding this one]}``.

``degas`` (Doveh and Giryes, section 3.2) lists the kept feature-map inputs (conventional/degas.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_path
from ..search.genotype import FORMAT, VERSION, GenotypeError, check_envelope, read_json
from .ops import ALPHAGAN_NORMAL_OPS, ALPHAGAN_UP_OPS

# AutoGAN's encoding (models_search/building_blocks_search.py)
AUTOGAN_CONV = ("post", "pre")
AUTOGAN_NORM = ("none", "bn", "in")
AUTOGAN_UP = ("bilinear", "nearest", "deconv")
NUM_CELLS = 3


def _check(condition, where, message):
    if not condition:
        raise GenotypeError(f"{where}: {message}")


def _validate_alphagan(body, where):
    cells = body.get("cells")
    _check(isinstance(cells, list) and len(cells) == NUM_CELLS, where, f"\"cells\" must be a list of {NUM_CELLS} cells")
    for c, cell in enumerate(cells, 1):
        _check(isinstance(cell, dict), where, f"cell {c} must be an object")
        for key, count, valid in (("up", 2, ALPHAGAN_UP_OPS), ("normal", 3, ALPHAGAN_NORMAL_OPS),
                                  ("skip", c - 1, ALPHAGAN_UP_OPS)):
            ops = cell.get(key, [] if key == "skip" and c == 1 else None)
            _check(isinstance(ops, list) and len(ops) == count, where,
                   f"cell {c}: \"{key}\" must list {count} operations, got {ops!r}")
            for op in ops:
                _check(op in valid, where, f"cell {c}: {key} op {op!r} is not one of {', '.join(valid)}")


def _validate_autogan(body, where):
    cells = body.get("cells")
    _check(isinstance(cells, list) and len(cells) == NUM_CELLS, where, f"\"cells\" must be a list of {NUM_CELLS} cells")
    for c, cell in enumerate(cells, 1):
        _check(isinstance(cell, dict), where, f"cell {c} must be an object")
        for key, valid in (("conv", AUTOGAN_CONV), ("norm", AUTOGAN_NORM), ("up", AUTOGAN_UP)):
            _check(cell.get(key) in valid, where, f"cell {c}: {key} must be one of {', '.join(valid)}, "
                                                  f"got {cell.get(key)!r}")
        _check(isinstance(cell.get("shortcut"), bool), where, f"cell {c}: shortcut must be true or false")
        skip = cell.get("skip_in", [])
        _check(isinstance(skip, list) and all(s in range(1, c) for s in skip) and len(set(skip)) == len(skip),
               where, f"cell {c}: skip_in must list distinct earlier cells (1..{c - 1}), got {skip!r}")


def _validate_degas(body, where):
    from .degas import validate_nodes  # the DEGAS layout lives with its search space

    validate_nodes(body, where)


def _validate_agan(body, where):
    from .agan import validate_body  # AGAN's module layout lives with its searcher

    validate_body(body, where)


def _validate_dggan(body, where):
    from .dggan import validate_body  # the grown ProgGAN layout lives with its searcher

    validate_body(body, where)


# search space -> (keys of its body, validator); later searchers (agan, dggan) register here
SPACES = {
    "alphagan_conv": (("cells",), _validate_alphagan),
    "autogan": (("cells",), _validate_autogan),
    "degas": (("nodes", "normal_per_stage"), _validate_degas),
    "dggan": (("latent_dim", "channels", "stages"), _validate_dggan),
    "agan": (("generator", "discriminator"), _validate_agan),
}


@dataclass
class ConventionalGenotype:
    search_space: str
    resolution: int
    body: dict
    arch_parameters: dict | None = None
    source: dict | None = None

    def validate(self, where="genotype"):
        _check(self.search_space in SPACES, where, f"unknown search space {self.search_space!r}; expected one of "
                                                    f"{', '.join(SPACES)}")
        _check(isinstance(self.resolution, int) and self.resolution >= 8 and self.resolution % 8 == 0, where,
               f"resolution must be a multiple of 8 (three cells double a bottom width), got {self.resolution!r}")
        SPACES[self.search_space][1](self.body, where)
        return self

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, "search_space": self.search_space,
                "resolution": self.resolution, **self.body, "arch_parameters": self.arch_parameters,
                "source": self.source}

    def save(self, path):
        self.validate()
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data, where="genotype"):
        check_envelope(data, where)  # the envelope's versions; conventional bodies are alike
        space = data.get("search_space")
        if space not in SPACES:
            raise GenotypeError(f"{where}: search space {space!r} is not a conventional one "
                                f"({', '.join(SPACES)}); StyleGAN2 genotypes retrain with train-stylegan2")
        missing = [k for k in ("resolution",) + SPACES[space][0] if k not in data]
        if missing:
            raise GenotypeError(f"{where}: missing keys {', '.join(missing)}")
        return cls(space, data["resolution"], {k: data[k] for k in SPACES[space][0]},
                   data.get("arch_parameters"), data.get("source")).validate(where)

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path), where=str(path))


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


# ---------------------------------------------------------------------------- published genotypes

def _alphagan(cells, name):
    body = {"cells": [{"up": up, "normal": normal, "skip": skip} for up, normal, skip in cells]}
    return ConventionalGenotype("alphagan_conv", 32, body, source={"published": name})


# The authors' models/genotypes.py (yuesongtian/AlphaGAN), alphaGAN (l) and (s) of Table 2.
PUBLISHED = {
    "autogan_a": lambda: autogan_from_code([1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3], source={"published": "AutoGAN-A"}),
    "autogan_b": lambda: autogan_from_code([1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 3], source={"published": "AutoGAN-B"}),
    "autogan_c": lambda: autogan_from_code([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3], source={"published": "AutoGAN-C"}),
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


def load_genotype(name_or_path):
    """A published genotype by name (``autogan_a``, ``autogan_b``, ``autogan_c``, ``alphagan_l``,
    ``alphagan_s``) or a ``genotype.json`` of a conventional search."""
    if isinstance(name_or_path, ConventionalGenotype):
        return name_or_path
    if str(name_or_path) in PUBLISHED:
        return PUBLISHED[str(name_or_path)]().validate(str(name_or_path))
    path = Path(name_or_path)
    if not path.exists() and path.suffix != ".json":
        raise GenotypeError(f"{name_or_path}: neither a genotype file nor a published genotype "
                            f"({', '.join(PUBLISHED)})")
    return ConventionalGenotype.load(path)
