"""Same semantics as NVlabs stylegan2-ada-pytorch: our ops against its reference ops.

Skipped unless STYLENAS_NVLABS names a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch
(its code is a test oracle here, never vendored): STYLENAS_NVLABS=/path/to/checkout make test.
Its dnnlib imports `requests`, so that must be installed too. Once it is set, every case runs: a
checkout that does not import, or a case either side rejects, fails the test.
"""
import os
import sys

import numpy as np
import pytest
import torch

from stylenas.ops import bias_act, conv2d_resample, modulated_conv2d, setup_filter, upfirdn2d
from stylenas.train.imports.nvlabs import nvlabs_to_ours

NVLABS = os.environ.get("STYLENAS_NVLABS")
pytestmark = pytest.mark.skipif(not NVLABS, reason="STYLENAS_NVLABS (a stylegan2-ada-pytorch checkout) not set")


@pytest.fixture(scope="module")
def nv():
    sys.path.insert(0, NVLABS)
    try:
        from torch_utils.ops import bias_act as nv_bias_act
        from torch_utils.ops import conv2d_resample as nv_conv2d_resample
        from torch_utils.ops import upfirdn2d as nv_upfirdn2d
        from training import networks as nv_networks
    except ImportError as error:
        pytest.fail(f"STYLENAS_NVLABS={NVLABS}: cannot import stylegan2-ada-pytorch's ops and networks ({error})")
    finally:
        sys.path.remove(NVLABS)
    return {"upfirdn2d": nv_upfirdn2d, "bias_act": nv_bias_act, "conv2d_resample": nv_conv2d_resample,
            "networks": nv_networks}


def test_setup_filter(nv):
    for taps, kwargs in (([1, 3, 3, 1], {}), ([1, 2, 1], {"gain": 4, "flip_filter": True}),
                         (list(range(1, 9)), {}), ([1, 3, 3, 1], {"separable": True, "normalize": False})):
        assert torch.equal(setup_filter(taps, **kwargs), nv["upfirdn2d"].setup_filter(taps, **kwargs))


def test_upfirdn2d(nv):
    """Random configurations, all valid for both (the padded input, at least 9*1-2 x 8*1-2, is never
    smaller than the filter, at most 6 taps): any error fails the test."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        up = [int(v) for v in rng.choice([1, 2, 4], size=2)]
        down = [int(v) for v in rng.choice([1, 2, 4], size=2)]
        taps = int(rng.integers(1, 7))
        f = torch.rand([taps] if rng.random() < 0.5 else [taps, int(rng.integers(1, 7))])
        pad = [int(v) for v in rng.integers(0, 5, size=4)] if rng.random() < 0.7 else \
            [int(v) for v in rng.integers(-1, 5, size=4)]
        x = torch.randn([2, 3, 9, 8])
        kwargs = dict(up=up, down=down, padding=pad, flip_filter=bool(rng.random() < 0.5), gain=float(rng.random() * 4))
        expected = nv["upfirdn2d"].upfirdn2d(x, f, impl="ref", **kwargs)
        got = upfirdn2d(x, f, impl="ref", **kwargs)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5), kwargs


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"])
def test_bias_act(nv, act):
    x, b = torch.randn([3, 4, 5]) * 3, torch.randn([4])
    for kwargs in ({}, {"alpha": 0.3, "gain": 0.5, "clamp": 1.0}):
        if act == "elu" and "alpha" in kwargs:
            kwargs = {k: v for k, v in kwargs.items() if k != "alpha"}  # NVlabs' elu ignores alpha
        assert torch.allclose(bias_act(x, b, act=act, impl="ref", **kwargs),
                              nv["bias_act"].bias_act(x, b, act=act, impl="ref", **kwargs), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])  # 1: the fast paths (decimate first / convolve first)
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("flip_weight", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_resample(nv, k, up, down, flip_weight, groups):
    torch.manual_seed(0)
    f = setup_filter([1, 3, 3, 1])
    x, w = torch.randn([2, 4, 8, 8]), torch.randn([6, 4 // groups, k, k])
    for padding in (1, 0, [1, 2, 0, 1]):
        expected = nv["conv2d_resample"].conv2d_resample(x, w, f=f, up=up, down=down, padding=padding,
                                                         groups=groups, flip_weight=flip_weight)
        got = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight,
                              impl="ref")
        assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d(nv, k, up, down, demodulate, fused):
    torch.manual_seed(1)
    f = setup_filter([1, 3, 3, 1])
    x, weight, styles = torch.randn([3, 4, 8, 8]), torch.randn([5, 4, k, k]), torch.randn([3, 4])
    # StyleGAN2's synthesis layer: flip_weight only when not up-sampling
    expected = nv["networks"].modulated_conv2d(x, weight, styles, up=up, down=down, padding=k // 2,
                                               resample_filter=f, demodulate=demodulate, flip_weight=(up == 1),
                                               fused_modconv=fused)
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, down=down, padding=k // 2,
                           resample_filter=f, fused=fused, impl="ref")
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("resolution", [8, 32])
def test_generator_and_discriminator_match_nvlabs_with_the_same_weights(nv, resolution):
    from stylenas.nn import Discriminator, Generator

    torch.manual_seed(0)
    kwargs = dict(channel_base=256, channel_max=32)
    nv_g = nv["networks"].Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=resolution, img_channels=3,
                                    mapping_kwargs=dict(num_layers=8), synthesis_kwargs=kwargs).eval()
    nv_d = nv["networks"].Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, **kwargs).eval()
    for p in list(nv_g.parameters()) + list(nv_d.parameters()):  # biases and noise strengths start at 0
        p.data.add_(torch.randn_like(p) * 0.1)
    g = Generator(resolution, z_dim=16, w_dim=16, **kwargs).eval()
    d = Discriminator(resolution, **kwargs).eval()
    state = nvlabs_to_ours(nv_g.state_dict())
    state["mapping.w_avg"] = g.mapping.w_avg  # ours keeps one running mean per W_i
    g.load_state_dict(state)
    d.load_state_dict(nvlabs_to_ours(nv_d.state_dict()))
    z = torch.randn([4, 16])
    with torch.no_grad():
        expected = nv_g(z, None, noise_mode="const")
        got = g(z, noise_mode="const")
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
        assert torch.allclose(d(expected), nv_d(expected, None), atol=1e-4, rtol=1e-4)
