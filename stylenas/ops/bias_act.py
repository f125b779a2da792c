"""bias_act: bias, activation, gain and clamp fused in one pass.

``y = clamp(gain * act(x + b), -clamp, clamp)`` with ``b`` broadcast along ``dim``; the same
semantics, activation names and default alphas/gains as NVlabs stylegan2-ada-pytorch's
op. The CUDA kernel (csrc/bias_act.cu) computes the activation, its first derivative (the
backward pass) and its second derivative (the backward of the backward), so second-order
gradients (R1, path length) work; third order needs ``impl="ref"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import extension


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    alpha: float  # default slope / scale parameter
    gain: float  # default gain: keeps the activation's output variance near its input's
    code: int  # index in csrc/bias_act.cuh
    has_second_derivative: bool


ACTIVATIONS = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0, 0, False),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2), 1, False),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 2, False),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0, 3, True),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0, 4, True),
    "elu": Activation(lambda x, a: F.elu(x, a), 1.0, 1.0, 5, True),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0, 6, True),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0, 7, True),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 8, True),
}


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="auto"):
    """``clamp(gain * act(x + b))``; ``b`` is 1-D of size ``x.shape[dim]`` or None.

    ``alpha``, ``gain`` default to the activation's (lrelu: 0.2 and sqrt 2); ``clamp=None``
    means no clamping.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("bias_act: x must be a floating-point tensor")
    spec = ACTIVATIONS[act]
    alpha = float(spec.alpha if alpha is None else alpha)
    gain = float(spec.gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    if x.ndim > 0:
        dim = dim % x.ndim
    if b is not None and (b.ndim != 1 or x.ndim == 0 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias_act: b must be 1-D of size x.shape[{dim}], got {tuple(b.shape)} "
                         f"for x {tuple(x.shape)}")
    if extension.use_cuda("bias_act", x, impl):
        function = bias_act_function(dim, act, alpha, gain, clamp, _cuda_kernel)
        return function.apply(x, x.new_empty([0]) if b is None else b.to(x.dtype))
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, spec, alpha, gain, clamp):
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _cuda_kernel(x, b, dy, dim, act_code, order, alpha, gain, clamp):
    return extension.get_extension().bias_act(x, b, dy, dim, act_code, order, alpha, gain, clamp)


def reference_kernel(x, b, dy, dim, act_code, order, alpha, gain, clamp):
    """The kernel's contract in plain PyTorch: order 0 is the op, orders 1 and 2 are dy times
    the first and second derivative with respect to x (used by the tests)."""
    spec = next(s for s in ACTIVATIONS.values() if s.code == act_code)
    with torch.enable_grad():
        z = x.detach().clone().requires_grad_()
        y = _bias_act_ref(z, b if b.numel() else None, dim, spec, alpha, gain, clamp)
        if order == 0:
            return y.detach()
        (d1,) = torch.autograd.grad(y.sum(), z, create_graph=order == 2)
        if order == 1:
            return dy * d1.detach()
        if not d1.requires_grad:  # piecewise-linear activations
            return torch.zeros_like(x)
        (d2,) = torch.autograd.grad(d1.sum(), z)
        return dy * d2


_functions: dict = {}


def bias_act_function(dim, act, alpha, gain, clamp, kernel):
    """The autograd Functions of one configuration, built once and cached."""
    key = (dim, act, alpha, gain, clamp, kernel)
    if key in _functions:
        return _functions[key]
    spec = ACTIVATIONS[act]
    params = (dim, spec.code)
    scalars = (alpha, gain, clamp)

    def bias_grad(dx, b):
        return dx.sum([i for i in range(dx.ndim) if i != dim]) if b.numel() else None

    class BiasAct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):
            ctx.save_for_backward(x, b)
            return kernel(x, b, x.new_empty([0]), *params, 0, *scalars)

        @staticmethod
        def backward(ctx, dy):
            x, b = ctx.saved_tensors
            dx = BiasActGrad.apply(dy, x, b)
            return dx, bias_grad(dx, b)

    class BiasActGrad(torch.autograd.Function):
        """dx = dy * d act(x + b) / dx; linear in dy, so its own backward in dy is itself."""

        @staticmethod
        def forward(ctx, dy, x, b):
            ctx.save_for_backward(dy, x, b)
            return kernel(x, b, dy, *params, 1, *scalars)

        @staticmethod
        def backward(ctx, d_dx):
            dy, x, b = ctx.saved_tensors
            d_dy = BiasActGrad.apply(d_dx, x, b) if ctx.needs_input_grad[0] else None
            d_x = d_b = None
            if spec.has_second_derivative and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
                d_x = BiasActGrad2.apply(d_dx * dy, x, b)
                d_b = bias_grad(d_x, b)
            return d_dy, d_x, d_b

    class BiasActGrad2(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v, x, b):
            return kernel(x, b, v, *params, 2, *scalars)

        @staticmethod
        def backward(ctx, _):
            raise RuntimeError("bias_act: third-order gradients are not implemented by the CUDA kernel; "
                               "use impl='ref'")

    _functions[key] = BiasAct
    return BiasAct


def _self_check(device: torch.device) -> float:
    """Kernel vs reference on a small input, in float32 and float16: forward and the gradients of
    x and b. float16 rounds at 2^-11, so its errors count a hundredth (held to 1e-2, not 1e-4)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x32 = torch.randn([3, 5, 4], generator=gen)
    b32 = torch.randn([5], generator=gen)
    errors = []
    for dtype in (torch.float32, torch.float16):
        slack = 100 if dtype == torch.float16 else 1
        x = x32.to(device, dtype).requires_grad_()
        b = b32.to(device, dtype).requires_grad_()
        # (float16 skips the clamp: a value within a rounding of it is clamped on one side only.)
        for act, clamp in (("lrelu", 1.0 if dtype == torch.float32 else None), ("swish", None), ("tanh", None)):
            y_cuda = bias_act(x, b, act=act, clamp=clamp, impl="cuda")
            y_ref = bias_act(x, b, act=act, clamp=clamp, impl="ref")
            dy = torch.randn(y_ref.shape, generator=gen).to(device, dtype)
            g_cuda = torch.autograd.grad(y_cuda, [x, b], dy)
            g_ref = torch.autograd.grad(y_ref, [x, b], dy)
            errors.append(extension.relative_error(y_cuda, y_ref) / slack)
            errors += [extension.relative_error(c, r) / slack for c, r in zip(g_cuda, g_ref)]
    return max(errors)


extension.register_self_check("bias_act", _self_check, tolerance=1e-4)
