"""modulated_conv2d against a per-sample loop of F.conv2d / F.conv_transpose2d with explicitly
modulated weights and a scipy FIR blur; both forms; gradients to second order."""
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from stylenas.ops import conv2d_resample, demodulation_coefficients, modulated_conv2d, setup_filter
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
