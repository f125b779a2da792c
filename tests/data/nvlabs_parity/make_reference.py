"""Frozen reference values for tests/test_nvlabs_parity.py, produced by NVlabs stylegan2-ada-pytorch's own
ops (``torch_utils/ops``: upfirdn2d, bias_act, conv2d_resample with ``impl='ref'``, the CPU path),
``training/networks.py`` (modulated_conv2d, Generator, Discriminator) and ``train.py`` (its cfg_specs
table, read from the source without running it).

Rerun (writes reference.pt and cfg_specs.json beside this file; commit d72cc7d of
https://github.com/NVlabs/stylegan2-ada-pytorch was used):

    .venv/bin/python tests/data/nvlabs_parity/make_reference.py /path/to/stylegan2-ada-pytorch

Every case stores its inputs, its arguments and NVlabs' output; the test runs ours on the same inputs.
This script is never imported by the package or the tests.
"""
import ast
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def import_nvlabs(checkout):
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # dnnlib imports it for downloads only
    sys.path.insert(0, str(checkout))
    from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d
    from training import networks

    return bias_act, conv2d_resample, upfirdn2d, networks


def setup_filter_cases(upfirdn2d):
    cases = []
    for taps, kwargs in (([1, 3, 3, 1], {}), ([1, 2, 1], {"gain": 4, "flip_filter": True}),
                         (list(range(1, 9)), {}), ([1, 3, 3, 1], {"separable": True, "normalize": False})):
        cases.append({"taps": taps, "kwargs": kwargs, "out": upfirdn2d.setup_filter(taps, **kwargs)})
    return cases


def upfirdn2d_cases(upfirdn2d):
    """Random configurations valid for both (the padded input, at least 9*1-2 x 8*1-2, is never smaller
    than the filter, at most 6 taps)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cases = []
    for _ in range(40):
        up = [int(v) for v in rng.choice([1, 2, 4], size=2)]
        down = [int(v) for v in rng.choice([1, 2, 4], size=2)]
        taps = int(rng.integers(1, 7))
        f = torch.rand([taps] if rng.random() < 0.5 else [taps, int(rng.integers(1, 7))])
        pad = [int(v) for v in rng.integers(0, 5, size=4)] if rng.random() < 0.7 else \
            [int(v) for v in rng.integers(-1, 5, size=4)]
        x = torch.randn([1, 1, 9, 8])
        kwargs = dict(up=up, down=down, padding=pad, flip_filter=bool(rng.random() < 0.5), gain=float(rng.random() * 4))
        cases.append({"x": x, "f": f, "kwargs": kwargs, "out": upfirdn2d.upfirdn2d(x, f, impl="ref", **kwargs)})
    return cases


def bias_act_cases(bias_act):
    torch.manual_seed(1)
    cases = []
    for act in ("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"):
        x, b = torch.randn([3, 4, 5]) * 3, torch.randn([4])
        for kwargs in ({}, {"alpha": 0.3, "gain": 0.5, "clamp": 1.0}):
            if act == "elu" and "alpha" in kwargs:
                kwargs = {k: v for k, v in kwargs.items() if k != "alpha"}  # NVlabs' elu ignores alpha
            cases.append({"act": act, "x": x, "b": b, "kwargs": kwargs,
                          "out": bias_act.bias_act(x, b, act=act, impl="ref", **kwargs)})
    return cases


def conv2d_resample_cases(upfirdn2d, conv2d_resample):
    torch.manual_seed(2)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    cases = []
    for k in (1, 3):  # 1: our fast paths (decimate first / convolve first)
        for up, down in ((1, 1), (2, 1), (1, 2), (2, 2)):
            for flip_weight in (True, False):
                for groups in (1, 2):
                    x, w = torch.randn([1, 4, 6, 6]), torch.randn([4, 4 // groups, k, k])
                    for padding in (1, 0, [1, 2, 0, 1]):
                        kwargs = dict(up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight)
                        cases.append({"x": x, "w": w, "kwargs": kwargs,
                                      "out": conv2d_resample.conv2d_resample(x, w, f=f, **kwargs)})
    return cases


def modulated_conv2d_cases(upfirdn2d, networks):
    torch.manual_seed(3)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    cases = []
    for k in (1, 3, 5):
        for up, down in ((1, 1), (2, 1), (1, 2)):
            for demodulate in (True, False):
                for fused in (True, False):
                    x, weight, styles = torch.randn([2, 3, 6, 6]), torch.randn([4, 3, k, k]), torch.randn([2, 3])
                    kwargs = dict(up=up, down=down, padding=k // 2, demodulate=demodulate)
                    # StyleGAN2's synthesis layer: flip_weight only when not up-sampling
                    out = networks.modulated_conv2d(x, weight, styles, resample_filter=f, flip_weight=(up == 1),
                                                    fused_modconv=fused, **kwargs)
                    cases.append({"x": x, "weight": weight, "styles": styles, "fused": fused, "kwargs": kwargs,
                                  "out": out})
    return cases


def network_cases(networks):
    """NVlabs' G and D (8 mapping layers) with every parameter moved by N(0, 0.1^2) (biases and noise
    strengths start at 0), their outputs on fixed latents with constant noise."""
    cases = []
    for resolution in (8, 16):
        torch.manual_seed(resolution)
        kwargs = dict(channel_base=64, channel_max=16)
        G = networks.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=resolution, img_channels=3,
                               mapping_kwargs=dict(num_layers=8), synthesis_kwargs=kwargs).eval()
        D = networks.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, **kwargs).eval()
        with torch.no_grad():
            for p in list(G.parameters()) + list(D.parameters()):
                p.add_(torch.randn_like(p) * 0.1)
            z = torch.randn([4, 16])
            images = G(z, None, noise_mode="const")
            cases.append({"resolution": resolution, "kwargs": kwargs, "G": G.state_dict(), "D": D.state_dict(),
                          "z": z, "images": images, "logits": D(images, None)})
    return cases


def cfg_specs(checkout):
    """train.py's cfg_specs dict literal, read from the source (train.py is a click program)."""
    tree = ast.parse((Path(checkout) / "train.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "cfg_specs" for t in node.targets):
            call = node.value  # dict(name=dict(...), ...) with string keys
            table = ast.literal_eval(ast.Dict(keys=call.keys, values=[
                ast.Dict(keys=[ast.Constant(kw.arg) for kw in v.keywords], values=[kw.value for kw in v.keywords])
                for v in call.values]))
            return table
    raise SystemExit("cfg_specs not found in train.py")


def main():
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "training" / "networks.py").is_file():
        sys.exit("usage: make_reference.py /path/to/stylegan2-ada-pytorch (a checkout)")
    checkout = Path(sys.argv[1]).resolve()
    bias_act, conv2d_resample, upfirdn2d, networks = import_nvlabs(checkout)
    reference = {"setup_filter": setup_filter_cases(upfirdn2d), "upfirdn2d": upfirdn2d_cases(upfirdn2d),
                 "bias_act": bias_act_cases(bias_act),
                 "conv2d_resample": conv2d_resample_cases(upfirdn2d, conv2d_resample),
                 "modulated_conv2d": modulated_conv2d_cases(upfirdn2d, networks), "networks": network_cases(networks)}
    torch.save(reference, HERE / "reference.pt")
    (HERE / "cfg_specs.json").write_text(json.dumps(cfg_specs(checkout), indent=1) + "\n")
    print(f"wrote {HERE / 'reference.pt'} ({(HERE / 'reference.pt').stat().st_size / 1024:.0f} KiB) and cfg_specs.json")


if __name__ == "__main__":
    main()
