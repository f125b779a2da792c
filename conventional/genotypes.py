"""Conventional genotypes: the envelope of ``stylenas.search.genotype`` (``format``, ``version``,
``search_space``, ``resolution``, ``arch_parameters``, ``source``) around a space-specific body.

This module knows no network family. Each one in ``conventional.spaces`` describes its own body
(its keys and a validator) and ``conventional/spaces/__init__.py`` puts them in ``SPACES`` and the
published architectures in ``PUBLISHED``; importing ``stylenas.conventional`` fills both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_path
from ..search.genotype import FORMAT, VERSION, GenotypeError, check_envelope, read_json

# search space -> (keys of its body, validator(body, where), optional keys); filled by conventional.spaces
SPACES = {}
# published genotype name -> a function returning it; filled by conventional.spaces
PUBLISHED = {}


def register_space(name, keys, validate, optional=()):
    """Make ``name`` a conventional search space whose body holds ``keys`` (and ``optional`` ones
    where given), checked by ``validate``."""
    SPACES[name] = (tuple(keys), validate, tuple(optional))


def check(condition, where, message):
    """The validators' one-line error: ``GenotypeError("<where>: <message>")`` unless ``condition``."""
    if not condition:
        raise GenotypeError(f"{where}: {message}")


@dataclass
class ConventionalGenotype:
    search_space: str
    resolution: int
    body: dict
    arch_parameters: dict | None = None
    source: dict | None = None

    def validate(self, where="genotype"):
        check(self.search_space in SPACES, where, f"unknown search space {self.search_space!r}; expected one of "
                                                   f"{', '.join(SPACES)}")
        check(isinstance(self.resolution, int) and self.resolution >= 8 and self.resolution % 8 == 0, where,
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
        body = {k: data[k] for k in SPACES[space][0] + SPACES[space][2] if k in data}
        return cls(space, data["resolution"], body,
                   data.get("arch_parameters"), data.get("source")).validate(where)

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path), where=str(path))


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
