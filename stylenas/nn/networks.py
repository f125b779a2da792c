"""StyleGAN2 networks (Karras et al. 2020, config-e/f) with a searchable synthesis layout.

- ``MappingNetwork`` returns every intermediate latent W_1..W_8, not only the last, so each
  synthesis layer can take its own (alphaGAN's "dynamic W_i", section 6.2).
- ``SynthesisNetwork`` is the "skip" generator: constant 4x4 input, per resolution an
  up-sampling conv (``b{res}.conv0``), a normal conv (``b{res}.conv1``) and a toRGB whose
  outputs are upsampled and summed. The operation of every conv layer and the W index of
  every latent slot are parameters; the defaults (conv_3x3, deconv, W_8) give the
  original StyleGAN2, parameter for parameter.
- Latent slots (``w_slots``): with ``torgb_w="tied"`` (default) they are StyleGAN2's own w
  layout, one slot per conv layer plus one for the last toRGB, each other toRGB sharing the
  slot of the next block's up-sampling conv (alphaGAN Fig. 1: tRGB_k receives the latent of
  L_k); ``"free"`` gives every toRGB a slot of its own.
- ``Discriminator`` is StyleGAN2's residual discriminator with minibatch standard deviation.
- Reduced precision (stylegan2-ada-pytorch's ``num_fp16_res``): the blocks of the N highest
  resolutions (never 4x4) compute in ``fp16_dtype`` (bfloat16 or float16) with float32
  parameters; the toRGB sum, the mapping network and D's 4x4 epilogue stay float32. Use it
  with ``conv_clamp`` (NVlabs: 256) for float16.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import setup_filter, upsample2d
from .layers import (FIR, NORMAL_OPS, UP_OPS, EqualConv2d, EqualLinear, MinibatchStd, SynthesisLayer, ToRGB,
                     channel_count, normalize_2nd_moment)

NUM_WS = 8  # mapping layers, hence candidate latents W_1..W_8
ORIGINAL_OPS = {"normal": "conv_3x3", "up": "deconv"}


def check_resolution(resolution):
    if not (isinstance(resolution, int) and resolution >= 4 and resolution & (resolution - 1) == 0):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")


def synthesis_layout(resolution):
    """The style-consuming layers in forward order: [(name, kind)], kind in normal/up/torgb."""
    check_resolution(resolution)
    layout = []
    for res in block_resolutions(resolution):
        if res > 4:
            layout.append((f"b{res}.conv0", "up"))
        layout.append((f"b{res}.conv1", "normal"))
        layout.append((f"b{res}.torgb", "torgb"))
    return layout


TORGB_W = ("tied", "free")


def w_slots(resolution, torgb_w="tied"):
    """The latent slot of every style layer of ``synthesis_layout(resolution)``: layers in one
    slot read one latent (one W_i choice, one style-mixing source).

    "tied": StyleGAN2's w layout (2 log2(R) - 2 slots): conv layers take consecutive slots and
    each toRGB the slot of the conv that follows it, the last toRGB one of its own.
    "free": one slot per style layer."""
    if torgb_w not in TORGB_W:
        raise ValueError(f"torgb_w must be one of {', '.join(TORGB_W)}, got {torgb_w!r}")
    layout = synthesis_layout(resolution)
    if torgb_w == "free":
        return list(range(len(layout)))
    slots, next_slot = [], 0
    for _, kind in layout:
        slots.append(next_slot)  # a toRGB takes the slot the next conv will take
        if kind != "torgb":
            next_slot += 1
    return slots


def reduced_precision_from(resolution, num_fp16_res):
    """The lowest block resolution computed in reduced precision when the ``num_fp16_res`` highest
    are (NVlabs: never below 8x8); above ``resolution`` when none is."""
    if not num_fp16_res:
        return resolution * 2
    return max(2 ** (int(math.log2(resolution)) + 1 - num_fp16_res), 8)


def block_resolutions(resolution):
    return [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]


class MappingNetwork(nn.Module):
    """z -> W_1..W_8: pixel norm, then 8 lrelu layers with lr multiplier 0.01.

    Keeps a running mean of every W_i (``w_avg`` [8, w_dim]) for the truncation trick.
    """

    def __init__(self, z_dim=512, w_dim=512, num_layers=NUM_WS, lr_mul=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.fcs = nn.ModuleList(EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation="lrelu")
                                 for i in range(num_layers))
        self.register_buffer("w_avg", torch.zeros([num_layers, w_dim]))

    def forward(self, z, truncation_psi=1.0, update_w_avg=None):
        """Returns [N, num_layers, w_dim]: W_i is ws[:, i - 1]."""
        x = normalize_2nd_moment(z.to(torch.float32))
        ws = []
        for fc in self.fcs:
            x = fc(x)
            ws.append(x)
        ws = torch.stack(ws, dim=1)
        if self.training if update_w_avg is None else update_w_avg:
            self.w_avg.copy_(ws.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1:
            ws = self.w_avg.lerp(ws, truncation_psi)
        return ws


class SynthesisNetwork(nn.Module):
    """The skip-architecture synthesis network; `ops` maps layer names of
    ``synthesis_layout(resolution)`` to operations and `w_indices` maps style-layer names to
    0-based W indices (missing entries take the original StyleGAN2 choice; layers sharing a
    latent slot, see ``w_slots``, must agree)."""

    def __init__(self, resolution, ops=None, w_indices=None, w_dim=512, img_channels=3, channel_base=32768,
                 channel_max=512, channel_mult=1.0, conv_clamp=None, torgb_w="tied", num_fp16_res=0,
                 fp16_dtype=torch.bfloat16, mapping_layers=NUM_WS):
        super().__init__()
        self.resolution, self.w_dim, self.img_channels = resolution, w_dim, img_channels
        self.mapping_layers = mapping_layers
        self.fp16_resolution, self.fp16_dtype = reduced_precision_from(resolution, num_fp16_res), fp16_dtype
        self.layout = synthesis_layout(resolution)
        self.torgb_w = torgb_w
        self.w_slots = w_slots(resolution, torgb_w)  # per style layer
        ops, w_indices = dict(ops or {}), dict(w_indices or {})
        unknown = (set(ops) | set(w_indices)) - {name for name, _ in self.layout}
        if unknown:
            raise ValueError(f"unknown synthesis layers {sorted(unknown)} for resolution {resolution}")
        channels = {res: channel_count(res, channel_base, channel_max, channel_mult)
                    for res in block_resolutions(resolution)}
        self.channels = channels
        self.const = nn.Parameter(torch.randn([channels[4], 4, 4]))
        self.register_buffer("resample_filter", setup_filter(FIR), persistent=False)
        self.blocks = nn.ModuleDict()
        for name, kind in self.layout:
            block, layer = name.split(".")
            res = int(block[1:])
            if block not in self.blocks:
                self.blocks[block] = nn.Module()
            if kind == "torgb":
                module = self.make_torgb(name, channels[res], img_channels, w_dim, conv_clamp)
            else:
                in_ch = channels[res // 2] if kind == "up" else channels[res]
                op = ops.get(name, ORIGINAL_OPS[kind])
                valid = UP_OPS if kind == "up" else NORMAL_OPS
                if op not in valid:
                    raise ValueError(f"{name} is a {kind} layer: op must be one of {', '.join(valid)}, got {op!r}")
                module = self.make_conv(name, kind, op, in_ch, channels[res], w_dim, res, conv_clamp)
            setattr(self.blocks[block], layer, module)
        self.w_indices = self.resolve_w_indices(w_indices)  # per style layer, 0-based: W_{i + 1}

    def resolve_w_indices(self, w_indices):
        """The W index of every style layer: the one given for its slot, else W_8. With a mapping
        network of another depth (imported NVlabs/rosinality networks) only W_8, read as "the last
        W", is allowed: W_1..W_7 are the outputs of an 8-layer network."""
        per_slot = {}
        for (name, _), slot in zip(self.layout, self.w_slots):
            if name not in w_indices:
                continue
            index = w_indices[name]
            if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < NUM_WS):
                raise ValueError(f"{name}: W index must be in 0..{NUM_WS - 1} (W_1..W_{NUM_WS}), got {index!r}")
            if self.mapping_layers != NUM_WS and index != NUM_WS - 1:
                raise ValueError(f"{name} reads W_{index + 1}, but the mapping network has {self.mapping_layers} "
                                 f"layers, not {NUM_WS}: only genotypes that read the last W everywhere (the "
                                 f"stylegan2 genotype) can use another mapping depth")
            index = self.mapping_layers - 1 if index == NUM_WS - 1 else index
            other, other_index = per_slot.setdefault(slot, (name, index))
            if other_index != index:
                raise ValueError(f"{other} and {name} read one latent (torgb_w={self.torgb_w!r}), so their W "
                                 f"indices must agree; got {other_index} and {index}")
        return [per_slot.get(slot, (None, self.mapping_layers - 1))[1] for slot in self.w_slots]

    # The supernet overrides these hooks to put mixed layers and mixed latents in place of
    # discrete ones.
    def make_conv(self, name, kind, op, in_channels, out_channels, w_dim, resolution, conv_clamp):
        return SynthesisLayer(in_channels, out_channels, w_dim, resolution, op, conv_clamp)

    def make_torgb(self, name, in_channels, img_channels, w_dim, conv_clamp):
        return ToRGB(in_channels, img_channels, w_dim, conv_clamp)

    def select_w(self, index, ws):
        """The latent of style layer `index` from its mapping outputs ws [N, mapping_layers, w_dim]."""
        return ws[:, self.w_indices[index]]

    def layer_kwargs(self, index):
        """Extra arguments of style layer `index` (the supernet passes mixing weights)."""
        return {}

    @property
    def num_style_layers(self):
        return len(self.layout)

    @property
    def num_ws(self):
        """Latent slots: 2 log2(R) - 2 with tied toRGB latents (StyleGAN2's num_ws)."""
        return self.w_slots[-1] + 1

    def forward(self, ws, noise_mode="random", fused=None, noise=None):
        """ws: mapping outputs [N, 8, w_dim], or per latent slot [N, num_ws, 8, w_dim] (style
        mixing; ``w_slots`` says which layers read a slot). Returns images [N, img_channels, R, R],
        roughly in [-1, 1]. ``noise``: optional noise inputs, one [N, 1, R, R] tensor per conv layer
        of ``layout`` (None for toRGB layers), in place of drawing them."""
        if noise is not None and len(noise) != len(self.layout):
            raise ValueError(f"noise has {len(noise)} entries, the network {len(self.layout)} style layers")
        if ws.ndim == 3:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1, -1)
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"ws has {ws.shape[1]} latent slots, the network {self.num_ws}")
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        img = None
        for index, (name, kind) in enumerate(self.layout):
            block, layer = name.split(".")
            module = getattr(self.blocks[block], layer)
            w = self.select_w(index, ws[:, self.w_slots[index]])
            x = x.to(self.fp16_dtype if int(block[1:]) >= self.fp16_resolution else torch.float32)
            if kind == "torgb":
                y = module(x, w, fused=fused).to(torch.float32)  # the image sum stays in float32
                img = y if img is None else upsample2d(img, self.resample_filter) + y
            else:
                extra = {"noise": noise[index]} if noise is not None else {}
                x = module(x, w, noise_mode=noise_mode, fused=fused, **extra, **self.layer_kwargs(index))
        return img


class Generator(nn.Module):
    """Mapping network + synthesis network."""

    def __init__(self, resolution, z_dim=512, w_dim=512, mapping_lr_mul=0.01, mapping_layers=NUM_WS,
                 **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.w_dim, self.resolution = z_dim, w_dim, resolution
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, lr_mul=mapping_lr_mul)
        self.synthesis = self.make_synthesis(resolution, w_dim=w_dim, mapping_layers=mapping_layers,
                                             **synthesis_kwargs)

    def make_synthesis(self, resolution, **kwargs):
        return SynthesisNetwork(resolution, **kwargs)

    def forward(self, z, truncation_psi=1.0, noise_mode="random", fused=None):
        return self.synthesis(self.mapping(z, truncation_psi=truncation_psi), noise_mode=noise_mode, fused=fused)


class DiscriminatorBlock(nn.Module):
    """Residual block: conv3x3, conv3x3 with down-sampling, plus a 1x1 down-sampling skip."""

    def __init__(self, in_channels, out_channels, img_channels, first, conv_clamp=None):
        super().__init__()
        self.fromrgb = EqualConv2d(img_channels, in_channels, 1, activation="lrelu", conv_clamp=conv_clamp) \
            if first else None
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x):
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        gain = math.sqrt(0.5)  # keeps the sum of the two branches at unit variance
        return self.skip(x, gain=gain) + self.conv1(self.conv0(x), gain=gain)


class Discriminator(nn.Module):
    def __init__(self, resolution, img_channels=3, channel_base=32768, channel_max=512, channel_mult=1.0,
                 mbstd_group_size=4, mbstd_num_channels=1, conv_clamp=None, num_fp16_res=0,
                 fp16_dtype=torch.bfloat16):
        super().__init__()
        check_resolution(resolution)
        self.resolution, self.img_channels = resolution, img_channels
        self.fp16_resolution, self.fp16_dtype = reduced_precision_from(resolution, num_fp16_res), fp16_dtype
        ch = {res: channel_count(res, channel_base, channel_max, channel_mult) for res in block_resolutions(resolution)}
        self.blocks = nn.ModuleDict({
            f"b{res}": DiscriminatorBlock(ch[res], ch[res // 2], img_channels, first=(res == resolution),
                                          conv_clamp=conv_clamp)
            for res in reversed(block_resolutions(resolution)) if res > 4})
        c4 = ch[4]
        self.fromrgb4 = EqualConv2d(img_channels, c4, 1, activation="lrelu") if resolution == 4 else None
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels)
        self.conv = EqualConv2d(c4 + mbstd_num_channels, c4, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, img):
        """img [N, C, R, R] in [-1, 1] -> logits [N, 1]."""
        if img.shape[1:] != (self.img_channels, self.resolution, self.resolution):
            raise ValueError(f"Discriminator expects [N, {self.img_channels}, {self.resolution}, {self.resolution}] "
                             f"images, got {tuple(img.shape)}")
        x = img if self.fromrgb4 is None else self.fromrgb4(img)
        for name, block in self.blocks.items():
            x = block(x.to(self.fp16_dtype if int(name[1:]) >= self.fp16_resolution else torch.float32))
        x = self.conv(self.mbstd(x.to(torch.float32)))
        return self.out(self.fc(x.flatten(1)))
