"""upfirdn2d: upsample, pad, FIR-filter and downsample a batch of images in one op.

The semantics are those of NVlabs stylegan2-ada-pytorch's op of the same name, so code
written for one reads the same with the other. For x ``[N, C, H, W]``:

1. upsample: insert ``up - 1`` zeros after every sample (length n becomes n * up);
2. pad by ``padding`` (an int, ``[px, py]`` or ``[x0, x1, y0, y1]``; negative values crop);
3. convolve with ``f`` (a true convolution; ``flip_filter=True`` gives correlation). A 1-D
   ``f`` is the separable filter f x f, a 2-D one is used as is; ``f`` is multiplied by
   ``gain ** (f.ndim / 2)``;
4. keep every ``down``-th sample, starting at index 0.

``up``, ``down`` are ints or ``[x, y]``. The CUDA kernel (csrc/upfirdn2d.cu) takes ``f``,
``flip_filter`` and ``gain`` as they are (one launch per call, nothing prepared beforehand) and
visits only the filter taps that land on non-zero samples. Its backward pass is upfirdn2d again,
with up and down swapped, the filter flipped and the padding mirrored, so gradients of any order
work. No gradient flows into ``f`` on the CUDA path (use ``impl="ref"`` to learn a filter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import extension


def _parse_scaling(scaling) -> tuple[int, int]:
    sx, sy = (scaling, scaling) if isinstance(scaling, int) else tuple(scaling)
    if not (isinstance(sx, int) and isinstance(sy, int) and sx >= 1 and sy >= 1):
        raise ValueError(f"up/down must be integers >= 1 (or [x, y]), got {scaling!r}")
    return sx, sy


def _parse_padding(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(padding)
    raise ValueError(f"padding must be an int, [px, py] or [x0, x1, y0, y1], got {padding!r}")


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a 1-D (separable) or 2-D filter."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[1], f.shape[0]


def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1, separable=None):
    """Build a float32 FIR filter for upfirdn2d from a list, array or tensor.

    A 1-D input becomes the 2-D outer product f x f unless ``separable`` (default: for 8 or more
    taps) keeps it 1-D. ``normalize`` makes the taps sum to 1; ``gain`` then multiplies the
    filter by ``gain ** (ndim / 2)``, so the separable and the 2-D forms carry the same gain.
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty scalar, 1-D or 2-D, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if separable and f.ndim != 1:
        raise ValueError("a separable filter must be given as a 1-D list of taps")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Upsample, pad, FIR-filter and downsample ``x`` [N, C, H, W] (see the module docstring)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D tensor [N, C, H, W], got {getattr(x, 'shape', x)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or not f.is_floating_point():
        raise ValueError("upfirdn2d: f must be a 1-D or 2-D floating-point tensor (see setup_filter)")
    up, down, padding = _parse_scaling(up), _parse_scaling(down), _parse_padding(padding)
    if f.requires_grad and impl != "cuda":
        impl = "ref"  # the kernel computes no filter gradient
    if extension.use_cuda("upfirdn2d", x, impl):
        if f.requires_grad:
            raise ValueError("upfirdn2d: the CUDA kernel computes no gradient for f; use impl='ref'")
        return upfirdn2d_function(up, down, padding, flip_filter, gain, _cuda_kernel).apply(x, f)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """Plain PyTorch: zero insertion, F.pad, depthwise strided F.conv2d."""
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    fw, fh = _filter_size(f)
    if h * upy + py0 + py1 < fh or w * upx + px0 + px1 < fw:
        raise ValueError(f"upfirdn2d: the padded input ({h}x{w} up {up}, padding {padding}) is smaller "
                         f"than the {fh}x{fw} filter")
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]

    f = f.to(x.dtype) * (gain ** (f.ndim / 2))  # scale in x's precision (a float32 filter on double x)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # conv2d correlates; flipping makes it a convolution
    # A strided convolution keeps every down-th output, starting at 0, without computing the rest.
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].expand(c, 1, fh, fw), groups=c, stride=(downy, downx))
    x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, fw), groups=c, stride=(1, downx))
    return F.conv2d(x, f[None, None, :, None].expand(c, 1, fh, 1), groups=c, stride=(downy, 1))


def _cuda_kernel(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
    return extension.get_extension().upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)


def reference_kernel(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
    """The kernel's contract in plain PyTorch (used by the tests to exercise the autograd wiring)."""
    return _upfirdn2d_ref(x, f.to(x.dtype), (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain)


_functions: dict = {}


def upfirdn2d_function(up, down, padding, flip_filter, gain, kernel):
    """The autograd Function of one configuration, built once and cached (as NVlabs does)."""
    flip_filter, gain = bool(flip_filter), float(gain)
    key = (up, down, padding, flip_filter, gain, kernel)
    if key in _functions:
        return _functions[key]
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = padding

    class Upfirdn2d(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, f):
            ctx.save_for_backward(f)
            ctx.x_shape = x.shape
            # The kernel reads the taps in its accumulation dtype (a no-op for float32 filters).
            f_acc = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
            return kernel(x, f_acc, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)

        @staticmethod
        def backward(ctx, dy):
            (f,) = ctx.saved_tensors
            _, _, in_h, in_w = ctx.x_shape
            _, _, out_h, out_w = dy.shape
            fw, fh = _filter_size(f)
            # The adjoint: upsample dy by `down`, pad so every tap that touched x[i] reaches it,
            # convolve with the flipped filter, keep every `up`-th sample.
            grad_padding = (
                fw - px0 - 1, in_w * upx - out_w * downx + px0 - upx + 1,
                fh - py0 - 1, in_h * upy - out_h * downy + py0 - upy + 1,
            )
            dx = None
            if ctx.needs_input_grad[0]:
                adjoint = upfirdn2d_function(down, up, grad_padding, not flip_filter, gain, kernel)
                dx = adjoint.apply(dy, f)
            return dx, None

    _functions[key] = Upfirdn2d
    return Upfirdn2d


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Filter x with f, keeping its size (padding is added on top of the centring pad)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Upsample by `up` with the interpolation filter f: [H, W] -> [H * up, W * up], mean kept."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    # Pads summing to (taps - 1) keep the size; the split centres the filter on the inserted zeros.
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Low-pass with f, then keep every `down`-th sample: [H, W] -> [H / down, W / down]."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def _self_check(device: torch.device) -> float:
    """Kernel vs reference: forward and the gradient of x, for StyleGAN2's specialised 4x4 cases
    (whose backward passes are specialised cases too) and for generic shapes (a 2-D 3x5 filter with
    unequal up/down per axis, a separable 8-tap filter) with flip and gain; float32 and float16.
    float16 rounds at 2^-11, so its errors count a hundredth (held to 1e-2 instead of 1e-4)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    f4 = setup_filter([1, 3, 3, 1], device=device)
    f35 = (torch.rand([3, 5], generator=gen) + 0.1).to(device)
    f8 = setup_filter([1, 2, 4, 6, 6, 4, 2, 1], device=device)  # 8 taps: 1-D, separable
    cases = [  # f, up, down, padding, flip_filter, gain, float16 too
        (f4, 2, 1, [2, 1, 2, 1], False, 4, True),
        (f4, 1, 2, [1, 1, 1, 1], False, 1, True),
        (f4, 1, 1, [1, 2, 0, -1], True, 1, False),
        (f35, [2, 1], [1, 2], [1, 2, 0, 3], True, 2.5, True),
        (f8, 2, 1, [4, 3, 4, 3], False, 4, False),
    ]
    x32 = torch.randn([2, 3, 9, 7], generator=gen).to(device)
    errors = []
    for f, up, down, pad, flip, gain, half in cases:
        for dtype in (torch.float32, torch.float16) if half else (torch.float32,):
            slack = 100 if dtype == torch.float16 else 1
            x = x32.to(dtype).requires_grad_()
            kwargs = dict(up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
            y_cuda = upfirdn2d(x, f, impl="cuda", **kwargs)
            y_ref = upfirdn2d(x, f, impl="ref", **kwargs)
            dy = torch.randn(y_ref.shape, generator=gen).to(device, dtype)
            (g_cuda,) = torch.autograd.grad(y_cuda, x, dy)
            (g_ref,) = torch.autograd.grad(y_ref, x, dy)
            errors += [extension.relative_error(y_cuda, y_ref) / slack, extension.relative_error(g_cuda, g_ref) / slack]
    return max(errors)


extension.register_self_check("upfirdn2d", _self_check, tolerance=1e-4)
