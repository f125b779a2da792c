"""2-D convolution with FIR up/down-sampling, as StyleGAN2 uses it.

``conv2d_resample(x, w, f, up, down, padding)`` equals, by definition: when ``up > 1``,
upsample ``x`` by zero insertion and filter with ``f`` (gain up**2); convolve with ``w``; when
``down > 1``, filter with ``f`` and keep every ``down``-th sample. ``padding`` is as in
``F.conv2d``, plus the padding that keeps the FIR filters centred (NVlabs stylegan2-ada-pytorch's
op of the same name). It is computed in the cheap order: down-sampling blurs first and strides the
convolution; up-sampling runs a strided transposed convolution and blurs its output. A 1x1 kernel
commutes with the filtering, so it runs at the low resolution: down-sampling filters and decimates
in one upfirdn2d and convolves the result (the discriminator's residual skip: a quarter of the
work of blurring at full resolution); up-sampling convolves first and up-samples the result.

``flip_weight=True`` correlates with ``w`` like ``F.conv2d``; ``flip_weight=False`` is a true
convolution, which makes the up-sampling path a plain ``F.conv_transpose2d`` (StyleGAN2's
choice there).
"""

from __future__ import annotations

import torch.nn.functional as F

from .upfirdn2d import _filter_size, _parse_padding, upfirdn2d


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False,
                    impl="auto"):
    """x [N, C*groups..., H, W], w [O, C, kh, kw], f the FIR filter (None: no filtering)."""
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be integers >= 1, got {up!r}, {down!r}")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    # Extra padding that centres the up- and down-sampling filters.
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if up == 1 and down == 1:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)
        x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], impl=impl)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    if kw == 1 and kh == 1 and up == 1:  # 1x1 down-sampling: decimate first
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    if kw == 1 and kh == 1 and down == 1:  # 1x1 up-sampling: convolve at the low resolution
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up, flip_filter=flip_filter,
                         impl=impl)

    if up == 1:  # down-sampling: blur, then a strided convolution
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Up-sampling: conv_transpose2d is the full convolution of the zero-stuffed input; the
    # generic order (pad, correlate) maps onto it by shifting the pads by the kernel size.
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    if flip_weight:
        wt = wt.flip([2, 3])
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    # Let the transposed convolution crop what both sides would crop anyway.
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    x = F.conv_transpose2d(x, wt, stride=up, padding=(pyt, pxt), groups=groups)
    x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up,
                  flip_filter=flip_filter, impl=impl)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x


def _conv(x, w, stride=1, padding=0, groups=1, flip_weight=True):
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
