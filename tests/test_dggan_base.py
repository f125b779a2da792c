"""DGGAN's base networks in its two modes (conventional/spaces/dggan_grown.py ``base_net``), pinned to
the implementations they follow: ``gan_zoo`` = facebookresearch/pytorch_GAN_zoo, the PyTorch ProgGAN
of the paper's numbers (``models/networks/custom_layers.py`` getLayerNormalizationFactor: every
equalised layer scaled by sqrt(2 / fan_in); ``progressive_conv_net.py`` GNet/DNet;
``mini_batch_stddev_module.py``), ``proggan`` = tkarras/progressive_growing_of_gans ``networks.py``
(gain 1 in toRGB and D's output, sqrt(2)/4 in G's 4x4 dense; strided groups, biased variance).
Also: the mode travels in the genotype (an old genotype without it builds ``proggan``) and the
command-line switch reaches config.json, genotype.json and the retraining."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylenas.conventional import ConventionalGenotype, build_networks, load_genotype
from stylenas.conventional.spaces.dggan_grown import (Action, EqualConv2d, EqualLinear, apply_action, base_body,
                                                       build_grown, minibatch_stddev, minibatch_stddev_gan_zoo)

pytestmark = pytest.mark.usefixtures("one_thread")


def grown_body(base_net):
    """16 px, a grown conv in G and D at each resolution, fading (toRGB_prev / fromRGB_prev present)."""
    body = base_body(8, [8, 6], base_net)
    for action in (Action("g", 3, 5), Action("d", 7, 4), Action("double"), Action("g", 7, 3), Action("d", 3, 5)):
        body = apply_action(body, action)
    return body


def expected_gain(net, name, base_net):
    """The He-constant multiplier of each layer: pytorch_GAN_zoo sqrt(2) everywhere; tkarras'
    G_paper/D_paper: sqrt(2)/4 for G's 4x4 dense, 1 for toRGB and D's output, sqrt(2) elsewhere."""
    if base_net == "gan_zoo":
        return math.sqrt(2)
    if net == "G" and name == "input":
        return math.sqrt(2) / 4
    if (net == "G" and name.startswith("to_rgb")) or (net == "D" and name == "out"):
        return 1.0
    return math.sqrt(2)


@pytest.mark.parametrize("base_net", ["gan_zoo", "proggan"])
def test_every_layer_scales_its_weights_by_the_sources_gain(base_net):
    """Each equalised layer's output equals a plain conv / linear with weight * gain / sqrt(fan_in),
    fan_in from the weight's shape (as getLayerNormalizationFactor: prod(size[1:])); weights start
    N(0, 1), biases 0."""
    torch.manual_seed(0)
    G, D = build_grown(grown_body(base_net), fading=True)
    seen = 0
    for net_name, net in (("G", G), ("D", D)):
        for name, layer in net.named_modules():
            if not isinstance(layer, (EqualConv2d, EqualLinear)):
                continue
            seen += 1
            assert torch.count_nonzero(layer.bias) == 0, name
            with torch.no_grad():
                layer.bias.normal_()
            fan_in = int(np.prod(layer.weight.shape[1:]))
            effective = layer.weight * expected_gain(net_name, name, base_net) / math.sqrt(fan_in)
            if isinstance(layer, EqualConv2d):
                x = torch.randn(2, layer.weight.shape[1], 8, 8)
                k = layer.weight.shape[-1]
                reference = F.conv2d(x, effective, layer.bias, padding=k // 2)
            else:
                x = torch.randn(2, layer.weight.shape[1])
                reference = x @ effective.t() + layer.bias
            torch.testing.assert_close(layer(x), reference, rtol=1e-5, atol=1e-5, msg=f"{net_name}.{name}")
    # G: input, conv4, 2 x (first, grown, last), toRGB, toRGB_prev; D: fromRGB, fromRGB_prev, the 6 stage
    # convs, conv4, dense, out
    assert seen == 10 + 11
    big = G.input.weight  # 8 x 128 values
    assert abs(big.mean().item()) < 0.15 and abs(big.std().item() - 1) < 0.15


def zoo_stddev_by_hand(x, group=4):
    x = x.numpy().astype(np.float64)
    n = len(x)
    group = min(group, n)
    if n % group:
        group = n
    feature = np.zeros((n, 1) + x.shape[2:])
    if group > 1:
        for start in range(0, n, group):  # consecutive samples
            members = x[start:start + group]
            feature[start:start + group] = np.sqrt(members.var(axis=0, ddof=1) + 1e-8).mean()
    return np.concatenate([x, feature], axis=1)


def tkarras_stddev_by_hand(x, group=4):
    x = x.numpy().astype(np.float64)
    n = len(x)
    feature = np.zeros((n, 1) + x.shape[2:])
    for first in range(n // group):  # members first, first + n/group, ...
        index = list(range(first, n, n // group))
        feature[index] = np.sqrt(x[index].var(axis=0) + 1e-8).mean()
    return np.concatenate([x, feature], axis=1)


@pytest.mark.parametrize("n", [8, 6, 2, 1])
def test_minibatch_stddev_of_each_implementation(n):
    torch.manual_seed(n)
    x = torch.randn(n, 3, 4, 4) * torch.arange(1, n + 1).view(n, 1, 1, 1)  # groups differ
    np.testing.assert_allclose(minibatch_stddev_gan_zoo(x).numpy(), zoo_stddev_by_hand(x), rtol=1e-5, atol=1e-6)
    if n % 4 == 0:
        np.testing.assert_allclose(minibatch_stddev(x).numpy(), tkarras_stddev_by_hand(x), rtol=1e-5, atol=1e-6)


def test_gan_zoo_networks_compute_gnet_and_dnet_by_hand():
    """An 8 px gan_zoo G and D against the forward passes of pytorch_GAN_zoo's GNet (pixel-normed z,
    dense to 4x4 x C, leaky ReLU 0.2, pixel norm; conv; one added scale: nearest x2, two convs;
    toRGB) and DNet (fromRGB, the scale's two convs, average pool, minibatch stddev, conv, dense,
    decision), every weight scaled by sqrt(2 / fan_in), written out here."""
    torch.manual_seed(1)
    G, D = build_grown(base_body(8, [6], "gan_zoo"))
    for p in list(G.parameters()) + list(D.parameters()):  # biases too, so their use is checked
        with torch.no_grad():
            p.normal_()
    g, d = {k: v.detach() for k, v in G.state_dict().items()}, {k: v.detach() for k, v in D.state_dict().items()}

    def he(w):
        return w * math.sqrt(2 / w[0].numel())

    def conv(x, params, prefix):
        w = params[prefix + ".weight"]
        return F.leaky_relu(F.conv2d(x, he(w), params[prefix + ".bias"], padding=w.shape[-1] // 2), 0.2)

    def pixel_norm(x):
        return x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + 1e-8)

    z = torch.randn(8, 8)
    h = F.leaky_relu(pixel_norm(z) @ he(g["input.weight"]).t() + g["input.bias"], 0.2)
    h = pixel_norm(h.view(8, 6, 4, 4))
    h = pixel_norm(conv(h, g, "conv4.conv"))
    h = h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    h = pixel_norm(conv(pixel_norm(conv(h, g, "stages.0.first.conv")), g, "stages.0.last.conv"))
    image = F.conv2d(h, he(g["to_rgb.weight"]), g["to_rgb.bias"])
    with torch.no_grad():
        torch.testing.assert_close(G(z), image, rtol=1e-4, atol=1e-4)

    x = torch.randn(8, 3, 8, 8)
    h = conv(x, d, "from_rgb.conv")
    h = F.avg_pool2d(conv(conv(h, d, "stages.0.first.conv"), d, "stages.0.last.conv"), 2)
    h = torch.from_numpy(zoo_stddev_by_hand(h)).float()
    h = conv(h, d, "conv4.conv").flatten(1)
    h = F.leaky_relu(h @ he(d["dense.weight"]).t() + d["dense.bias"], 0.2)
    decision = h @ he(d["out.weight"]).t() + d["out.bias"]
    with torch.no_grad():
        torch.testing.assert_close(D(x), decision, rtol=1e-4, atol=1e-4)


def to_rgb_gain(G):
    """The gain G's toRGB applies, measured through its forward pass."""
    layer = G.to_rgb
    x = torch.randn(1, layer.weight.shape[1], 1, 1)
    with torch.no_grad():
        out = layer(x) - layer.bias.view(1, -1, 1, 1)
        plain = F.conv2d(x, layer.weight / math.sqrt(layer.weight.shape[1]))
    return (out.norm() / plain.norm()).item()


def test_the_mode_travels_in_the_genotype_and_an_old_genotype_builds_proggan(tmp_path):
    for base_net, gain in (("gan_zoo", math.sqrt(2)), ("proggan", 1.0)):
        body = apply_action(base_body(8, [8, 8], base_net), Action("double"))
        ConventionalGenotype("dggan", 16, body).save(tmp_path / f"{base_net}.json")
        loaded = load_genotype(tmp_path / f"{base_net}.json")
        assert loaded.body["base_net"] == base_net
        G, _ = build_networks(loaded, resolution=16)
        assert to_rgb_gain(G) == pytest.approx(gain, rel=1e-4)
    # a genotype.json written before the switch: no base_net key; it was built with tkarras' gains
    data = json.loads((tmp_path / "gan_zoo.json").read_text())
    del data["base_net"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_genotype(tmp_path / "old.json")
    assert "base_net" not in old.body
    G, D = build_networks(old, resolution=16)
    assert to_rgb_gain(G) == pytest.approx(1.0, rel=1e-4)
    data["base_net"] = "zoo"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(Exception, match="base_net must be one of gan_zoo, proggan"):
        load_genotype(tmp_path / "bad.json")


@pytest.mark.parametrize("option", [None, "proggan"])
def test_cli_switch_reaches_config_genotype_and_retraining(tmp_path, option):
    from click.testing import CliRunner

    from stylenas.conventional.commands import search_conventional_command, train_conventional_command
    from stylenas.conventional.train import generator_from_checkpoint
    from stylenas.datasets import make_demo_data

    make_demo_data(tmp_path / "demo.lmdb", [8], 8, image_format="png")
    args = ["--method", "dggan", "--data", str(tmp_path / "demo.lmdb"), "--preset", "tiny", "--proxy",
            "--device", "cpu", "--outdir", str(tmp_path / "search"), "--iters", "1", "--max-steps", "0",
            "--final-iters", "0"] + (["--base-net", option] if option else [])
    result = CliRunner().invoke(search_conventional_command, args)
    assert result.exit_code == 0, result.output
    expected = option or "gan_zoo"  # the default: pytorch_GAN_zoo, the paper's numbers
    record = json.loads((tmp_path / "search" / "config.json").read_text())
    assert record["base_net"]["value"] == expected
    source = record["base_net"]["source"]
    assert source.startswith("command line: --base-net") if option else "pytorch_GAN_zoo" in source
    genotype = json.loads((tmp_path / "search" / "genotype.json").read_text())
    assert genotype["base_net"] == expected
    result = CliRunner().invoke(train_conventional_command, [
        "--genotype", str(tmp_path / "search" / "genotype.json"), "--data", str(tmp_path / "demo.lmdb"),
        "--outdir", str(tmp_path / "train"), "--preset", "tiny", "--steps", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    G, _ = generator_from_checkpoint(torch.load(tmp_path / "train" / "checkpoint.pt", weights_only=True))
    assert to_rgb_gain(G) == pytest.approx(math.sqrt(2) if expected == "gan_zoo" else 1.0, rel=1e-4)
    # a resume must use the mode the search ran with
    other = "proggan" if expected == "gan_zoo" else "gan_zoo"
    result = CliRunner().invoke(search_conventional_command, args[:-2] + ["--resume", "--base-net", other]
                                if option else args + ["--resume", "--base-net", other])
    assert result.exit_code == 1 and "base_net" in result.output and "Traceback" not in result.output


def test_base_net_is_refused_for_other_methods(tmp_path):
    from click.testing import CliRunner

    from stylenas.conventional.commands import search_conventional_command

    result = CliRunner().invoke(search_conventional_command, [
        "--method", "autogan", "--data", str(tmp_path / "x.lmdb"), "--outdir", str(tmp_path / "o"),
        "--base-net", "proggan"])
    assert result.exit_code != 0 and "--base-net" in result.output and "dggan" in result.output
