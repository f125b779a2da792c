"""modulated_conv2d against a per-sample loop of F.conv2d / F.conv_transpose2d with explicitly
modulated weights and a scipy FIR blur; both forms; gradients to second order."""
import importlib
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from stylenas.ops import conv2d_resample, demodulation_coefficients, extension, modulated_conv2d, setup_filter
from stylenas.ops import upfirdn2d
from stylenas.ops.modulated_conv2d import modulate_function, modulate_weight_ref, reference_kernel

BLUR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


def blur_full(y, gain):
    """Full 2-D convolution of every [H, W] plane of y with the [1,3,3,1] filter."""
    out = [[scipy.signal.convolve2d(y[n, c], BLUR * gain, mode="full") for c in range(y.shape[1])]
           for n in range(y.shape[0])]
    return torch.from_numpy(np.array(out))


def oracle(x, weight, styles, demodulate, up, down):
    """One sample at a time; padding k // 2 keeps H x W (up: 2H x 2W, down: H/2 x W/2)."""
    k = weight.shape[-1]
    p = k // 2
    outputs = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w / torch.sqrt((w ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xn = x[n:n + 1]
        if up == 2:
            # transposed conv (stride 2), then the blur with gain 4, cropped symmetrically to 2H
            y = blur_full(F.conv_transpose2d(xn, w.transpose(0, 1), stride=2).numpy(), gain=4)
            crop = (y.shape[-1] - 2 * x.shape[-1]) // 2
            y = y[:, :, crop:crop + 2 * x.shape[-2], crop:crop + 2 * x.shape[-1]]
        elif down == 2:
            # blur (cropped so that it stays centred), then a stride-2 convolution
            y = blur_full(xn.numpy(), gain=1)
            c = 2 - p
            y = F.conv2d(y[:, :, c:y.shape[2] - c, c:y.shape[3] - c], w, stride=2)
        else:
            y = F.conv2d(xn, w, padding=p)
        outputs.append(y)
    return torch.cat(outputs)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_matches_per_sample_oracle(k, up, down, demodulate):
    torch.manual_seed(k * 10 + up * 3 + down)
    x = torch.randn([3, 4, 8, 8], dtype=torch.float64)
    weight = torch.randn([5, 4, k, k], dtype=torch.float64)
    styles = torch.randn([3, 4], dtype=torch.float64) + 1
    expected = oracle(x, weight, styles, demodulate, up, down)
    for fused in (True, False):
        y = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, down=down, padding=k // 2,
                             fused=fused, impl="ref")
        assert y.shape == expected.shape
        assert torch.allclose(y, expected, atol=1e-10), (fused, (y - expected).abs().max())


def test_fused_default_follows_grad_mode():
    x, weight, styles = torch.randn([2, 3, 6, 6]), torch.randn([4, 3, 3, 3]), torch.randn([2, 3])
    with torch.no_grad():
        inference = modulated_conv2d(x, weight, styles, padding=1)
    training = modulated_conv2d(x, weight, styles, padding=1)
    assert torch.allclose(inference, training, atol=1e-5)


def test_demodulation_is_scale_invariant():
    """What the float16 path relies on: per-output-channel weight scales and per-sample style
    scales cancel out."""
    torch.manual_seed(3)
    x, weight, styles = torch.randn([2, 3, 6, 6]), torch.randn([4, 3, 3, 3]), torch.randn([2, 3])
    base = modulated_conv2d(x, weight, styles, padding=1, fused=False, impl="ref")
    scaled = modulated_conv2d(x, weight * torch.rand([4, 1, 1, 1]) * 5, styles * torch.tensor([[3.0], [0.2]]),
                              padding=1, fused=False, impl="ref")
    assert torch.allclose(base, scaled, atol=1e-4)


def test_demodulation_coefficients_match_explicit_sum():
    weight, styles = torch.randn([5, 4, 3, 3], dtype=torch.float64), torch.randn([2, 4], dtype=torch.float64)
    w = weight[None] * styles[:, None, :, None, None]
    expected = 1 / torch.sqrt((w ** 2).sum(dim=[2, 3, 4]) + 1e-8)
    assert torch.allclose(demodulation_coefficients(weight, styles), expected)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
def test_reference_gradients_to_second_order(fused, up, down):
    torch.manual_seed(4)
    x = torch.randn([2, 2, 4, 4], dtype=torch.float64, requires_grad=True)
    weight = torch.randn([3, 2, 3, 3], dtype=torch.float64, requires_grad=True)
    styles = (torch.randn([2, 2], dtype=torch.float64) + 1).requires_grad_()
    fn = lambda x, w, s: modulated_conv2d(x, w, s, up=up, down=down, padding=1, fused=fused, impl="ref")  # noqa
    assert torch.autograd.gradcheck(fn, [x, weight, styles])
    assert torch.autograd.gradgradcheck(fn, [x, weight, styles])


@pytest.mark.parametrize("demodulate", [True, False])
def test_kernel_autograd_wiring_with_reference_kernel(demodulate):
    """The CUDA path's hand-written backward of the modulation, to second order."""
    torch.manual_seed(5)
    weight = torch.randn([3, 2, 3, 3], dtype=torch.float64, requires_grad=True)
    styles = (torch.randn([2, 2], dtype=torch.float64) + 1).requires_grad_()
    fn = modulate_function(demodulate, reference_kernel)
    assert torch.allclose(fn.apply(weight, styles), modulate_weight_ref(weight, styles, demodulate))
    assert torch.autograd.gradcheck(fn.apply, [weight, styles])
    assert torch.autograd.gradgradcheck(fn.apply, [weight, styles])


def test_grouped_conv2d_resample_equals_per_group():
    torch.manual_seed(6)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn([1, 6, 5, 5], dtype=torch.float64)
    w = torch.randn([4, 3, 3, 3], dtype=torch.float64)
    for up, down in ((1, 1), (2, 1), (1, 2), (2, 2)):
        grouped = conv2d_resample(x, w, f.double(), up=up, down=down, padding=1, groups=2, impl="ref")
        parts = [conv2d_resample(x[:, 3 * g:3 * g + 3], w[2 * g:2 * g + 2], f.double(), up=up, down=down,
                                 padding=1, impl="ref") for g in range(2)]
        assert torch.allclose(grouped, torch.cat(parts, dim=1), atol=1e-12)


def test_bad_shapes():
    with pytest.raises(ValueError, match="mismatch"):
        modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(4, 2, 3, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="expected x"):
        modulated_conv2d(torch.randn(3, 4, 4), torch.randn(4, 3, 3, 3), torch.randn(1, 3))


def embed_3x3(w):
    """The 1x1 kernel w as a 3x3 kernel with zeros around it: conv2d_resample with padding p + 1
    computes the same thing through its general (non-1x1) path."""
    w3 = torch.zeros([*w.shape[:2], 3, 3], dtype=w.dtype)
    w3[:, :, 1, 1] = w[:, :, 0, 0]
    return w3


def conv1x1_oracle(x, w, f, up, down, padding, flip_filter):
    """NVlabs' definition in numpy/scipy: up-sample and filter (gain up^2), 1x1 convolution,
    filter and decimate, with the centring padding of conv2d_resample's docstring."""
    from test_upfirdn2d import oracle

    fh, fw = f.shape
    if up > 1:
        pad = (padding + (fw + up - 1) // 2, padding + (fw - up) // 2, padding + (fh + up - 1) // 2,
               padding + (fh - up) // 2)
        x = oracle(x, f, (up, up), (1, 1), pad, flip_filter, up * up)
    y = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x)
    if down > 1:
        pad = (padding + (fw - down + 1) // 2, padding + (fw - down) // 2, padding + (fh - down + 1) // 2,
               padding + (fh - down) // 2)
        y = oracle(y, f, (1, 1), (down, down), pad, flip_filter)
    return y


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2), (4, 1), (1, 4)])
def test_1x1_fast_paths_equal_general_path_and_oracle(up, down):
    """1x1 kernels run at the low resolution (decimate, then convolve; convolve, then up-sample):
    same values and gradients as the general path and the numpy/scipy oracle."""
    torch.manual_seed(7)
    asymmetric = torch.rand([3, 4], dtype=torch.float64) + 0.1  # shows a wrong flip or centring
    for f in (setup_filter([1, 3, 3, 1]).double(), asymmetric):
        for padding, groups, flip_weight, flip_filter in ((0, 1, True, False), (1, 2, False, True)):
            x = torch.randn([2, 4, 8, 8], dtype=torch.float64, requires_grad=True)
            w = torch.randn([6, 4 // groups, 1, 1], dtype=torch.float64, requires_grad=True)
            kwargs = dict(up=up, down=down, groups=groups, flip_weight=flip_weight, flip_filter=flip_filter,
                          impl="ref")
            fast = conv2d_resample(x, w, f, padding=padding, **kwargs)
            general = conv2d_resample(x, embed_3x3(w), f, padding=padding + 1, **kwargs)
            assert fast.shape == general.shape
            assert torch.allclose(fast, general, atol=1e-12)
            dy = torch.randn(fast.shape, dtype=torch.float64)
            g_fast = torch.autograd.grad(fast, [x, w], dy)
            g_general = torch.autograd.grad(general, [x, w], dy)
            assert torch.allclose(g_fast[0], g_general[0], atol=1e-12)
            assert torch.allclose(g_fast[1], g_general[1][:, :, 1:2, 1:2], atol=1e-12)
            if groups == 1:
                expected = conv1x1_oracle(x.detach().numpy(), w.detach().numpy(), f.numpy(), up, down, padding,
                                          flip_filter)
                np.testing.assert_allclose(fast.detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    size = 4 if down > 1 else 2  # small: gradgradcheck also perturbs every output's gradient
    x = torch.randn([1, 1, size, size], dtype=torch.float64, requires_grad=True)
    w = torch.randn([2, 1, 1, 1], dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: conv2d_resample(x, w, asymmetric, up=up, down=down, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, [x, w])
    assert torch.autograd.gradgradcheck(fn, [x, w])


def test_1x1_down_sampling_never_filters_at_full_resolution(monkeypatch):
    """The discriminator's residual skip: one upfirdn2d that filters and decimates, then the 1x1
    convolution on the quarter-size result (no full-resolution blur, no strided convolution)."""
    module = importlib.import_module("stylenas.ops.conv2d_resample")
    calls = []

    def recording_upfirdn2d(x, f, **kwargs):
        y = upfirdn2d(x, f, **kwargs)
        calls.append((tuple(x.shape), kwargs.get("up", 1), kwargs.get("down", 1), tuple(y.shape)))
        return y

    def recording_conv(x, w, stride=1, **kwargs):
        calls.append(("conv", tuple(x.shape), stride))
        return conv(x, w, stride=stride, **kwargs)

    conv = module._conv
    monkeypatch.setattr(module, "upfirdn2d", recording_upfirdn2d)
    monkeypatch.setattr(module, "_conv", recording_conv)
    conv2d_resample(torch.randn([2, 4, 16, 16]), torch.randn([8, 4, 1, 1]), setup_filter([1, 3, 3, 1]), down=2)
    assert calls == [((2, 4, 16, 16), 1, 2, (2, 4, 8, 8)), ("conv", (2, 4, 8, 8), 1)]
    calls.clear()
    conv2d_resample(torch.randn([2, 4, 8, 8]), torch.randn([8, 4, 1, 1]), setup_filter([1, 3, 3, 1]), up=2)
    assert calls == [("conv", (2, 4, 8, 8), 1), ((2, 8, 8, 8), 2, 1, (2, 8, 16, 16))]


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
def test_1x1_fast_paths_on_the_kernel(up, down, kernel_device):
    """The 1x1 paths through the CUDA dispatch (upfirdn2d kernel with flip and gain) against the
    reference general path, forward and gradients."""
    torch.manual_seed(8)
    f = torch.rand([4, 4]) + 0.1
    x = torch.randn([2, 4, 8, 8])
    w = torch.randn([6, 2, 1, 1])
    results = []
    for impl, weight, padding in (("cuda", w, 1), ("ref", embed_3x3(w), 2)):
        xi, wi = x.clone().to(kernel_device).requires_grad_(), weight.clone().to(kernel_device).requires_grad_()
        y = conv2d_resample(xi, wi, f.to(kernel_device), up=up, down=down, padding=padding, groups=2,
                            flip_filter=True, impl=impl)
        dy = torch.ones_like(y) + torch.arange(y.numel(), device=y.device).reshape(y.shape) % 3
        results.append((y, *torch.autograd.grad(y, [xi, wi], dy)))
    (y_cuda, gx_cuda, gw_cuda), (y_ref, gx_ref, gw_ref) = results
    assert extension.relative_error(y_cuda, y_ref) < 1e-5
    assert extension.relative_error(gx_cuda, gx_ref) < 1e-5
    assert extension.relative_error(gw_cuda, gw_ref[:, :, 1:2, 1:2]) < 1e-5


@pytest.mark.parametrize("wrong_in_float16", [True, False])
def test_self_check_covers_float16(monkeypatch, wrong_in_float16):
    """The first-use self-check catches a modulation kernel right in float32, 5% off in float16."""
    def modulate(weight, styles, demodulate, eps):
        w = modulate_weight_ref(weight, styles, demodulate, eps)
        return w * 1.05 if wrong_in_float16 and weight.dtype == torch.float16 else w

    monkeypatch.setattr(extension, "get_extension", lambda: SimpleNamespace(modulate=modulate))
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    ok, error = extension.run_self_check("modulated_conv2d", torch.device("cpu"))
    assert ok != wrong_in_float16, error
