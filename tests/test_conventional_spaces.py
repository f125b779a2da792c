"""alphaGAN-on-AutoGAN-cells and DEGAS search spaces: supernets vs derived networks, space size,
pruning, the GLO reconstruction loss."""
import numpy as np
import pytest
import torch

from stylenas.conventional.losses import glo_loss, laplacian_pyramid
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


def _np_blur(x):
    k1 = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16
    padded = np.pad(x, ((2, 2), (2, 2)), mode="reflect")
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = sum(k1[a] * k1[b] * padded[i + a, j + b] for a in range(5) for b in range(5))
    return out


def test_laplacian_pyramid_and_glo_loss_by_hand():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (2, 1, 3, 8, 8)), rng.uniform(-1, 1, (2, 1, 3, 8, 8))
    bands = laplacian_pyramid(torch.from_numpy(x[0]), levels=3)

    def np_pyramid(img):  # one plane, by hand
        out = []
        for _ in range(2):
            down = _np_blur(img)[::2, ::2]
            up = np.zeros_like(img)
            up[::2, ::2] = down
            out.append(img - 4 * _np_blur(up))
            img = down
        return out + [img]

    for level, band in enumerate(np_pyramid(x[0, 0, 1])):
        np.testing.assert_allclose(bands[level][0, 1].numpy(), band, atol=1e-12)
    # a constant image has no detail: every band but the last is zero
    flat = laplacian_pyramid(torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64))
    assert flat[0].abs().max() < 1e-12 and torch.allclose(flat[2], torch.full_like(flat[2], 0.3))

    expected = 0.0
    for a, b in zip(x[0], y[0]):  # one image of three planes
        pa = [np_pyramid(a[c]) for c in range(3)]
        pb = [np_pyramid(b[c]) for c in range(3)]
        expected += ((a - b) ** 2).sum() + sum(4 ** j * np.abs(pa[c][j] - pb[c][j]).sum() for c in range(3)
                                              for j in range(3))
    got = glo_loss(torch.from_numpy(x[0]), torch.from_numpy(y[0]), levels=3)
    assert float(got) == pytest.approx(expected / (1 * 3 * 64), rel=1e-10)
