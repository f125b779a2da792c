"""The StyleGAN2 search space: mixed layers, micro/macro alphas, dynamic W, genotypes."""
import json

import pytest
import torch

from stylenas.nn import NUM_WS, synthesis_layout
from stylenas.search.genotype import Genotype, GenotypeError
from stylenas.search.supernet import SuperGenerator

CHANNELS = dict(channel_base=256, channel_max=16, channel_mult=1.0)


def one_hot_arch(supernet, seed):
    """Random one-hot alphas and betas: softmax gives exactly 0 and 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in supernet.arch_parameters():
            p.fill_(-1e4)
            p[torch.randint(len(p), [1], generator=gen)] = 0.0


@pytest.mark.parametrize("space", ["micro", "macro"])
@pytest.mark.parametrize("dynamic_w", [True, False])
def test_one_hot_supernet_equals_derived_discrete_network(space, dynamic_w):
    torch.manual_seed(0)
    supernet = SuperGenerator(16, z_dim=8, w_dim=8, space=space, dynamic_w=dynamic_w, **CHANNELS).eval()
    for p in supernet.weight_parameters():  # noise strengths and biases start at zero
        p.data.add_(0.1 * torch.randn_like(p))
    one_hot_arch(supernet, seed=1 + (space == "macro") + 2 * dynamic_w)
    genotype = supernet.genotype(CHANNELS)
    discrete = genotype.build_generator(z_dim=8, w_dim=8).eval()
    discrete.load_state_dict(supernet.discrete_state_dict(genotype))
    z = torch.randn(3, 8)
    with torch.no_grad():
        expected = supernet(z, noise_mode="const")
        got = discrete(z, noise_mode="const")
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    if not dynamic_w:
        assert all(layer["w"] == NUM_WS for layer in genotype.layers)


def test_micro_shares_alphas_macro_does_not():
    micro = SuperGenerator(32, z_dim=8, w_dim=8, space="micro", dynamic_w=False, **CHANNELS)
    macro = SuperGenerator(32, z_dim=8, w_dim=8, space="macro", dynamic_w=True, **CHANNELS)
    assert sorted(micro.synthesis.arch) == ["alpha_normal", "alpha_up"]
    layout = synthesis_layout(32)
    conv_layers = [n for n, k in layout if k != "torgb"]
    assert len([k for k in macro.synthesis.arch if k.startswith("alpha_")]) == len(conv_layers)
    assert len([k for k in macro.synthesis.arch if k.startswith("beta_")]) == len(layout)
    micro_genotype = micro.genotype(CHANNELS)
    normal_ops = {layer["op"] for layer, (_, kind) in zip(micro_genotype.layers, layout) if kind == "normal"}
    assert len(normal_ops) == 1  # one choice for all normal layers


def test_gradients_reach_alphas_and_betas_and_the_parameter_groups_are_disjoint():
    torch.manual_seed(0)
    g = SuperGenerator(8, z_dim=8, w_dim=8, space="macro", dynamic_w=True, **CHANNELS)
    arch, weights = g.arch_parameters(), g.weight_parameters()
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert len(arch) + len(weights) == len(list(g.parameters()))
    g(torch.randn(2, 8)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch)


def test_original_genotype_builds_config_f():
    g = Genotype.original(1024).build_generator()
    assert sum(p.numel() for p in g.parameters()) == 30370060
    assert all(layer["w"] == 8 for layer in Genotype.original(256).layers)


def test_genotype_json_round_trip(tmp_path):
    torch.manual_seed(0)
    genotype = SuperGenerator(16, z_dim=8, w_dim=8, space="macro", **CHANNELS).genotype(
        CHANNELS, source={"run": "test"})
    path = tmp_path / "g" / "genotype.json"
    genotype.save(path)
    loaded = Genotype.load(path)
    assert loaded == genotype
    assert json.loads(path.read_text())["format"] == "stylenas-genotype"
    assert list(tmp_path.joinpath("g").iterdir()) == [path]  # no temporary file left


def write(tmp_path, data):
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("change,message", [
    (lambda d: d["layers"][2].update(op="conv_7x7"), "op must be one of deconv"),
    (lambda d: d["layers"][0].update(op="deconv"), "normal layer"),
    (lambda d: d["layers"][1].update(w=9), "w must be an integer in 1..8"),
    (lambda d: d["layers"][1].update(w=0), "w must be an integer in 1..8"),
    (lambda d: d["layers"].pop(), "8 style layers"),
    (lambda d: d["layers"][3].update(name="b8.convX"), "expected layer 'b8.conv1'"),
    (lambda d: d.update(resolution=12), "power of two"),
    (lambda d: d.update(search_space="autogan"), "unknown search space"),
    (lambda d: d.update(format="something"), "not a StyleNAS genotype"),
    (lambda d: d.update(version=7), "version"),
])
def test_genotype_validation_errors_name_the_file(tmp_path, change, message):
    data = Genotype.original(16).to_dict()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(GenotypeError, match=message) as info:
        Genotype.load(path)
    assert str(path) in str(info.value)


def test_genotype_file_errors(tmp_path):
    with pytest.raises(GenotypeError, match="not found"):
        Genotype.load(tmp_path / "missing.json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.load(write(tmp_path, "{not json"))
