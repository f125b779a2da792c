"""StyleGAN2's modulated convolution (Karras et al. 2020, section 2.2).

For every sample n the weight is scaled by that sample's style over its input channels,
``w'[n, o, i] = weight[o, i] * styles[n, i]``, then (``demodulate``) divided per output
channel by ``sqrt(sum_{i, taps} w'^2 + 1e-8)``, and x[n] is convolved with it:

- ``up=1, down=1``: ``F.conv2d`` semantics, ``padding`` as there;
- ``up=2``: StyleGAN2's transposed convolution (stride 2) followed by the FIR blur
  (``resample_filter``, default [1, 3, 3, 1]): the ``deconv`` candidate of the search space;
  ``padding=k // 2`` maps H x W onto 2H x 2W;
- ``down=2``: the blur, then a stride-2 convolution.

Two equivalent forms: ``fused=True`` builds the per-sample weights and runs one grouped
convolution (groups = batch); ``fused=False`` scales the activations by the styles, runs
one convolution with the shared weight and scales the outputs by the demodulation
coefficients. ``fused=None`` takes the grouped form without autograd (inference) and the
non-fused form when training, as NVlabs does. On CUDA the grouped form builds its weights
with one fused kernel (csrc/modulate.cu); the convolutions are cuDNN's.
"""

from __future__ import annotations

import math

import torch

from . import extension
from .conv2d_resample import conv2d_resample
from .upfirdn2d import setup_filter

DEMODULATION_EPS = 1e-8
_default_filters: dict = {}


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, down=1, padding=0, resample_filter=None,
                     fused=None, impl="auto"):
    """x [N, I, H, W], weight [O, I, kh, kw], styles [N, I] -> [N, O, H', W']."""
    if x.ndim != 4 or weight.ndim != 4 or styles.ndim != 2:
        raise ValueError(f"modulated_conv2d: expected x [N, I, H, W], weight [O, I, kh, kw], styles [N, I]; got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(styles.shape)}")
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    if weight.shape[1] != in_channels or styles.shape != (batch, in_channels):
        raise ValueError(f"modulated_conv2d: channel/batch mismatch between x {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)} and styles {tuple(styles.shape)}")
    if resample_filter is None and (up > 1 or down > 1):
        resample_filter = _default_filter(x.device)
    if fused is None:
        fused = not torch.is_grad_enabled()

    if x.dtype == torch.float16 and demodulate:
        # Demodulation makes the result invariant to a per-output-channel scale of the weight
        # and a per-sample scale of the styles: normalising both keeps float16 from overflowing.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3],
                                                                                keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    # up=2 is a transposed convolution (a true convolution); up=1 correlates like F.conv2d.
    flip_weight = up == 1
    if fused:
        w = modulate_weight(weight, styles, demodulate, impl)
        y = conv2d_resample(x.reshape(1, batch * in_channels, height, width),
                            w.reshape(batch * out_channels, in_channels, kh, kw).to(x.dtype),
                            f=resample_filter, up=up, down=down, padding=padding, groups=batch,
                            flip_weight=flip_weight, impl=impl)
        return y.reshape(batch, out_channels, *y.shape[2:])

    x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
    y = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                        flip_weight=flip_weight, impl=impl)
    if demodulate:
        y = y * demodulation_coefficients(weight, styles).to(y.dtype).reshape(batch, out_channels, 1, 1)
    return y


def _default_filter(device):
    if device not in _default_filters:
        _default_filters[device] = setup_filter([1, 3, 3, 1], device=device)
    return _default_filters[device]


def demodulation_coefficients(weight, styles, eps=DEMODULATION_EPS):
    """[N, O]: 1 / sqrt(sum_{i, taps} (weight[o, i] * styles[n, i])^2 + eps).

    The sum factors into one matrix product, styles^2 @ (sum_taps weight^2)^T, so the
    [N, O, I, kh, kw] modulated weight is never built (cuBLAS does this better than a kernel).
    """
    return (styles.square() @ weight.square().sum([2, 3]).T + eps).rsqrt()


def modulate_weight(weight, styles, demodulate, impl="auto"):
    """The per-sample weights [N, O, I, kh, kw] of the grouped form."""
    if extension.use_cuda("modulated_conv2d", weight, impl):
        return modulate_function(demodulate, _cuda_kernel).apply(weight, styles)
    return modulate_weight_ref(weight, styles, demodulate)


def modulate_weight_ref(weight, styles, demodulate, eps=DEMODULATION_EPS):
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + eps).rsqrt()
    return w


def _cuda_kernel(weight, styles, demodulate):
    return extension.get_extension().modulate(weight, styles, demodulate, DEMODULATION_EPS)


def reference_kernel(weight, styles, demodulate):
    """The kernel's contract in plain PyTorch (used by the tests to exercise the autograd wiring)."""
    return modulate_weight_ref(weight.detach(), styles.detach(), demodulate)


def modulate_weight_backward(grad, weight, styles, demodulate):
    """Gradients of weight and styles for w' = weight * s * d(weight, s), in differentiable
    PyTorch ops, so second-order gradients (path length regularisation) work.

    With u = weight * s and d = (sum u^2 + eps)^-1/2: dL/du = g d - u d^3 sum(g u).
    """
    if not demodulate:
        return (torch.einsum("noikl,ni->oikl", grad, styles),
                torch.einsum("noikl,oikl->ni", grad, weight))
    d = demodulation_coefficients(weight, styles)
    b = d.pow(3) * torch.einsum("noikl,oikl,ni->no", grad, weight, styles)
    grad_weight = (torch.einsum("noikl,ni,no->oikl", grad, styles, d)
                   - weight * (b.T @ styles.square())[:, :, None, None])
    grad_styles = (torch.einsum("noikl,oikl,no->ni", grad, weight, d)
                   - styles * (b @ weight.square().sum([2, 3])))
    return grad_weight, grad_styles


_functions: dict = {}


def modulate_function(demodulate, kernel):
    """The autograd Function building the modulated weight with `kernel`, cached per configuration."""
    key = (bool(demodulate), kernel)
    if key in _functions:
        return _functions[key]

    class ModulateWeight(torch.autograd.Function):
        @staticmethod
        def forward(ctx, weight, styles):
            ctx.save_for_backward(weight, styles)
            return kernel(weight, styles, demodulate)

        @staticmethod
        def backward(ctx, grad):
            weight, styles = ctx.saved_tensors
            return modulate_weight_backward(grad, weight, styles, demodulate)

    _functions[key] = ModulateWeight
    return ModulateWeight


def _self_check(device: torch.device) -> float:
    """The modulation kernel vs the reference, with and without demodulation, in float32 and
    float16: the modulated weights and the gradients of weight and styles. (The convolutions are
    cuDNN's and the blur is upfirdn2d, which checks itself.) float16 rounds at 2^-11, so its
    errors count a hundredth (held to 1e-2 instead of 1e-4)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    weight32 = torch.randn([5, 4, 3, 3], generator=gen)
    styles32 = torch.randn([2, 4], generator=gen) + 1
    errors = []
    for dtype in (torch.float32, torch.float16):
        slack = 100 if dtype == torch.float16 else 1
        weight = weight32.to(device, dtype).requires_grad_()
        styles = styles32.to(device, dtype).requires_grad_()
        for demodulate in (True, False):
            outputs = [modulate_weight(weight, styles, demodulate, impl) for impl in ("cuda", "ref")]
            grad = torch.randn(outputs[1].shape, generator=gen).to(device, dtype)
            grads = [torch.autograd.grad(w, [weight, styles], grad) for w in outputs]
            errors.append(extension.relative_error(*outputs) / slack)
            errors += [extension.relative_error(c, r) / slack for c, r in zip(*grads)]
    return max(errors)


extension.register_self_check("modulated_conv2d", _self_check, tolerance=1e-4)
