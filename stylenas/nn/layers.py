"""StyleGAN2 building blocks (Karras et al. 2020): equalised-learning-rate layers, the
modulated synthesis layer with its candidate operations, toRGB, minibatch stddev.

Equalised learning rate: weights are stored as N(0, 1) / lr_mul and scaled at run time by
lr_mul / sqrt(fan_in), so Adam sees every layer at the same scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops import ACTIVATIONS, bias_act, conv2d_resample, modulated_conv2d, setup_filter

# The candidate operations of a synthesis conv layer (alphaGAN, section 6.2).
NORMAL_OPS = ("conv_1x1", "conv_3x3", "conv_5x5")
UP_OPS = ("deconv", "nearest_conv", "bilinear_conv")
KERNEL_SIZE = {"conv_1x1": 1, "conv_3x3": 3, "conv_5x5": 5, "deconv": 3, "nearest_conv": 3, "bilinear_conv": 3}
FIR = [1, 3, 3, 1]


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Pixel norm of the input latent: x / sqrt(mean(x^2))."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    def __init__(self, in_features, out_features, bias=True, bias_init=0.0, lr_mul=1.0, activation="linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.activation = activation
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv with equalised lr, optional FIR up/down-sampling, bias + activation (+ clamp)."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", up=1, down=1,
                 conv_clamp=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", setup_filter(FIR), persistent=False)
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x, gain=1.0):
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        gain = ACTIVATIONS[self.activation].gain * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """One modulated conv layer of the synthesis network: ``op`` is one of NORMAL_OPS (same
    resolution) or UP_OPS (doubles it). ``deconv`` is StyleGAN2's transposed conv + FIR blur;
    ``nearest_conv``/``bilinear_conv`` interpolate x2 and then run a modulated conv 3x3.
    Each layer has its own style affine, weight, noise strength and bias."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, op, conv_clamp=None):
        super().__init__()
        if op not in KERNEL_SIZE:
            raise ValueError(f"unknown synthesis op {op!r}; expected one of {', '.join(KERNEL_SIZE)}")
        self.op, self.resolution, self.conv_clamp = op, resolution, conv_clamp
        self.up = 2 if op in UP_OPS else 1
        k = KERNEL_SIZE[op]
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, k, k]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.register_buffer("resample_filter", setup_filter(FIR), persistent=False)

    def forward(self, x, w, noise_mode="random", fused=None, noise=None):
        """``noise`` [N, 1, R, R] replaces the drawn noise input (training draws it per global batch)."""
        styles = self.affine(w)
        if self.op == "nearest_conv":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif self.op == "bilinear_conv":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = modulated_conv2d(x, self.weight, styles, up=2 if self.op == "deconv" else 1,
                             padding=self.weight.shape[-1] // 2, resample_filter=self.resample_filter, fused=fused)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=self.conv_clamp)

    def extra_repr(self):
        return f"op={self.op}, resolution={self.resolution}, channels={self.weight.shape[1]}->{self.weight.shape[0]}"


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation: the skip output of one resolution."""

    def __init__(self, in_channels, img_channels, w_dim, conv_clamp=None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([img_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([img_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x, w, fused=None):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class MinibatchStd(nn.Module):
    """Appends the average standard deviation over groups of samples as extra channels."""

    def __init__(self, group_size=4, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        # the largest group size <= group_size that divides the batch
        g = next(s for s in range(min(self.group_size, n), 0, -1) if n % s == 0)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n/g, f]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


def channel_count(resolution, channel_base, channel_max, channel_mult=1.0):
    """StyleGAN2's min(channel_base / res, channel_max), scaled by channel_mult (search: 1/8)."""
    return max(1, int(np.rint(min(channel_base // resolution, channel_max) * channel_mult)))
