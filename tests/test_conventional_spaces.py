"""alphaGAN-on-AutoGAN-cells and DEGAS search spaces: supernets vs derived networks, space size,
pruning (GLO's reconstruction loss: tests/test_degas.py)."""
import pytest
import torch

from stylenas.conventional.spaces.alphagan_cells import AlphaGANSuperGenerator, space_size
from stylenas.conventional.spaces.degas_dag import DegasSuperGenerator, edge_key, kept_edges, layout, prune
from stylenas.conventional.networks import build_generator
from stylenas.conventional.ops import DEGAS_NORMAL_OPS, DEGAS_UP_OPS


def one_hot_(arch, seed):
    """Random one-hot alphas: softmax is exactly 1 on one op, 0 elsewhere (exp(-1e4) == 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in arch.values():
            choice = torch.randint(value.shape[-1], value.shape[:-1] + (1,), generator=gen)
            value.copy_(torch.full_like(value, -1e4).scatter_(-1, choice, 0.0))


def test_alphagan_space_size():
    assert space_size() == 6 ** 9 * 3 ** 6 * 3 ** 3 == (6 ** 3 * 3 ** 2) ** 3 * 3 ** 3
    assert 1.9e11 < space_size() < 2.1e11  # "about 2e11", section 4.2


@pytest.mark.parametrize("seed", [0, 1])
def test_alphagan_one_hot_supernet_equals_derived_network(seed):
    torch.manual_seed(seed)
    G = AlphaGANSuperGenerator(resolution=16, gf_dim=8, latent_dim=16)
    one_hot_(G.arch, seed)
    genotype = G.genotype()
    discrete = build_generator(genotype, resolution=16, gf_dim=8, latent_dim=16)
    discrete.load_state_dict(G.discrete_state_dict(genotype))  # strict: every weight has its place
    z = torch.randn(4, 16)
    torch.testing.assert_close(G(z), discrete(z), rtol=0, atol=0)
    assert len(G.arch_parameters()) == 8 and not set(map(id, G.arch_parameters())) & set(map(id, G.weight_parameters()))


@pytest.mark.parametrize("seed", [0, 1])
def test_degas_one_hot_supernet_equals_pruned_network(seed):
    torch.manual_seed(seed)
    G = DegasSuperGenerator(resolution=16, gf_dim=8, latent_dim=16)
    one_hot_(G.arch, seed)
    genotype = G.genotype()
    discrete = build_generator(genotype, resolution=16, gf_dim=8, latent_dim=16)
    discrete.load_state_dict(G.discrete_state_dict(genotype))
    z = torch.randn(4, 16)
    torch.testing.assert_close(G(z, kept=set(kept_edges(genotype))), discrete(z), rtol=0, atol=0)


def test_degas_pruning_rule_on_hand_made_alphas():
    maps = layout(2)
    weights = {edge_key(name, source): torch.full((len(DEGAS_UP_OPS if kind == "up" else DEGAS_NORMAL_OPS),), 0.1)
               for name, kind, edges in maps for source, _, _ in edges}

    def put(target, source, op, value):
        ops = DEGAS_UP_OPS if target.startswith("up") else DEGAS_NORMAL_OPS
        weights[edge_key(target, source)][ops.index(op)] = value

    put("up3", "n2_2", "deconv_6x6", 0.5)        # direct
    put("up3", "up1", "nearest_conv_1x1", 0.7)   # residual, strongest: the direct edge is kept too
    put("up3", "up2", "deconv_4x4", 0.6)         # residual, not the strongest: dropped
    put("n1_2", "n1_1", "sep_conv_5x5", 0.9)     # direct beats the residual: only it is kept
    put("n1_2", "up1", "skip_connect", 0.8)
    nodes = {node["name"]: node["inputs"] for node in prune(maps, weights)}
    assert nodes["up3"] == [{"from": "n2_2", "op": "deconv_6x6", "residual": False},
                            {"from": "up1", "op": "nearest_conv_1x1", "residual": True}]
    assert nodes["n1_2"] == [{"from": "n1_1", "op": "sep_conv_5x5", "residual": False}]
