"""Operations of the conventional generator search spaces.

alphaGAN on AutoGAN-style cells (alphaGAN section 4.2; the authors' ``operations_gan.py``):
normal ops keep the channel count and size, up ops double the size ``times`` times (a cross-cell
skip from two cells back is the same op applied twice, weights shared, as the authors' code).

DEGAS (section 3.2): bn+relu+conv 1x1/3x3, max/avg pooling, skip, separable and dilated convs
3/5, and up ops bn+relu+deconv k4/k6 and bn+relu+nearest+conv 1/3.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

# alphaGAN, conventional GANs (the order is the order of the alphas)
ALPHAGAN_NORMAL_OPS = ("conv_1x1", "conv_3x3", "conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7")
ALPHAGAN_UP_OPS = ("deconv", "nearest", "bilinear")

# DEGAS
DEGAS_NORMAL_OPS = ("conv_1x1", "conv_3x3", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                    "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
DEGAS_UP_OPS = ("deconv_4x4", "deconv_6x6", "nearest_conv_1x1", "nearest_conv_3x3")


class ReLUConv(nn.Sequential):
    """ReLU then a biased convolution, no normalisation (alphaGAN's conv_kxk)."""

    def __init__(self, channels, kernel):
        super().__init__(nn.ReLU(), nn.Conv2d(channels, channels, kernel, padding=kernel // 2))


class SepConv(nn.Sequential):
    """DARTS' separable convolution, applied twice: (ReLU, depthwise kxk, pointwise 1x1, BN) x 2."""

    def __init__(self, channels, kernel, affine=True):
        layers = []
        for _ in range(2):
            layers += [nn.ReLU(), nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
                       nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels, affine=affine)]
        super().__init__(*layers)


class DilConv(nn.Sequential):
    """DARTS' dilated separable convolution: ReLU, depthwise kxk with dilation 2, pointwise, BN."""

    def __init__(self, channels, kernel, affine=True):
        super().__init__(nn.ReLU(), nn.Conv2d(channels, channels, kernel, padding=kernel - 1, dilation=2,
                                              groups=channels, bias=False),
                         nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels, affine=affine))


class BNReLUConv(nn.Sequential):
    """DEGAS' normal convolution: BN, ReLU, conv (bias-free: a BN follows in the next op or the tail)."""

    def __init__(self, channels, kernel):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False))


class Up(nn.Module):
    """One of alphaGAN's up ops applied ``times`` times (x2 each): ``deconv`` is ConvTranspose2d
    k2 s2 (one set of weights, reused for x4), ``nearest``/``bilinear`` are parameter-free."""

    def __init__(self, mode, channels, times=1):
        super().__init__()
        self.mode, self.times = mode, times
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2) if mode == "deconv" else None

    def forward(self, x):
        for _ in range(self.times):
            if self.deconv is not None:
                x = self.deconv(x)
            else:
                x = F.interpolate(x, scale_factor=2, mode=self.mode)
        return x


class DegasUp(nn.Module):
    """DEGAS up op to ``scale`` x the size (2, 4 or 8; > 2 for residual edges): bn+relu+deconv
    k4/k6 (stride 2, once per doubling) or bn+relu+nearest(scale)+conv k1/k3."""

    def __init__(self, op, channels, scale=2):
        super().__init__()
        self.op, self.scale = op, scale
        self.pre = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        if op.startswith("deconv"):
            k = int(op[-1])
            self.convs = nn.ModuleList(nn.ConvTranspose2d(channels, channels, k, stride=2, padding=(k - 2) // 2,
                                                          bias=False) for _ in range(scale.bit_length() - 1))
        else:
            k = int(op[-1])
            self.convs = nn.ModuleList([nn.Conv2d(channels, channels, k, padding=k // 2, bias=False)])

    def forward(self, x):
        x = self.pre(x)
        if self.op.startswith("deconv"):
            for conv in self.convs:
                x = conv(x)
            return x
        return self.convs[0](F.interpolate(x, scale_factor=self.scale, mode="nearest"))


def alphagan_op(name, channels, times=1):
    if name in ALPHAGAN_UP_OPS:
        return Up(name, channels, times)
    kind, kernel = name.rsplit("_", 1)
    kernel = int(kernel.split("x")[0])
    if kind == "conv":
        return ReLUConv(channels, kernel)
    if kind == "sep_conv":
        return SepConv(channels, kernel)
    raise ValueError(f"unknown alphaGAN operation {name!r}")


def degas_op(name, channels, scale=1):
    if name in DEGAS_UP_OPS:
        return DegasUp(name, channels, scale)
    if name == "skip_connect":
        return nn.Identity()
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    kind, kernel = name.rsplit("_", 1)
    kernel = int(kernel.split("x")[0])
    if kind == "conv":
        return BNReLUConv(channels, kernel)
    if kind == "sep_conv":
        return SepConv(channels, kernel)
    if kind == "dil_conv":
        return DilConv(channels, kernel)
    raise ValueError(f"unknown DEGAS operation {name!r}")
