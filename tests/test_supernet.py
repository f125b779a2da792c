"""The StyleGAN2 search space: mixed layers, micro/macro alphas, dynamic W, genotypes."""
import json

import pytest
import torch

from stylenas.nn import NUM_WS, synthesis_layout
from stylenas.nn.networks import w_slots
from stylenas.search import space_size
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
@pytest.mark.parametrize("dynamic_w,torgb_w", [(True, "tied"), (True, "free"), (False, "tied")])
def test_one_hot_supernet_equals_derived_discrete_network(space, dynamic_w, torgb_w):
    torch.manual_seed(0)
    supernet = SuperGenerator(16, z_dim=8, w_dim=8, space=space, dynamic_w=dynamic_w, torgb_w=torgb_w,
                              **CHANNELS).eval()
    for p in supernet.weight_parameters():  # noise strengths and biases start at zero
        p.data.add_(0.1 * torch.randn_like(p))
    one_hot_arch(supernet, seed=1 + (space == "macro") + 2 * dynamic_w + 4 * (torgb_w == "free"))
    genotype = supernet.genotype(CHANNELS)
    assert genotype.torgb_w == torgb_w
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
    # tied (default): one beta per conv plus the last toRGB's, StyleGAN2's 2 log2(R) - 2 = 8 at 32 px
    assert sorted(k for k in macro.synthesis.arch if k.startswith("beta_")) == sorted(
        [f"beta_{n.replace('.', '_')}" for n in conv_layers] + ["beta_b32_torgb"])
    free = SuperGenerator(32, z_dim=8, w_dim=8, space="macro", dynamic_w=True, torgb_w="free", **CHANNELS)
    assert len([k for k in free.synthesis.arch if k.startswith("beta_")]) == len(layout)
    micro_genotype = micro.genotype(CHANNELS)
    normal_ops = {layer["op"] for layer, (_, kind) in zip(micro_genotype.layers, layout) if kind == "normal"}
    assert len(normal_ops) == 1  # one choice for all normal layers


def test_tied_torgb_reads_the_latent_of_the_next_up_conv():
    """Fig. 1: tRGB_k receives L_k's latent; only the last toRGB has a beta of its own."""
    torch.manual_seed(0)
    g = SuperGenerator(16, z_dim=8, w_dim=8, space="macro", dynamic_w=True, **CHANNELS)
    net = g.synthesis
    assert net.beta_keys == ["beta_b4_conv1", "beta_b8_conv0", "beta_b8_conv0", "beta_b8_conv1", "beta_b16_conv0",
                             "beta_b16_conv0", "beta_b16_conv1", "beta_b16_torgb"]
    with torch.no_grad():
        net.arch["beta_b8_conv0"].copy_(torch.arange(NUM_WS, dtype=torch.float32))  # argmax W_8 -> now W_3
        net.arch["beta_b8_conv0"][2] = 100.0
    genotype = g.genotype(CHANNELS)
    by_name = {layer["name"]: layer for layer in genotype.layers}
    assert by_name["b4.torgb"]["w"] == by_name["b8.conv0"]["w"] == 3
    assert "w_weights" in by_name["b8.conv0"] and "w_weights" not in by_name["b4.torgb"]
    # the toRGB's latent is the mixture of b8.conv0's beta: changing it moves b4.torgb's input
    ws = torch.randn(2, NUM_WS, 8)
    assert torch.allclose(net.select_w(1, ws), net.select_w(2, ws))
    assert not torch.allclose(net.select_w(1, ws), net.select_w(0, ws))


def test_space_size_matches_the_paper():
    assert space_size(1024, "macro+dynamic_w") == 8 ** 18 * 3 ** 17  # section 4.2, ~2.3e24
    assert space_size(128, "micro+dynamic_w") == 9 * 8 ** 12  # Table 8, ~6.2e11
    assert f"{space_size(128, 'micro+dynamic_w'):.1e}" == "6.2e+11"
    # the rest of Table 8 (its macro 1024 px entry, 1.3e9, is 3^17 = 1.3e8 off by ten: 8^18 x 3^17 needs 3^17)
    assert [f"{space_size(r, p):.1e}" for r in (256, 1024) for p in ("micro+dynamic_w", "macro+dynamic_w")] == [
        "4.0e+13", "7.0e+18", "1.6e+17", "2.3e+24"]
    assert space_size(128, "macro") == 3 ** 11 and space_size(256, "micro") == 9 and space_size(4, "micro") == 3
    assert space_size(256, "original") == 1
    # free toRGB latents: one W choice per style layer (26 at 1024 px)
    assert space_size(1024, "macro+dynamic_w", "free") == 8 ** 26 * 3 ** 17
    assert space_size(1024, "macro", "free") == space_size(1024, "macro")
    assert len(set(w_slots(1024))) == 18 and len(w_slots(1024, "free")) == 26
    with pytest.raises(ValueError, match="paradigm must be one of"):
        space_size(256, "micro+dynamic")
    with pytest.raises(ValueError, match="torgb_w must be one of"):
        space_size(256, "micro", "loose")


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
    data = json.loads(path.read_text())
    assert data["format"] == "stylenas-genotype" and data["version"] == 2 and data["torgb_w"] == "tied"
    assert data["space_size"] == space_size(16, "macro+dynamic_w") == 3 ** 5 * 8 ** 6
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
    (lambda d: d.update(torgb_w="loose"), "torgb_w must be one of tied, free"),
    (lambda d: d.pop("torgb_w"), "missing key torgb_w"),
    (lambda d: d["layers"][1].update(w=3), "b4.torgb and b8.conv0 read one latent"),
])
def test_genotype_validation_errors_name_the_file(tmp_path, change, message):
    data = Genotype.original(16).to_dict()
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(GenotypeError, match=message) as info:
        Genotype.load(path)
    assert str(path) in str(info.value)


def version1(genotype):
    """The same genotype as a version-1 file (before toRGB latents could be tied)."""
    data = genotype.to_dict()
    data["version"] = 1
    del data["torgb_w"], data["space_size"]
    return data


def test_version_1_genotypes_read_as_what_they_were(tmp_path):
    torch.manual_seed(0)
    free = SuperGenerator(16, z_dim=8, w_dim=8, space="micro", torgb_w="free", **CHANNELS)
    one_hot_arch(free, seed=3)
    searched = free.genotype(CHANNELS)
    # a version-1 dynamic-W search gave every toRGB its own beta: read as free, same network
    loaded = Genotype.load(write(tmp_path, version1(searched)))
    assert loaded.torgb_w == "free" and loaded.layers == searched.layers
    # StyleGAN2 itself (all W_8) is tied: StyleGAN2's own w layout
    assert Genotype.load(write(tmp_path, version1(Genotype.original(16)))).torgb_w == "tied"
    # a hand-written version-1 file whose toRGB latent differs from its up conv's: free
    hand = version1(Genotype.original(16))
    hand["layers"][1]["w"] = 2
    assert Genotype.load(write(tmp_path, hand)).torgb_w == "free"
    assert Genotype.load(write(tmp_path, hand)).build_generator(8, 8, channel_base=256, channel_max=16) \
        .synthesis.w_indices[1] == 1


def test_genotype_file_errors(tmp_path):
    with pytest.raises(GenotypeError, match="not found"):
        Genotype.load(tmp_path / "missing.json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.load(write(tmp_path, "{not json"))
