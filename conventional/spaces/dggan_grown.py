"""DGGAN's networks (Liu, Zhang, Deng and Soatto, AAAI 2021, section "Dynamically Grown GAN"):
ProgGAN generators and discriminators grown from d0 = 8 px, and the actions that grow them (the
search: ``conventional.searchers.dggan``).

An action applied to a parent:

- grow G by one convolution (kernel {3, 7}, filters {32, 64, 128, 256, 512, 1024}, resolution
  kept), inserted before the last convolution of G's newest resolution stage (G's growing head);
- grow D likewise, inserted after the first convolution of D's newest stage (D's growing head);
- double the resolution of both with ProgGAN's fade-in block: during the child's training the
  weight alpha of the new high-resolution path rises from 0 to 1 and the old path (up-sampled
  toRGB of the parent's output in G, down-sampled image into the parent's fromRGB in D) fades out.

A child inherits every parent tensor of the same name (the toRGB/fromRGB of a doubled parent are
renamed to the fading ``*_prev`` layers); a tensor whose shape changed because the layer before
it grew (the input width of G's last or D's next convolution) inherits the overlapping block;
new layers are random.

Genotype body (search space ``dggan``): ``latent_dim``, ``channels`` (the feature maps of every
stage the search may reach) and ``stages``, per resolution from 8 px ``{"g": [[kernel, filters],
...], "d": [...]}``, the grown convolutions in the order they were added; ``base_net`` (optional,
``BASE_NETS``): which ProgGAN implementation the layers follow, ``proggan`` when absent (genotypes
written before the field existed were built that way).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...search.genotype import GenotypeError

D0 = 8  # base resolution
KERNELS = (3, 7)
FILTERS = (32, 64, 128, 256, 512, 1024)
KEYS = ("latent_dim", "channels", "stages")  # of the genotype body
OPTIONAL_KEYS = ("base_net",)
# The ProgGAN the base networks follow. "gan_zoo": facebookresearch/pytorch_GAN_zoo, the PyTorch
# implementation the paper's numbers came from (its footnote 1): He's gain sqrt(2) in every layer and
# its minibatch stddev (consecutive groups, unbiased variance). "proggan": tkarras/
# progressive_growing_of_gans, the authors' TF code: gain 1 in G's toRGB and D's output, sqrt(2)/4 in
# G's 4x4 dense, strided groups and biased variance in the minibatch stddev.
BASE_NETS = ("gan_zoo", "proggan")
DEFAULT_BASE_NET = "gan_zoo"  # new searches
LEGACY_BASE_NET = "proggan"  # a body without ``base_net``


def proggan_channels(resolution, fmap_base=16384, fmap_max=512):
    """ProgGAN's feature maps at a resolution (512 up to 32 px, then halving)."""
    return min(fmap_max, fmap_base // resolution)


# ---------------------------------------------------------------------------- genotype

def stage_resolutions(body):
    return [D0 * 2 ** s for s in range(len(body["stages"]))]


def base_body(latent_dim, channels, base_net=DEFAULT_BASE_NET):
    """The ProgGAN base networks at d0 = 8 px; ``channels`` lists the feature maps of every stage
    the search may reach (8, 16, 32 px, ...); ``base_net``: one of ``BASE_NETS``."""
    if base_net not in BASE_NETS:
        raise ValueError(f"base_net must be one of {', '.join(BASE_NETS)}, got {base_net!r}")
    return {"latent_dim": int(latent_dim), "channels": [int(c) for c in channels], "stages": [{"g": [], "d": []}],
            "base_net": base_net}


def base_net_of(body):
    return body.get("base_net", LEGACY_BASE_NET)


def validate(body, where):
    """The ``dggan`` genotype body (``build_networks`` checks its resolution against the data)."""
    def check(condition, message):
        if not condition:
            raise GenotypeError(f"{where}: {message}")

    check(isinstance(body.get("latent_dim"), int) and body["latent_dim"] > 0, "latent_dim must be a positive integer")
    check(base_net_of(body) in BASE_NETS, f"base_net must be one of {', '.join(BASE_NETS)}, got "
                                          f"{body.get('base_net')!r}")
    stages, channels = body.get("stages"), body.get("channels")
    check(isinstance(stages, list) and stages, "\"stages\" must list the resolution stages (8 px first)")
    check(isinstance(channels, list) and len(channels) >= len(stages)
          and all(isinstance(c, int) and c > 0 for c in channels),
          "\"channels\" must give a positive width for every stage")
    for s, stage in enumerate(stages):
        check(isinstance(stage, dict), f"stage {s} must be an object with \"g\" and \"d\"")
        for net in ("g", "d"):
            layers = stage.get(net)
            check(isinstance(layers, list) and all(
                isinstance(layer, list) and len(layer) == 2 and layer[0] in (1, 3, 5, 7) and isinstance(layer[1], int)
                and layer[1] > 0 for layer in layers),
                f"stage {s}: \"{net}\" must list grown convolutions as [kernel (odd, <= 7), filters]")


# ---------------------------------------------------------------------------- ProgGAN layers

HE_GAIN = math.sqrt(2)  # He's constant for (leaky) ReLU layers: weights scaled by sqrt(2 / fan_in)
# the gains of the three layers where the implementations differ (every other layer: HE_GAIN)
GAINS = {
    # pytorch_GAN_zoo custom_layers.py: every equalised layer scales by getLayerNormalizationFactor
    "gan_zoo": {"g_input": HE_GAIN, "to_rgb": HE_GAIN, "d_out": HE_GAIN},
    # progressive_growing_of_gans networks.py G_paper / D_paper
    "proggan": {"g_input": HE_GAIN / 4, "to_rgb": 1.0, "d_out": 1.0},
}


class EqualConv2d(nn.Module):
    """Convolution with ProgGAN's equalised learning rate: weights N(0, 1), scaled at run time by
    ``gain / sqrt(fan_in)`` (He's constant for ``gain`` = sqrt(2)), biases 0."""

    def __init__(self, in_channels, out_channels, kernel_size, gain=HE_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale, self.padding = gain * (in_channels * kernel_size ** 2) ** -0.5, kernel_size // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_features, out_features, gain=HE_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain * in_features ** -0.5

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x):
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class GConv(nn.Module):
    """G's conv: conv, leaky ReLU 0.2, pixel norm."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size)

    def forward(self, x):
        return pixel_norm(F.leaky_relu(self.conv(x), 0.2))


class DConv(GConv):
    """D's conv: conv, leaky ReLU 0.2."""

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.2)


class Stage(nn.Module):
    """One resolution: ``first`` conv, the grown convs, ``last`` conv. G applies ``grown`` in
    order (the newest sits before ``last``); D applies it newest first (right after ``first``)."""

    def __init__(self, layer, in_channels, channels, out_channels, grown, newest_first):
        super().__init__()
        self.newest_first = newest_first
        self.first = layer(in_channels, channels, 3)
        widths = [channels]
        order = list(reversed(grown)) if newest_first else list(grown)
        built = []
        for kernel, filters in order:  # forward order
            built.append(layer(widths[-1], filters, kernel))
            widths.append(filters)
        self.grown = nn.ModuleList(reversed(built) if newest_first else built)  # creation order
        self.last = layer(widths[-1], out_channels, 3)

    def forward(self, x):
        x = self.first(x)
        for layer in (reversed(self.grown) if self.newest_first else self.grown):
            x = layer(x)
        return self.last(x)


class GrownGenerator(nn.Module):
    """ProgGAN generator of a ``dggan`` genotype body: pixel-normed z -> 4x4 block (dense, conv)
    -> one Stage per resolution (nearest up-sampling first) -> 1x1 toRGB (linear output, as
    ProgGAN). Equalised learning rate with the gains of the body's ``base_net`` (``GAINS``).
    ``fading``: the newest stage is a fade-in block, output alpha * toRGB(new) + (1 - alpha) *
    up(toRGB_prev(previous stage))."""

    def __init__(self, body, fading=False):
        super().__init__()
        ch, gains = body["channels"], GAINS[base_net_of(body)]
        self.latent_dim, self.fading, self.alpha = body["latent_dim"], fading and len(body["stages"]) > 1, 1.0
        self.resolution = stage_resolutions(body)[-1]
        self.input = EqualLinear(self.latent_dim, ch[0] * 16, gain=gains["g_input"])
        self.conv4 = GConv(ch[0], ch[0], 3)
        self.stages = nn.ModuleList(Stage(GConv, ch[max(s - 1, 0)], ch[s], ch[s], stage["g"], newest_first=False)
                                    for s, stage in enumerate(body["stages"]))
        self.to_rgb = EqualConv2d(ch[len(body["stages"]) - 1], 3, 1, gain=gains["to_rgb"])
        if self.fading:
            self.to_rgb_prev = EqualConv2d(ch[len(body["stages"]) - 2], 3, 1, gain=gains["to_rgb"])

    def forward(self, z):
        h = pixel_norm(F.leaky_relu(self.input(pixel_norm(z)), 0.2).view(len(z), -1, 4, 4))
        h = self.conv4(h)
        previous = None
        for stage in self.stages:
            previous = h
            h = stage(F.interpolate(h, scale_factor=2, mode="nearest"))
        out = self.to_rgb(h)
        if self.fading and self.alpha < 1:
            low = F.interpolate(self.to_rgb_prev(previous), scale_factor=2, mode="nearest")
            out = self.alpha * out + (1 - self.alpha) * low
        return out


def minibatch_stddev(x, group=4):
    """ProgGAN's minibatch standard deviation feature map (progressive_growing_of_gans: groups of up
    to 4 strided samples, sample i with i + n/group, ..., biased variance)."""
    n, _, h, w = x.shape
    group = next(g for g in range(min(group, n), 0, -1) if n % g == 0)
    y = x.view(group, -1, *x.shape[1:])
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n / group]
    return torch.cat([x, y.repeat(group).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


def minibatch_stddev_gan_zoo(x, group=4):
    """pytorch_GAN_zoo's variant (``mini_batch_stddev_module.py``): groups of ``min(group, n)``
    consecutive samples (the whole batch when that does not divide n), unbiased variance, a zero
    map when a group holds one sample."""
    n, _, h, w = x.shape
    group = min(group, n)
    if n % group:
        group = n
    if group == 1:
        return torch.cat([x, x.new_zeros(n, 1, h, w)], dim=1)
    y = x.view(-1, group, *x.shape[1:])
    y = (y.var(dim=1, unbiased=True) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n / group]
    return torch.cat([x, y.repeat_interleave(group).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


MINIBATCH_STDDEV = {"gan_zoo": minibatch_stddev_gan_zoo, "proggan": minibatch_stddev}


class GrownDiscriminator(nn.Module):
    """ProgGAN discriminator of a ``dggan`` body: 1x1 fromRGB -> one Stage per resolution, newest
    first (average-pooled after it) -> 4x4 block (minibatch stddev, conv, dense, dense -> 1); gains
    and minibatch stddev of the body's ``base_net``.
    ``fading``: the new stage's output mixes with fromRGB_prev(down(image)) by alpha."""

    def __init__(self, body, fading=False):
        super().__init__()
        ch, base_net = body["channels"], base_net_of(body)
        self.stddev = MINIBATCH_STDDEV[base_net]
        top = len(body["stages"]) - 1
        self.fading, self.alpha = fading and top > 0, 1.0
        self.resolution = stage_resolutions(body)[-1]
        self.from_rgb = DConv(3, ch[top], 1)
        if self.fading:
            self.from_rgb_prev = DConv(3, ch[top - 1], 1)
        self.stages = nn.ModuleList(Stage(DConv, ch[s], ch[s], ch[max(s - 1, 0)], stage["d"], newest_first=True)
                                    for s, stage in enumerate(body["stages"]))
        self.conv4 = DConv(ch[0] + 1, ch[0], 3)
        self.dense = EqualLinear(ch[0] * 16, ch[0])
        self.out = EqualLinear(ch[0], 1, gain=GAINS[base_net]["d_out"])

    def forward(self, x):
        h = self.from_rgb(x)
        for s in reversed(range(len(self.stages))):
            h = F.avg_pool2d(self.stages[s](h), 2)
            if s == len(self.stages) - 1 and self.fading and self.alpha < 1:
                h = self.alpha * h + (1 - self.alpha) * self.from_rgb_prev(F.avg_pool2d(x, 2))
        h = self.conv4(self.stddev(h))
        return self.out(F.leaky_relu(self.dense(h.flatten(1)), 0.2))


def build_grown(genotype_or_body, fading=False):
    """(G, D) of a ``dggan`` genotype (a ConventionalGenotype or its body)."""
    body = getattr(genotype_or_body, "body", genotype_or_body)
    return GrownGenerator(body, fading), GrownDiscriminator(body, fading)


def count_parameters(module):
    """Parameters of the network as it runs after its fade-in (the fading ``*_prev`` layers left out)."""
    return sum(p.numel() for name, p in module.named_parameters() if "_prev" not in name)


# ---------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class Action:
    kind: str  # "g", "d" or "double"
    kernel: int = 0
    filters: int = 0

    @property
    def name(self):
        if self.kind == "double":
            return "double"
        return f"{self.kind.upper()} conv{self.kernel}x{self.kernel}-{self.filters}"

    @classmethod
    def parse(cls, name):
        if name == "double":
            return cls("double")
        net, conv = name.split(" ")
        kernel, filters = conv[4:].split("-")
        return cls(net.lower(), int(kernel.split("x")[0]), int(filters))


def action_space(kernels=KERNELS, filters=FILTERS):
    """Section "Action Search Space": G convs, D convs (every kernel x filters), double."""
    return ([Action(net, k, f) for net in ("g", "d") for k in kernels for f in filters] + [Action("double")])


def allowed(body, action, final_resolution, max_grown):
    stage = body["stages"][-1]
    if action.kind == "double":
        return stage_resolutions(body)[-1] < final_resolution and len(body["channels"]) > len(body["stages"])
    return len(stage[action.kind]) < max_grown


def apply_action(body, action):
    """The child's genotype body."""
    child = json.loads(json.dumps(body))
    if action.kind == "double":
        child["stages"].append({"g": [], "d": []})
    else:
        child["stages"][-1][action.kind].append([action.kernel, action.filters])
    return child


def inherit(child, parent_state, renames=()):
    """Copy ``parent_state`` into ``child``: equal names and shapes are copied, a tensor whose shape
    changed gets the overlapping block, the rest stays random. ``renames``: (parent prefix, child
    prefix). Returns {"copied": [...], "partial": [...], "new": [...]} (child names)."""
    source = {}
    for name, tensor in parent_state.items():
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        source[name] = tensor
    report = {"copied": [], "partial": [], "new": []}
    with torch.no_grad():
        for name, tensor in child.state_dict().items():
            if name not in source:
                report["new"].append(name)
            elif source[name].shape == tensor.shape:
                tensor.copy_(source[name])
                report["copied"].append(name)
            else:
                block = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, source[name].shape))
                tensor[block].copy_(source[name][block])
                report["partial"].append(name)
    return report


def grow(parent_body, parent_state, action):
    """(child body, G, D) with the parent's weights inherited; a doubled child is built fading
    (alpha = 0: it computes its parent's output, up-sampled in G, of the down-sampled image in D)."""
    body = apply_action(parent_body, action)
    G, D = build_grown(body, fading=action.kind == "double")
    if parent_state is not None:
        inherit(G, parent_state["G"], renames=[("to_rgb.", "to_rgb_prev.")] if action.kind == "double" else ())
        inherit(D, parent_state["D"], renames=[("from_rgb.", "from_rgb_prev.")] if action.kind == "double" else ())
    return body, G, D
