"""bias_act against the activations written out by hand, its gradients, and the kernel's math."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stylenas.ops import ACTIVATIONS, bias_act
from stylenas.ops.bias_act import bias_act_function, reference_kernel

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def by_hand(z, act, alpha):
    """Each activation from its textbook formula (no torch.nn.functional)."""
    sig = 1 / (1 + torch.exp(-z))
    return {
        "linear": z,
        "relu": torch.where(z > 0, z, torch.zeros_like(z)),
        "lrelu": torch.where(z > 0, z, alpha * z),
        "tanh": (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)),
        "sigmoid": sig,
        "elu": torch.where(z > 0, z, alpha * (torch.exp(z) - 1)),
        "selu": SELU_SCALE * torch.where(z > 0, z, SELU_ALPHA * (torch.exp(z) - 1)),
        "softplus": torch.where(z > 20, z, torch.log(1 + torch.exp(z))),
        "swish": z * sig,
    }[act]


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_reference_matches_hand_formulas(act):
    torch.manual_seed(0)
    x = torch.randn([3, 4, 5], dtype=torch.float64) * 3
    b = torch.randn([4], dtype=torch.float64)
    spec = ACTIVATIONS[act]
    expected = by_hand(x + b[None, :, None], act, spec.alpha) * spec.gain
    assert torch.allclose(bias_act(x, b, act=act, impl="ref"), expected, atol=1e-12)
    # other dim, explicit alpha/gain, clamp
    b2 = torch.randn([5], dtype=torch.float64)
    expected = (by_hand(x + b2, act, 0.3 if act in ("lrelu", "elu") else spec.alpha) * 0.7).clamp(-0.5, 0.5)
    got = bias_act(x, b2, dim=2, act=act, alpha=0.3, gain=0.7, clamp=0.5, impl="ref")
    assert torch.allclose(got, expected, atol=1e-12)


def test_default_gains_match_stylegan2():
    assert ACTIVATIONS["lrelu"].alpha == 0.2 and ACTIVATIONS["lrelu"].gain == pytest.approx(math.sqrt(2))
    assert ACTIVATIONS["linear"].gain == 1 and ACTIVATIONS["relu"].gain == pytest.approx(math.sqrt(2))
    x = torch.tensor([[-1.0, 2.0]])
    assert torch.allclose(bias_act(x, act="lrelu", impl="ref"), torch.tensor([[-0.2, 2.0]]) * math.sqrt(2))


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_reference_gradcheck(act):
    x = (torch.randn([2, 3, 4], dtype=torch.float64) * 2).requires_grad_()
    b = torch.randn([3], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, act=act, clamp=1.5, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, [x, b])
    assert torch.autograd.gradgradcheck(fn, [x, b])


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [-1.0, 1.5])
def test_kernel_autograd_wiring_with_reference_kernel(act, clamp):
    """The CUDA path's Functions (forward, derivative, second derivative), driven by the
    kernel's contract in PyTorch, agree with the reference to second order."""
    torch.manual_seed(1)
    spec = ACTIVATIONS[act]
    fn = bias_act_function(1, act, spec.alpha, spec.gain, clamp, reference_kernel)
    x = (torch.randn([2, 3, 4], dtype=torch.float64) * 2).requires_grad_()
    b = torch.randn([3], dtype=torch.float64, requires_grad=True)
    ref = bias_act(x, b, act=act, clamp=None if clamp < 0 else clamp, impl="ref")
    assert torch.allclose(fn.apply(x, b), ref, atol=1e-12)
    assert torch.autograd.gradcheck(fn.apply, [x, b])
    assert torch.autograd.gradgradcheck(fn.apply, [x, b])


def test_kernel_wiring_without_bias_and_third_order_error():
    fn = bias_act_function(1, "tanh", 0.0, 1.0, -1.0, reference_kernel)
    x = torch.randn([2, 3], dtype=torch.float64, requires_grad=True)
    y = fn.apply(x, x.new_empty([0]))
    assert torch.allclose(y, torch.tanh(x))
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        gg.sum().backward()


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_kernel_matches_reference(emulated_extension, act):
    """The CUDA kernel (host-emulated build of csrc/): value, first and second derivative."""
    torch.manual_seed(2)
    spec = ACTIVATIONS[act]
    z = torch.cat([torch.randn(200, dtype=torch.float64) * 4, torch.tensor([25.0, -25.0], dtype=torch.float64)])
    dy = torch.randn_like(z)
    for clamp in (-1.0, 1.0):
        for order in (0, 1, 2):
            expected = reference_kernel(z, z.new_empty([0]), dy, 0, spec.code, order, spec.alpha, spec.gain, clamp)
            got = emulated_extension.bias_act(z, z.new_empty([0]), dy, 0, spec.code, order, spec.alpha, spec.gain,
                                              clamp)
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"order {order}")


def test_bad_input():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu2")
    with pytest.raises(ValueError, match="size x.shape"):
        bias_act(x, torch.randn(4))


@pytest.mark.parametrize("wrong_in_float16", [True, False])
def test_self_check_covers_float16(monkeypatch, wrong_in_float16):
    """The first-use self-check catches a kernel that is right in float32 and 5% off in float16."""
    from stylenas.ops import extension

    def kernel(x, *args):
        out = reference_kernel(x, *args)
        return out * 1.05 if wrong_in_float16 and x.dtype == torch.float16 else out

    monkeypatch.setattr(extension, "get_extension", lambda: SimpleNamespace(bias_act=kernel))
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    ok, error = extension.run_self_check("bias_act", torch.device("cpu"))
    assert ok != wrong_in_float16, error
