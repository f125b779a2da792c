"""rosinality stylegan2-pytorch checkpoints -> StyleNAS ``stylegan2`` genotype networks.

A checkpoint of its ``train.py`` is ``{"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"}``
(``convert_weight.py`` writes ``{"g_ema", "latent_avg"}`` and optionally "g", "d"). Its layout
against ours, all mapped exactly:
  - mapping: ``style.{1..n_mlp}`` (``style.0`` is the pixel norm), stored weights / lr_mlp as ours (its
    lr_mlp 0.01 unless the args say otherwise; the weights are rescaled to our 0.01);
  - ``input.input`` [1, C, 4, 4] is our const; ``conv1``/``to_rgb1`` are b4's conv1/torgb;
    ``convs.{2k}``/``convs.{2k+1}``/``to_rgbs.{k}`` are b(2^(k+3))'s conv0/conv1/torgb;
  - ModulatedConv2d: weight [1, out, in, k, k] scaled by 1/sqrt(fan_in) before demodulation (ours
    omits that scale, which demodulation cancels, as NVlabs does), ``modulation`` = our affine;
    the up-sampling conv is a stride-2 transposed conv of the unflipped weight, then a [1, 3, 3, 1]
    blur (gain 4, pads (1, 1)): NVlabs' and our ``deconv``; ToRGB: no demodulation, style scaled by
    1/sqrt(in), bias [1, 3, 1, 1], the skip image upsampled by upfirdn2d with the same filter;
  - noise: ``noise.weight`` [1] is our noise_strength, ``noises.noise_{i}`` [1, 1, R, R] the i-th
    conv's constant noise; ``activate.bias`` (FusedLeakyReLU: lrelu(x + b) * sqrt 2) our bias;
  - D: ``convs.0`` the 1x1 fromrgb, ``convs.{j}`` residual blocks (blur then stride-2 conv, sum / sqrt 2),
    minibatch stddev over groups of 4, ``final_conv``, ``final_linear.{0,1}``.
The blur kernels are buffers in the state dict: anything but [1, 3, 3, 1] is refused, as are the
SWAGAN architecture. Any mapping depth (``--n_mlp``) is kept: our mapping network gets as many layers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ...ops import setup_filter
from .common import Converted, ImportNetworkError

FIR = setup_filter([1, 3, 3, 1])  # normalised, as rosinality's make_kernel
OUR_MAPPING_LR_MUL = 0.01
ROSINALITY_LR_MLP = 0.01  # model.Generator's default; train.py never changes it


def _fail(source, message):
    raise ImportNetworkError(f"{source}: {message}")


def _check_kernel(source, what, key, value, gain):
    if not (torch.is_tensor(value) and value.shape == FIR.shape and torch.allclose(value, FIR * gain)):
        _fail(source, f"{what}.{key} is not the [1, 3, 3, 1] blur kernel StyleNAS uses")


def _generator(source, state, what, lr_mlp):
    """(our state dict, channels per resolution) of a rosinality Generator state dict."""
    state = dict(state)
    if "input.input" not in state or "conv1.conv.weight" not in state:
        _fail(source, f"{what} is not a rosinality StyleGAN2 generator state dict")
    mapping = sorted(int(m.group(1)) for key in state if (m := re.fullmatch(r"style\.(\d+)\.weight", key)))
    if not mapping:
        _fail(source, f"{what} has no mapping network layers (style.1.weight...; n_mlp 0)")
    num_blocks = len([key for key in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", key)])
    resolution = 4 * 2 ** num_blocks
    out, channels = {}, {4: state["input.input"].shape[1]}
    scale = lr_mlp / OUR_MAPPING_LR_MUL
    for i, index in enumerate(mapping):
        out[f"mapping.fcs.{i}.weight"] = state.pop(f"style.{index}.weight") * scale
        out[f"mapping.fcs.{i}.bias"] = state.pop(f"style.{index}.bias") * scale
    out["synthesis.const"] = state.pop("input.input")[0]
    layers = [("conv1", "b4.conv1")] + [(f"convs.{2 * k + j}", f"b{8 * 2 ** k}.conv{j}")
                                        for k in range(num_blocks) for j in (0, 1)]
    for index, (theirs, ours) in enumerate(layers):
        ours = "synthesis.blocks." + ours
        out[ours + ".weight"] = state.pop(f"{theirs}.conv.weight")[0]
        out[ours + ".affine.weight"] = state.pop(f"{theirs}.conv.modulation.weight")
        out[ours + ".affine.bias"] = state.pop(f"{theirs}.conv.modulation.bias")
        out[ours + ".noise_strength"] = state.pop(f"{theirs}.noise.weight").reshape([])
        out[ours + ".bias"] = state.pop(f"{theirs}.activate.bias")
        noise = state.pop(f"noises.noise_{index}", None)
        if noise is None:
            _fail(source, f"{what} has no noises.noise_{index}")
        out[ours + ".noise_const"] = noise[0, 0]
        if f"{theirs}.conv.blur.kernel" in state:
            _check_kernel(source, what, f"{theirs}.conv.blur.kernel", state.pop(f"{theirs}.conv.blur.kernel"), 4)
        channels[int(ours.split(".")[2][1:])] = out[ours + ".weight"].shape[0]
    for theirs, ours in [("to_rgb1", "b4.torgb")] + [(f"to_rgbs.{k}", f"b{8 * 2 ** k}.torgb")
                                                     for k in range(num_blocks)]:
        ours = "synthesis.blocks." + ours
        weight = state.pop(f"{theirs}.conv.weight")[0]
        if weight.shape[0] != 3:
            _fail(source, f"{what}.{theirs} makes {weight.shape[0]}-channel images; StyleNAS networks make RGB (3)")
        out[ours + ".weight"] = weight
        out[ours + ".affine.weight"] = state.pop(f"{theirs}.conv.modulation.weight")
        out[ours + ".affine.bias"] = state.pop(f"{theirs}.conv.modulation.bias")
        out[ours + ".bias"] = state.pop(f"{theirs}.bias").reshape([-1])
        if f"{theirs}.upsample.kernel" in state:
            _check_kernel(source, what, f"{theirs}.upsample.kernel", state.pop(f"{theirs}.upsample.kernel"), 4)
    if state:
        _fail(source, f"{what} has layer {sorted(state)[0]}, which the StyleGAN2 generator does not have")
    return out, resolution, channels


def _discriminator(source, state, resolution):
    state = dict(state)
    out = {}
    blocks = [resolution // 2 ** j for j in range(int(math.log2(resolution)) - 2)]
    if "convs.0.0.weight" not in state:
        _fail(source, "d is not a rosinality StyleGAN2 discriminator state dict")
    renames = {"convs.0.0.weight": f"blocks.b{resolution}.fromrgb.weight",
               "convs.0.1.bias": f"blocks.b{resolution}.fromrgb.bias",
               "final_conv.0.weight": "conv.weight", "final_conv.1.bias": "conv.bias",
               "final_linear.0.weight": "fc.weight", "final_linear.0.bias": "fc.bias",
               "final_linear.1.weight": "out.weight", "final_linear.1.bias": "out.bias"}
    for j, res in enumerate(blocks, start=1):
        renames.update({f"convs.{j}.conv1.0.weight": f"blocks.b{res}.conv0.weight",
                        f"convs.{j}.conv1.1.bias": f"blocks.b{res}.conv0.bias",
                        f"convs.{j}.conv2.1.weight": f"blocks.b{res}.conv1.weight",
                        f"convs.{j}.conv2.2.bias": f"blocks.b{res}.conv1.bias",
                        f"convs.{j}.skip.1.weight": f"blocks.b{res}.skip.weight"})
        for key in (f"convs.{j}.conv2.0.kernel", f"convs.{j}.skip.0.kernel"):
            if key in state:
                _check_kernel(source, "d", key, state.pop(key), 1)
    for theirs, ours in renames.items():
        if theirs not in state:
            _fail(source, f"d has no {theirs} (expected a {resolution} px StyleGAN2 discriminator)")
        out[ours] = state.pop(theirs)
    if state:
        _fail(source, f"d has layer {sorted(state)[0]}, which the StyleGAN2 discriminator does not have")
    return out


def _channel_rule(source, channels):
    """(channel_base, channel_max) with min(base // res, max) == channels[res] at every resolution."""
    top = max(channels)
    channel_max = channels[4]
    base = channels[top] * top
    for candidate in (base, channel_max * top):
        if all(min(candidate // res, channel_max) == c for res, c in channels.items()):
            return candidate, channel_max
    _fail(source, f"channels per resolution {dict(sorted(channels.items()))} do not follow "
                  f"min(channel_base / res, channel_max), the rule StyleNAS networks are built with")


def convert(source, data):
    """A ``Converted`` of a rosinality checkpoint dict loaded with ``weights_only=True``."""
    args = data.get("args")
    arch = getattr(args, "arch", "stylegan2")
    if arch != "stylegan2":
        _fail(source, f"a rosinality {arch!r} checkpoint; only the stylegan2 architecture can be imported")
    lr_mlp = float(getattr(args, "lr_mlp", ROSINALITY_LR_MLP))
    G_ema, resolution, channels = _generator(source, data["g_ema"], "g_ema", lr_mlp)
    G = None
    if data.get("g") is not None:
        G, g_resolution, g_channels = _generator(source, data["g"], "g", lr_mlp)
        if (g_resolution, g_channels) != (resolution, channels):
            _fail(source, "g and g_ema are networks of different sizes")
    size = getattr(args, "size", resolution)
    if size != resolution:
        _fail(source, f"args.size is {size}, but g_ema is a {resolution} px generator")
    channel_base, channel_max = _channel_rule(source, channels)
    D = _discriminator(source, data["d"], resolution) if data.get("d") is not None else None
    if D is not None and D[f"blocks.b{resolution}.fromrgb.weight"].shape[0] != channels[resolution]:
        _fail(source, "d and g_ema have different channel counts; StyleNAS builds both from one rule")
    w_dim = G_ema["mapping.fcs.0.weight"].shape[0]
    def depth(state):
        return len([key for key in state if re.fullmatch(r"mapping\.fcs\.\d+\.weight", key)])

    mapping_layers = depth(G_ema)
    if G is not None and depth(G) != mapping_layers:
        _fail(source, f"g has {depth(G)} mapping layers, g_ema {mapping_layers} (n_mlp); StyleNAS builds both alike")
    latent_avg = data.get("latent_avg")
    details = {"args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None)))}
               if args is not None else None}
    if "ada_aug_p" in data:
        p = data["ada_aug_p"]
        details["ada_aug_p"] = float(p) if isinstance(p, (int, float)) or torch.is_tensor(p) else None
    iteration = Path(source).stem  # train.py names checkpoints by iteration: checkpoint/550000.pt
    counters = {"step": int(iteration)} if iteration.isdigit() else {}
    z_dim = G_ema["mapping.fcs.0.weight"].shape[1]
    return Converted(format="rosinality", resolution=resolution, z_dim=z_dim, w_dim=w_dim, counters=counters,
                     channel_base=channel_base, channel_max=channel_max, conv_clamp=None, mbstd_group=4,
                     mapping_layers=mapping_layers,
                     G_ema=G_ema, G=G, D=D,
                     w_avg_ema=latent_avg.reshape([-1]) if torch.is_tensor(latent_avg) else None,
                     details=details)
