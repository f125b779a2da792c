"""Genotypes: the plain, readable record handed from a search to its retraining.

One JSON file per searched architecture (DESIGN.md). For the StyleGAN2 search space it lists
every style layer of the synthesis network in forward order with the chosen operation (conv
layers) and the chosen latent W_i (1-based, as in the paper: ``"w": 8`` is the mapping
network's last output):

    {"format": "stylenas-genotype", "version": 2, "search_space": "stylegan2",
     "paradigm": "micro+dynamic_w", "torgb_w": "tied", "resolution": 256, "space_size": 39582418599936,
     "channels": {"channel_base": 32768, "channel_max": 512, "channel_mult": 0.125},
     "layers": [{"name": "b4.conv1", "op": "conv_5x5", "w": 8, "op_weights": {...}, "w_weights": [...]},
                {"name": "b4.torgb", "w": 6}, {"name": "b8.conv0", "op": "nearest_conv", "w": 6, ...}, ...],
     "arch_parameters": {...raw alphas and betas...}, "source": {...the search run...}}

``torgb_w``: "tied" (the paper's space and StyleGAN2's w layout) means every toRGB but the
last reads the latent of the next block's up-sampling conv, so its ``w`` must equal that
conv's; "free" means every toRGB chose its own. Version 1 files have no ``torgb_w``: they are
read as "free" when their paradigm has dynamic W (version-1 searches gave every toRGB its own
beta) or when a toRGB's w differs from that conv's, and as "tied" otherwise (all W_8 or
consistent: both readings are the same network and tied is StyleGAN2's layout).

``op_weights`` / ``w_weights`` (the softmax weights the choice was derived from),
``space_size`` (the number of architectures of the space, ``space_size()``),
``arch_parameters`` and ``source`` are informative; retraining reads name, op, w and torgb_w.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_path
from ..nn.layers import NORMAL_OPS, UP_OPS
from ..nn.networks import NUM_WS, ORIGINAL_OPS, TORGB_W, Generator, check_resolution, synthesis_layout, w_slots

FORMAT = "stylenas-genotype"
VERSION = 2  # 2: "torgb_w" (1 had untied toRGB latents in dynamic-W searches)
READABLE_VERSIONS = (1, 2)
PARADIGMS = ("original", "micro", "micro+dynamic_w", "macro", "macro+dynamic_w")
NUM_OPS = {"normal": len(NORMAL_OPS), "up": len(UP_OPS)}
STYLEGAN2_CHANNELS = {"channel_base": 32768, "channel_max": 512, "channel_mult": 1.0}  # config-f


class GenotypeError(ValueError):
    """A genotype file or record that does not describe a valid architecture."""


def space_size(resolution, paradigm, torgb_w="tied"):
    """The number of architectures in a StyleGAN2 search space (alphaGAN section 4.2, Table 8).

    `paradigm` is one of PARADIGMS, as genotype.json names it: "original" (one architecture),
    "micro" (one normal and one up choice shared by all blocks), "macro" (a choice per conv
    layer), each with "+dynamic_w" for a W_1..W_8 choice per latent slot; `torgb_w` ("tied"
    or "free", see ``stylenas.nn.networks.w_slots``) sets the slots. Paper: macro+dynamic_w
    at 1024 px is 8^18 x 3^17; micro+dynamic_w at 128 px is 9 x 8^12."""
    if paradigm not in PARADIGMS:
        raise ValueError(f"paradigm must be one of {', '.join(PARADIGMS)}, got {paradigm!r}")
    slots = w_slots(resolution, torgb_w)  # also checks the resolution and torgb_w
    kinds = [kind for _, kind in synthesis_layout(resolution) if kind != "torgb"]
    space, _, dynamic = paradigm.partition("+")
    size = 1
    if space == "micro":
        for kind in set(kinds):
            size *= NUM_OPS[kind]
    elif space == "macro":
        for kind in kinds:
            size *= NUM_OPS[kind]
    if dynamic:
        size *= NUM_WS ** len(set(slots))
    return size



def read_json(path):
    """The JSON object of a genotype file; GenotypeError naming the file when missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise GenotypeError(f"{path}: genotype file not found")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GenotypeError(f"{path}: not valid JSON ({error})") from None


def check_envelope(data, where="genotype"):
    """The envelope every StyleNAS genotype shares (StyleGAN2 and conventional): a JSON object with
    our ``format`` and a readable ``version``; raises GenotypeError naming ``where``."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GenotypeError(f"{where}: not a StyleNAS genotype (expected a JSON object with "
                            f"\"format\": \"{FORMAT}\")")
    if data.get("version") not in READABLE_VERSIONS:
        raise GenotypeError(f"{where}: genotype version {data.get('version')!r}; this StyleNAS reads "
                            f"{', '.join(map(str, READABLE_VERSIONS))}")

@dataclass
class Genotype:
    resolution: int
    layers: list[dict]  # [{"name", "op" (conv layers), "w" (1..8)}, ...] in forward order
    paradigm: str = "original"
    search_space: str = "stylegan2"
    channels: dict = field(default_factory=lambda: dict(STYLEGAN2_CHANNELS))
    arch_parameters: dict | None = None
    source: dict | None = None
    torgb_w: str = "tied"  # see the module docstring

    # ------------------------------------------------------------------ construction

    @classmethod
    def original(cls, resolution, channels=None):
        """StyleGAN2 itself: conv_3x3 and deconv everywhere, W_8 for every layer."""
        check_resolution(resolution)
        layers = [{"name": name, **({"op": ORIGINAL_OPS[kind]} if kind != "torgb" else {}), "w": NUM_WS}
                  for name, kind in synthesis_layout(resolution)]
        return cls(resolution, layers, "original", channels=dict(channels or STYLEGAN2_CHANNELS))

    # ------------------------------------------------------------------ use

    def synthesis_kwargs(self):
        """Arguments of ``stylenas.nn.SynthesisNetwork`` / ``Generator`` for this architecture."""
        return {"ops": {layer["name"]: layer["op"] for layer in self.layers if "op" in layer},
                "w_indices": {layer["name"]: layer["w"] - 1 for layer in self.layers}, "torgb_w": self.torgb_w}

    @property
    def space_size(self):
        return space_size(self.resolution, self.paradigm, self.torgb_w)

    def build_generator(self, z_dim=512, w_dim=512, **overrides):
        """The discrete generator; `overrides` replace channel settings (retraining at full size)."""
        channels = {**self.channels, **overrides}
        return Generator(self.resolution, z_dim=z_dim, w_dim=w_dim, **channels, **self.synthesis_kwargs())

    def summary(self):
        """One line per layer: name, op, W index."""
        return "\n".join(f"{layer['name']:<12}{layer.get('op', 'torgb'):<15}W_{layer['w']}" for layer in self.layers)

    # ------------------------------------------------------------------ validation and files

    def validate(self, where="genotype"):
        if self.search_space != "stylegan2":
            raise GenotypeError(f"{where}: unknown search space {self.search_space!r}; expected 'stylegan2'")
        if self.paradigm not in PARADIGMS:
            raise GenotypeError(f"{where}: unknown paradigm {self.paradigm!r}; expected one of {', '.join(PARADIGMS)}")
        if self.torgb_w not in TORGB_W:
            raise GenotypeError(f"{where}: torgb_w must be one of {', '.join(TORGB_W)}, got {self.torgb_w!r}")
        try:
            layout = synthesis_layout(self.resolution)
        except ValueError as error:
            raise GenotypeError(f"{where}: {error}") from None
        if len(self.layers) != len(layout):
            raise GenotypeError(f"{where}: {len(self.layers)} layers, but a {self.resolution}px StyleGAN2 synthesis "
                                f"network has {len(layout)} style layers ({', '.join(n for n, _ in layout)})")
        for layer, (name, kind) in zip(self.layers, layout):
            if not isinstance(layer, dict) or layer.get("name") != name:
                got = layer.get("name") if isinstance(layer, dict) else layer
                raise GenotypeError(f"{where}: expected layer {name!r} at this position, got {got!r}")
            if kind != "torgb":
                valid = UP_OPS if kind == "up" else NORMAL_OPS
                if layer.get("op") not in valid:
                    raise GenotypeError(f"{where}: {name} is a{'n up' if kind == 'up' else ' normal'} layer; op must "
                                        f"be one of {', '.join(valid)}, got {layer.get('op')!r}")
            w = layer.get("w")
            if not (isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= NUM_WS):
                raise GenotypeError(f"{where}: {name}: w must be an integer in 1..{NUM_WS} (W_1..W_{NUM_WS}), got {w!r}")
        shared = {}
        for layer, slot in zip(self.layers, w_slots(self.resolution, self.torgb_w)):
            first = shared.setdefault(slot, layer)
            if first["w"] != layer["w"]:
                raise GenotypeError(f"{where}: {first['name']} and {layer['name']} read one latent (torgb_w "
                                    f"'{self.torgb_w}'), so their w must agree; got {first['w']} and {layer['w']}")
        for key in ("channel_base", "channel_max", "channel_mult"):
            if not isinstance(self.channels.get(key), (int, float)) or self.channels[key] <= 0:
                raise GenotypeError(f"{where}: channels.{key} must be a positive number, got {self.channels.get(key)!r}")
        return self

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, "search_space": self.search_space, "paradigm": self.paradigm,
                "torgb_w": self.torgb_w, "resolution": self.resolution, "space_size": self.space_size,
                "channels": self.channels, "layers": self.layers, "arch_parameters": self.arch_parameters,
                "source": self.source}

    def save(self, path):
        """Write atomically (temporary file + rename): never a half-written genotype."""
        self.validate()
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data, where="genotype"):
        check_envelope(data, where)
        missing = [k for k in ("search_space", "resolution", "layers") if k not in data]
        if missing:
            raise GenotypeError(f"{where}: missing keys {', '.join(missing)}")
        if not isinstance(data["layers"], list):
            raise GenotypeError(f"{where}: \"layers\" must be a list")
        if data["version"] == 1:
            torgb_w = "free" if "dynamic_w" in str(data.get("paradigm")) else "tied"
        elif "torgb_w" not in data:
            raise GenotypeError(f"{where}: missing key torgb_w ('tied' or 'free')")
        else:
            torgb_w = data["torgb_w"]
        genotype = cls(resolution=data["resolution"], layers=data["layers"], paradigm=data.get("paradigm", "original"),
                       search_space=data["search_space"], channels=dict(data.get("channels") or STYLEGAN2_CHANNELS),
                       arch_parameters=data.get("arch_parameters"), source=data.get("source"), torgb_w=torgb_w)
        if data["version"] == 1 and torgb_w == "tied":
            try:
                genotype.validate(where)
            except GenotypeError:  # a hand-written version-1 file with untied toRGB latents
                genotype.torgb_w = "free"
        return genotype.validate(where)

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path), where=str(path))


def load_genotype(name_or_path, resolution=None):
    """A Genotype from a genotype file or a name: ``stylegan2`` (the original architecture; needs
    `resolution`, e.g. the data's) or a published architecture of ``published.PUBLISHED_NAMES``
    (``alphagan_celeba128``, ``alphagan_church256``, ``alphagan_ffhq1024``: the alphaGAN paper's
    Table 9). A Genotype passes through."""
    from .published import PUBLISHED_NAMES, table9_genotype  # published builds on this module

    if isinstance(name_or_path, Genotype):
        return name_or_path
    name = str(name_or_path)
    if name == "stylegan2":
        if resolution is None:
            raise GenotypeError("genotype 'stylegan2' (the original architecture) needs a resolution")
        try:
            return Genotype.original(resolution)
        except ValueError as error:
            raise GenotypeError(f"genotype 'stylegan2': {error}") from None
    if name in PUBLISHED_NAMES:
        return table9_genotype(name)
    path = Path(name)
    if not path.exists() and path.suffix != ".json":
        raise GenotypeError(f"{name}: neither a genotype file nor a named genotype (stylegan2, "
                            f"{', '.join(PUBLISHED_NAMES)})")
    return Genotype.load(path)
