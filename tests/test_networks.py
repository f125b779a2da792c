"""StyleGAN2 networks: the original layout reproduces config-e/f (parameter counts measured
from NVlabs stylegan2-ada-pytorch d72cc7d; tests/test_nvlabs_parity.py also compares outputs
with the same weights), and the searchable choices (op per layer, W_i per layer) act."""
import pytest
import torch

from stylenas.nn import NUM_WS, Discriminator, Generator, MappingNetwork, MinibatchStd, SynthesisNetwork
from stylenas.nn import synthesis_layout
from stylenas.nn.networks import w_slots

TINY = dict(channel_base=256, channel_max=16)


def count(module):
    return sum(p.numel() for p in module.parameters())


# (channel_base, resolution): (G, mapping, synthesis, D) of NVlabs' Generator/Discriminator
NVLABS_COUNTS = {
    (32768, 256): (30034338, 2101248, 27933090, 28864129),  # config-f
    (32768, 1024): (30370060, 2101248, 28268812, 29012513),  # config-f, FFHQ: the paper's 30.37M
    (16384, 256): (24767458, 2101248, 22666210, 24001089),  # config-e
    (16384, 1024): (24900764, 2101248, 22799516, 24038161),
}


@pytest.mark.parametrize("channel_base,resolution", list(NVLABS_COUNTS))
def test_original_genotype_has_stylegan2_parameter_counts(channel_base, resolution):
    g = Generator(resolution, channel_base=channel_base)
    d = Discriminator(resolution, channel_base=channel_base)
    assert (count(g), count(g.mapping), count(g.synthesis), count(d)) == NVLABS_COUNTS[(channel_base, resolution)]


def test_layout_and_shapes():
    layout = synthesis_layout(16)
    assert [name for name, _ in layout] == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb",
                                            "b16.conv0", "b16.conv1", "b16.torgb"]
    g = Generator(16, z_dim=8, w_dim=8, **TINY)
    img = g(torch.randn(3, 8))
    assert img.shape == (3, 3, 16, 16) and torch.isfinite(img).all()
    assert Discriminator(16, **TINY)(img).shape == (3, 1)
    with pytest.raises(ValueError, match="power of two"):
        synthesis_layout(48)


def test_mapping_returns_every_intermediate_latent_and_tracks_averages():
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=8, w_dim=8)
    z = torch.randn(5, 8)
    ws = m(z)
    assert ws.shape == (5, NUM_WS, 8)
    # W_{i+1} is the i-th layer applied to W_i
    assert torch.allclose(m.fcs[3](ws[:, 2]), ws[:, 3])
    assert torch.allclose(m.w_avg, ws.mean(0) * (1 - m.w_avg_beta))  # first update from zeros
    m.eval()
    before = m.w_avg.clone()
    truncated = m(z, truncation_psi=0.5)
    assert torch.equal(m.w_avg, before)  # no update in eval mode
    assert torch.allclose(truncated, before + 0.5 * (ws - before), atol=1e-6)


def test_ops_and_w_indices_change_the_network():
    torch.manual_seed(0)
    ops = {"b8.conv0": "bilinear_conv", "b8.conv1": "conv_5x5", "b16.conv0": "nearest_conv", "b4.conv1": "conv_1x1"}
    g = SynthesisNetwork(16, ops=ops, w_indices={"b8.conv1": 2, "b16.torgb": 0}, w_dim=8, **TINY)
    assert g.blocks.b8.conv1.weight.shape[-1] == 5 and g.blocks.b4.conv1.weight.shape[-1] == 1
    assert g.blocks.b16.conv0.op == "nearest_conv"
    ws = torch.randn(2, NUM_WS, 8)
    base = g(ws, noise_mode="const")
    assert base.shape == (2, 3, 16, 16)
    # changing a latent the network does not read leaves the output alone; one it reads does not
    unused = ws.clone()
    unused[:, 4] += 1
    assert torch.equal(g(unused, noise_mode="const"), base)
    used = ws.clone()
    used[:, 2] += 1
    assert not torch.allclose(g(used, noise_mode="const"), base)


def test_latent_slots_are_stylegan2s_w_layout():
    # NVlabs: block b reads ws[w_idx : w_idx + num_conv + num_torgb], w_idx += num_conv, so each toRGB
    # shares the slot of the next block's conv0 and the last toRGB has its own: num_ws = 2 log2(R) - 2
    assert w_slots(16) == [0, 1, 1, 2, 3, 3, 4, 5]
    assert w_slots(16, "free") == list(range(8))
    for resolution, num_ws in [(4, 2), (8, 4), (256, 14), (1024, 18)]:
        assert SynthesisNetwork(resolution, channel_base=64, channel_max=4).num_ws == num_ws
    with pytest.raises(ValueError, match="torgb_w must be one of"):
        w_slots(16, "own")


def test_style_mixing_input_is_per_latent_slot():
    """ws [N, num_ws, 8, w_dim]: a toRGB takes the same source as the next block's up conv."""
    torch.manual_seed(0)
    g = SynthesisNetwork(16, w_dim=8, **TINY).eval()
    a, b = torch.randn(2, NUM_WS, 8), torch.randn(2, NUM_WS, 8)
    mixed = torch.stack([a] * 2 + [b] * 4, dim=1)  # slots 0-1 from a: b4.conv1, b4.torgb, b8.conv0
    inputs = []
    hooks = [getattr(g.blocks[name.split(".")[0]], name.split(".")[1]).register_forward_hook(
        lambda module, args, out: inputs.append(args[1])) for name, _ in g.layout]
    with torch.no_grad():
        g(mixed, noise_mode="const")
    for hook in hooks:
        hook.remove()
    sources = [a if slot < 2 else b for slot in g.w_slots]
    assert all(torch.equal(w, src[:, NUM_WS - 1]) for w, src in zip(inputs, sources))
    assert [name for (name, _), src in zip(g.layout, sources) if src is a] == ["b4.conv1", "b4.torgb", "b8.conv0"]
    with pytest.raises(ValueError, match="latent slots"):
        g(torch.randn(2, len(g.layout), NUM_WS, 8))
    # free: one slot per style layer
    assert SynthesisNetwork(16, w_dim=8, torgb_w="free", **TINY)(torch.randn(2, 8, NUM_WS, 8)).shape == (2, 3, 16, 16)


def test_tied_layers_must_agree_on_their_latent():
    g = SynthesisNetwork(16, w_indices={"b8.conv0": 2}, **TINY)
    assert g.w_indices == [7, 2, 2, 7, 7, 7, 7, 7]  # b4.torgb follows b8.conv0
    with pytest.raises(ValueError, match="b4.torgb and b8.conv0 read one latent"):
        SynthesisNetwork(16, w_indices={"b8.conv0": 2, "b4.torgb": 3}, **TINY)
    free = SynthesisNetwork(16, w_indices={"b8.conv0": 2, "b4.torgb": 3}, torgb_w="free", **TINY)
    assert free.w_indices == [7, 3, 2, 7, 7, 7, 7, 7]


def test_invalid_choices_are_rejected():
    with pytest.raises(ValueError, match="up layer"):
        SynthesisNetwork(8, ops={"b8.conv0": "conv_3x3"}, **TINY)
    with pytest.raises(ValueError, match="normal layer"):
        SynthesisNetwork(8, ops={"b8.conv1": "deconv"}, **TINY)
    with pytest.raises(ValueError, match="unknown synthesis layers"):
        SynthesisNetwork(8, ops={"b16.conv1": "conv_3x3"}, **TINY)
    with pytest.raises(ValueError, match="W index"):
        SynthesisNetwork(8, w_indices={"b8.torgb": 8}, **TINY)


def test_minibatch_std_matches_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 2)
    y = MinibatchStd(group_size=2)(x)
    assert y.shape == (4, 4, 2, 2)
    # samples 0 and 2 form one group (the group index is the leading reshape dimension)
    std = torch.sqrt(((x[[0, 2]] - x[[0, 2]].mean(0)) ** 2).mean(0) + 1e-8).mean()
    assert torch.allclose(y[0, 3], std.expand(2, 2)) and torch.allclose(y[2, 3], std.expand(2, 2))
    assert MinibatchStd(group_size=4)(torch.randn(6, 3, 2, 2)).shape == (6, 4, 2, 2)  # 4 does not divide 6
