"""Same semantics as NVlabs stylegan2-ada-pytorch: our ops and networks against outputs of its own code.

tests/data/nvlabs_parity/reference.pt holds, case by case, the inputs, the arguments and what NVlabs'
ops (``impl='ref'``), ``modulated_conv2d`` and networks returned; cfg_specs.json is its train.py preset
table. make_reference.py beside them produced both from a checkout (its code is a test oracle, never
vendored) and says how to rerun it.
"""
import json
from pathlib import Path

import pytest
import torch

from stylenas.ops import bias_act, conv2d_resample, modulated_conv2d, setup_filter, upfirdn2d
from stylenas.train.imports.nvlabs import nvlabs_to_ours

DATA = Path(__file__).parent / "data" / "nvlabs_parity"


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA / "reference.pt", weights_only=True)


def test_setup_filter(reference):
    assert len(reference["setup_filter"]) == 4
    for case in reference["setup_filter"]:
        assert torch.equal(setup_filter(case["taps"], **case["kwargs"]), case["out"]), case["kwargs"]


def test_upfirdn2d(reference):
    """40 random configurations (up/down 1, 2, 4 per axis, 1-6 taps, 1-D and 2-D filters, negative
    padding, flipped filters, gains)."""
    assert len(reference["upfirdn2d"]) == 40
    for case in reference["upfirdn2d"]:
        got = upfirdn2d(case["x"], case["f"], impl="ref", **case["kwargs"])
        assert got.shape == case["out"].shape and torch.allclose(got, case["out"], atol=1e-5), case["kwargs"]


def test_bias_act(reference):
    acts = {case["act"] for case in reference["bias_act"]}
    assert acts == {"linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"}
    for case in reference["bias_act"]:
        got = bias_act(case["x"], case["b"], act=case["act"], impl="ref", **case["kwargs"])
        assert torch.allclose(got, case["out"], atol=1e-6), (case["act"], case["kwargs"])


def test_conv2d_resample(reference):
    """1x1 (our fast paths: decimate first / convolve first) and 3x3 kernels, up/down 1 and 2, both
    weight flips, 1 and 2 groups, three paddings."""
    f = setup_filter([1, 3, 3, 1])
    assert len(reference["conv2d_resample"]) == 96
    for case in reference["conv2d_resample"]:
        got = conv2d_resample(case["x"], case["w"], f=f, impl="ref", **case["kwargs"])
        assert got.shape == case["out"].shape and torch.allclose(got, case["out"], atol=1e-4), case["kwargs"]


def test_modulated_conv2d(reference):
    """Kernels 1, 3, 5; up 2, down 2 or neither; with and without demodulation; fused (grouped) and not."""
    f = setup_filter([1, 3, 3, 1])
    assert len(reference["modulated_conv2d"]) == 36
    for case in reference["modulated_conv2d"]:
        got = modulated_conv2d(case["x"], case["weight"], case["styles"], resample_filter=f, fused=case["fused"],
                               impl="ref", **case["kwargs"])
        assert got.shape == case["out"].shape and torch.allclose(got, case["out"], atol=1e-4), case["kwargs"]


def test_generator_and_discriminator_match_nvlabs_with_the_same_weights(reference):
    from stylenas.nn import Discriminator, Generator

    assert [case["resolution"] for case in reference["networks"]] == [8, 16]
    for case in reference["networks"]:
        g = Generator(case["resolution"], z_dim=16, w_dim=16, **case["kwargs"]).eval()
        d = Discriminator(case["resolution"], **case["kwargs"]).eval()
        state = nvlabs_to_ours(case["G"])
        state["mapping.w_avg"] = g.mapping.w_avg  # ours keeps one running mean per W_i (unused at psi 1)
        g.load_state_dict(state)
        d.load_state_dict(nvlabs_to_ours(case["D"]))
        with torch.no_grad():
            assert torch.allclose(g(case["z"], noise_mode="const"), case["images"], atol=1e-4, rtol=1e-4)
            assert torch.allclose(d(case["images"]), case["logits"], atol=1e-4, rtol=1e-4)


def test_presets_are_nvlabs_train_py_cfg_specs():
    """Our --cfg presets against train.py's cfg_specs (read from NVlabs' source into cfg_specs.json):
    the same values, but for the mapping depth of ``auto`` (8: genotypes choose among W_1..W_8)."""
    from stylenas.train.config import CFG_SPECS

    nvlabs = json.loads((DATA / "cfg_specs.json").read_text())
    for name in ("stylegan2", "paper256", "paper512", "paper1024", "auto"):
        ours = {k: v for k, v in CFG_SPECS[name].items() if k in nvlabs[name]}
        expected = dict(nvlabs[name], **({"map": 8} if name == "auto" else {}))
        assert ours == expected, name
    assert nvlabs["auto"]["map"] == 2
