"""The CUDA kernels against their references: on a GPU (skipped without one), and through the
host emulation of csrc/emulation.h on CPU tensors (the same kernels, launchers and bindings,
one host thread per CUDA thread), so every case also runs on a machine without a GPU.
"""
import pytest
import torch

from stylenas.ops import ACTIVATIONS, bias_act, modulated_conv2d, setup_filter, upfirdn2d
from stylenas.ops import extension

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}


@pytest.fixture
def device(kernel_device):
    return kernel_device


def assert_close(actual, expected, dtype):
    assert extension.relative_error(actual, expected) <= TOLERANCE[dtype]


def forward_backward(fn, inputs, impl, seed=0):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    y = fn(*inputs, impl=impl)
    dy = torch.randn(y.shape, generator=torch.Generator(device=y.device).manual_seed(seed), device=y.device,
                     dtype=y.dtype)
    return y, torch.autograd.grad(y, inputs, dy)


def compare(fn, inputs, dtype):
    y_cuda, g_cuda = forward_backward(fn, inputs, "cuda")
    y_ref, g_ref = forward_backward(fn, inputs, "ref")
    assert y_cuda.dtype == y_ref.dtype and y_cuda.shape == y_ref.shape
    assert_close(y_cuda, y_ref, dtype)
    for a, b in zip(g_cuda, g_ref):
        assert_close(a, b, dtype)


def test_self_checks_pass(device):
    extension.get_extension()
    for op in ("upfirdn2d", "bias_act", "modulated_conv2d"):
        ok, error = extension.run_self_check(op, torch.device(device))
        assert ok, (op, error)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("up,down,pad,taps", [(2, 1, [2, 1, 2, 1], 4), (1, 2, [1, 1, 1, 1], 4), (1, 1, [1, 1, 1, 1], 3),
                                              (4, 1, [3, 2, 3, 2], 6), (1, 4, [-1, 2, 0, 3], 5),
                                              ([2, 1], [1, 2], [1, 0, 2, -1], 3)])
def test_upfirdn2d(dtype, up, down, pad, taps, device):
    torch.manual_seed(0)
    x = torch.randn([3, 5, 13, 11], device=device, dtype=dtype)
    for f in (setup_filter(torch.rand(taps) + 0.1, device=device),
              torch.rand([taps, taps + 1], device=device)):
        for flip, gain in ((False, 1.0), (True, 2.5)):
            fn = lambda x, impl: upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain,  # noqa
                                           impl=impl)
            compare(fn, [x], dtype)


def test_upfirdn2d_large_grid(device):
    x = torch.randn([8, 64, 64, 64], device=device)
    f = setup_filter([1, 3, 3, 1], device=device)
    compare(lambda x, impl: upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl=impl), [x], torch.float32)


def test_upfirdn2d_more_planes_than_grid_rows(device):
    """N * C above the 65535 grid rows: the kernel loops over planes."""
    x = torch.randn([70000, 1, 1, 2], device=device)
    f = torch.tensor([[0.5, 2.0]], device=device)
    compare(lambda x, impl: upfirdn2d(x, f, padding=[1, 0, 0, 0], impl=impl), [x], torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_bias_act(dtype, act, device):
    torch.manual_seed(1)
    x = torch.randn([4, 6, 5, 3], device=device, dtype=dtype) * 2
    b = torch.randn([6], device=device, dtype=dtype)
    for clamp in (None, 0.8):
        compare(lambda x, b, impl: bias_act(x, b, act=act, clamp=clamp, impl=impl), [x, b], dtype)
    b3 = torch.randn([3], device=device, dtype=dtype)
    compare(lambda x, b, impl: bias_act(x, b, dim=3, act=act, impl=impl), [x, b3], dtype)


@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "softplus"])
def test_bias_act_second_order(act, device):
    x = torch.randn([2, 3, 4], device=device, dtype=torch.float64, requires_grad=True)
    b = torch.randn([3], device=device, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, act=act, clamp=1.5, impl="cuda")  # noqa: E731
    assert torch.autograd.gradcheck(fn, [x, b])
    assert torch.autograd.gradgradcheck(fn, [x, b])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d(dtype, k, up, down, demodulate, device):
    torch.manual_seed(2)
    x = torch.randn([3, 8, 8, 8], device=device, dtype=dtype)
    weight = torch.randn([6, 8, k, k], device=device, dtype=dtype)
    styles = torch.randn([3, 8], device=device, dtype=dtype) + 1
    for fused in (True, False):
        fn = lambda x, w, s, impl: modulated_conv2d(x, w, s, demodulate=demodulate, up=up, down=down,  # noqa
                                                    padding=k // 2, fused=fused, impl=impl)
        compare(fn, [x, weight, styles], dtype)


def test_modulated_conv2d_second_order(device):
    x = torch.randn([2, 3, 4, 4], device=device, dtype=torch.float64, requires_grad=True)
    weight = torch.randn([4, 3, 3, 3], device=device, dtype=torch.float64, requires_grad=True)
    styles = (torch.randn([2, 3], device=device, dtype=torch.float64) + 1).requires_grad_()
    for up in (1, 2):
        fn = lambda x, w, s: modulated_conv2d(x, w, s, up=up, padding=1, fused=True, impl="cuda")  # noqa
        assert torch.autograd.gradcheck(fn, [x, weight, styles])
        assert torch.autograd.gradgradcheck(fn, [x, weight, styles])


def test_auto_dispatch_uses_kernels_without_warnings(recwarn, device):
    extension._self_check_results.clear()
    x = torch.randn([2, 4, 8, 8], device=device)
    f = setup_filter([1, 3, 3, 1], device=device)
    upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1])
    bias_act(x, torch.zeros(4, device=device), act="lrelu")
    with torch.no_grad():
        modulated_conv2d(x, torch.randn([3, 4, 3, 3], device=device), torch.randn([2, 4], device=device), padding=1)
    assert all(extension._self_check_results.values()) and len(extension._self_check_results) == 3
    assert not [w for w in recwarn if "stylenas" in str(w.message)]
