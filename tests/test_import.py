"""Importing NVlabs stylegan2-ada-pytorch pickles and rosinality stylegan2-pytorch checkpoints.

The oracle: tiny networks saved by the ORIGINAL code bases and their images for fixed latents and
noise, made once by tests/data/import/make_reference.py (it says how to rerun it). The pickles
are read by a restricted unpickler that runs nothing from the file; malicious pickles prove it.
"""
import argparse
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylenas.nn import Discriminator
from stylenas.train.checkpoint import CheckpointError, load_generator, load_network
from stylenas.train.imports import ImportNetworkError, import_network
from stylenas.train.imports.commands import import_command

sys.path.insert(0, str(Path(__file__).parent))
from helpers import write_weights  # noqa: E402

DATA = Path(__file__).parent / "data" / "import"
PKL = DATA / "network-snapshot-tiny.pkl"
ROSINALITY = DATA / "tiny.pt"
ATOL = 1e-5


def tensor(reference, name):
    return torch.from_numpy(reference[name])


def discriminator(state):
    config = state["config"]
    D = Discriminator(config["resolution"], channel_base=config["channel_base"], channel_max=config["channel_max"],
                      mbstd_group_size=config["mbstd_group"], conv_clamp=config["conv_clamp"]).eval()
    D.load_state_dict(state["D"])
    return D


def generator(state, which):
    from stylenas.search.genotype import Genotype
    from stylenas.train.config import TrainConfig
    from stylenas.train.stylegan2 import build_networks

    G, _ = build_networks(Genotype.from_dict(state["genotype"]), TrainConfig.from_dict(state["config"]))
    G.load_state_dict(state[which])
    return G.eval()


def mixed_slots(G, z, z2, cutoff):
    """Latent slots [0, cutoff) from z, the rest from z2 (both code bases' style mixing)."""
    ws, ws2 = G.mapping(z), G.mapping(z2)
    slots = ws.unsqueeze(1).repeat(1, G.synthesis.num_ws, 1, 1)
    slots[:, cutoff:] = ws2.unsqueeze(1)
    return slots


def per_layer_noise(G, noise):
    """rosinality's noise list (one per conv layer) in our layout (None for toRGB layers)."""
    noise = iter(noise)
    return [None if kind == "torgb" else next(noise) for _, kind in G.synthesis.layout]


@torch.no_grad()
def test_nvlabs_pickle_gives_the_original_images(one_thread):
    reference = np.load(DATA / "nvlabs_reference.npz")
    z, z2 = tensor(reference, "z"), tensor(reference, "z2")
    G, info = load_generator(PKL)
    assert info["resolution"] == 16 and info["z_dim"] == 16
    assert torch.allclose(G(z, noise_mode="const"), tensor(reference, "images"), atol=ATOL)
    assert torch.allclose(G(z, truncation_psi=float(reference["trunc"]), noise_mode="const"),
                          tensor(reference, "images_trunc"), atol=ATOL)
    slots = mixed_slots(G, z, z2, int(reference["cutoff"]))
    assert torch.allclose(G.synthesis(slots, noise_mode="const"), tensor(reference, "images_mixed"), atol=ATOL)
    state = load_network(PKL)
    assert torch.allclose(generator(state, "G")(z, noise_mode="const"), tensor(reference, "images_G"), atol=ATOL)
    assert torch.allclose(discriminator(state)(tensor(reference, "images")), tensor(reference, "logits"), atol=ATOL)
    # NVlabs' w_avg (the mean of the last W) is our W_8 mean; fp16 and conv_clamp are carried over
    assert state["config"]["conv_clamp"] == 256 and state["imported"]["original_fp16_res"] == 4


@torch.no_grad()
def test_nvlabs_variant_lr_multiplier_no_noise_no_clamp(one_thread):
    """Mapping lr_multiplier 0.1 (the weights are rescaled to our 0.01), use_noise False (a zero
    noise strength), conv_clamp None: still the original's images."""
    reference = np.load(DATA / "nvlabs_variant_reference.npz")
    G, info = load_generator(DATA / "network-variant.pkl")
    assert info["resolution"] == 8 and info["config"]["conv_clamp"] is None
    images = G(tensor(reference, "z"), truncation_psi=float(reference["trunc"]), noise_mode="random")
    assert torch.allclose(images, tensor(reference, "images"), atol=ATOL)


@torch.no_grad()
def test_nvlabs_two_layer_mapping_network_cfg_auto(tmp_path, one_thread):
    """--cfg auto / cifar (map 2): our mapping network gets 2 layers, the stylegan2 genotype reads
    the last W; the original's images, truncation, style mixing, G and D; generate takes it."""
    from stylenas.train.commands import generate_command

    source = DATA / "network-map2.pkl"
    reference = np.load(DATA / "nvlabs_map2_reference.npz")
    z, z2 = tensor(reference, "z"), tensor(reference, "z2")
    out = tmp_path / "imported.pt"
    result = CliRunner().invoke(import_command, [str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    G, info = load_generator(out)
    assert info["config"]["mapping_layers"] == 2 and len(G.mapping.fcs) == 2 and info["resolution"] == 8
    assert torch.allclose(G(z, noise_mode="const"), tensor(reference, "images"), atol=ATOL)
    assert torch.allclose(G(z, truncation_psi=float(reference["trunc"]), noise_mode="const"),
                          tensor(reference, "images_trunc"), atol=ATOL)
    slots = mixed_slots(G, z, z2, int(reference["cutoff"]))
    assert torch.allclose(G.synthesis(slots, noise_mode="const"), tensor(reference, "images_mixed"), atol=ATOL)
    state = torch.load(out, weights_only=True)
    assert torch.allclose(generator(state, "G")(z, noise_mode="const"), tensor(reference, "images_G"), atol=ATOL)
    assert torch.allclose(discriminator(state)(tensor(reference, "images")), tensor(reference, "logits"), atol=ATOL)
    for ckpt, folder in ((source, "pkl"), (out, "pt")):
        result = CliRunner().invoke(generate_command, ["--ckpt", str(ckpt), "--seeds", "0-1", "--outdir",
                                                       str(tmp_path / folder), "--device", "cpu"])
        assert result.exit_code == 0, result.output
    for name in ("seed0000.png", "seed0001.png"):
        image = np.asarray(Image.open(tmp_path / "pt" / name))
        assert image.shape == (8, 8, 3) and np.array_equal(image, np.asarray(Image.open(tmp_path / "pkl" / name)))


@torch.no_grad()
def test_rosinality_n_mlp_2(one_thread):
    """--n_mlp 2 in convert_weight.py's layout: 2 mapping layers, truncation toward its latent_avg."""
    reference = np.load(DATA / "rosinality_n_mlp2_reference.npz")
    noise = [tensor(reference, name) for name in sorted((k for k in reference if k.startswith("noise")),
                                                        key=lambda k: int(k[5:]))]
    G, info = load_generator(DATA / "tiny-n_mlp2.pt")
    assert info["config"]["mapping_layers"] == 2 and info["resolution"] == 8
    z, noise = tensor(reference, "z"), per_layer_noise(G, noise)
    assert torch.allclose(G.synthesis(G.mapping(z), noise=noise), tensor(reference, "images"), atol=ATOL)
    ws = G.mapping(z, truncation_psi=float(reference["trunc"]))
    assert torch.allclose(G.synthesis(ws, noise=noise), tensor(reference, "images_trunc"), atol=ATOL)


def test_other_mapping_depths_take_only_the_last_w():
    """W_1..W_7 exist only in an 8-layer mapping network: a genotype reading one is refused there."""
    from stylenas.nn import Generator

    assert Generator(8, z_dim=4, w_dim=4, channel_base=64, channel_max=8, mapping_layers=2).synthesis.w_indices \
        == [1] * 5  # the genotype's W_8 (index 7) is the last W
    with pytest.raises(ValueError, match="b8.conv1 reads W_3, but the mapping network has 2 layers"):
        Generator(8, z_dim=4, w_dim=4, channel_base=64, channel_max=8, mapping_layers=2,
                  w_indices={"b8.conv1": 2})


@torch.no_grad()
def test_rosinality_checkpoint_gives_the_original_images(one_thread):
    reference = np.load(DATA / "rosinality_reference.npz")
    z, z2 = tensor(reference, "z"), tensor(reference, "z2")
    noise = [tensor(reference, name) for name in sorted((k for k in reference if k.startswith("noise")),
                                                        key=lambda k: int(k[5:]))]
    G, info = load_generator(ROSINALITY)
    assert info["resolution"] == 16
    noise = per_layer_noise(G, noise)
    assert torch.allclose(G.synthesis(G.mapping(z), noise=noise), tensor(reference, "images"), atol=ATOL)
    assert torch.allclose(G(z, noise_mode="const"), tensor(reference, "images_const"), atol=ATOL)
    slots = mixed_slots(G, z, z2, int(reference["inject_index"]))
    assert torch.allclose(G.synthesis(slots, noise=noise), tensor(reference, "images_mixed"), atol=ATOL)
    state = load_network(ROSINALITY)
    g = generator(state, "G")
    assert torch.allclose(g.synthesis(g.mapping(z), noise=noise), tensor(reference, "images_g"), atol=ATOL)
    assert torch.allclose(discriminator(state)(tensor(reference, "images")), tensor(reference, "logits"), atol=ATOL)


@pytest.mark.parametrize("source", [PKL, ROSINALITY], ids=["nvlabs", "rosinality"])
def test_import_command_writes_a_weights_only_checkpoint(source, tmp_path, one_thread):
    out = tmp_path / "imported.pt"
    result = CliRunner().invoke(import_command, [str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    state = torch.load(out, weights_only=True)
    assert state["kind"] == "stylegan2" and {"G", "D", "G_ema", "genotype", "config"} <= set(state)
    assert state["genotype"]["paradigm"] == "original"
    G_direct, _ = load_generator(source)
    G_imported, info = load_generator(out)
    z = torch.randn([3, info["z_dim"]], generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(G_direct(z, noise_mode="const"), G_imported(z, noise_mode="const"))
    # W_1..W_7 means are estimated (10000 latents): within 5 standard errors of an independent estimate
    with torch.no_grad():
        ws = G_imported.mapping(torch.randn([4000, info["z_dim"]], generator=torch.Generator().manual_seed(1)))
    standard_error = ws.std(0)[:7] * (1 / 4000 + 1 / 10000) ** 0.5
    assert ((G_imported.mapping.w_avg[:7] - ws.mean(0)[:7]).abs() < 5 * standard_error).all()


def test_generate_and_fid_take_the_pickle(tmp_path, one_thread):
    from stylenas.metrics.commands import fid_command
    from stylenas.train.commands import generate_command

    out = tmp_path / "imported.pt"
    assert CliRunner().invoke(import_command, [str(PKL), "--out", str(out)]).exit_code == 0
    for ckpt, folder in ((PKL, "pkl"), (out, "pt")):
        result = CliRunner().invoke(generate_command, ["--ckpt", str(ckpt), "--seeds", "0-2", "--outdir",
                                                       str(tmp_path / folder), "--device", "cpu"])
        assert result.exit_code == 0, result.output
    for name in ("seed0000.png", "seed0001.png", "seed0002.png"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "pkl" / name)),
                              np.asarray(Image.open(tmp_path / "pt" / name)))
    weights = write_weights(tmp_path / "weights")
    stats = {}
    for ckpt, name in ((PKL, "pkl.npz"), (out, "pt.npz")):
        result = CliRunner().invoke(fid_command, [str(ckpt), "--num", "4", "--save-stats", str(tmp_path / name),
                                                  "--inception", str(weights), "--workers", "0", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        stats[name] = np.load(tmp_path / name)
    assert np.allclose(stats["pkl.npz"]["mu"], stats["pt.npz"]["mu"])


def test_training_progress_comes_from_the_original_file_names(tmp_path):
    """NVlabs names snapshots by kimg (network-snapshot-000400.pkl), rosinality by iteration (550000.pt)."""
    import shutil

    shutil.copy(PKL, tmp_path / "network-snapshot-000400.pkl")
    shutil.copy(ROSINALITY, tmp_path / "550000.pt")
    assert load_generator(tmp_path / "network-snapshot-000400.pkl")[1]["kimg"] == 400
    assert load_generator(tmp_path / "550000.pt")[1]["step"] == 550000
    assert load_generator(PKL)[1]["kimg"] is None


# ---------------------------------------------------------------------------------------------- safety

class Command:
    """Unpickling this calls ``function(*args)``: what a malicious pickle does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.fixture
def persistence(monkeypatch):
    """A stand-in torch_utils.persistence, only so that pickle.dumps can name NVlabs' reconstruct
    function: the files below are then shaped like NVlabs pickles without NVlabs' code."""
    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called by the importer")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return module


def record(persistence, class_name, state):
    meta = dict(type="class", version=4, module_src="import os\nos.system('touch never')\n", class_name=class_name,
                state=state)
    return Command(persistence._reconstruct_persistent_obj, meta)


def payloads(marker, persistence):
    yield "system", {"G_ema": Command(os.system, f"touch {marker}")}
    yield "exec", Command(exec, f"open({str(marker)!r}, 'w').close()")
    yield "open", {"G": Command(open, str(marker), "w")}
    yield "system", {"G_ema": record(persistence, "Generator", {"_init_kwargs": Command(os.system, f"touch {marker}")})}


def test_malicious_pickles_are_refused_and_run_nothing(tmp_path, persistence):
    marker = tmp_path / "marker"
    for index, (name, payload) in enumerate(payloads(marker, persistence)):
        path = tmp_path / f"evil{index}.pkl"
        path.write_bytes(pickle.dumps(payload))
        with pytest.raises(ImportNetworkError, match=rf"refused to load: the pickle calls \w+\.{name}") as error:
            import_network(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
        result = CliRunner().invoke(import_command, [str(path), "--out", str(tmp_path / "out.pt")])
        assert result.exit_code == 1 and "refused to load" in result.output
        with pytest.raises(CheckpointError, match="refused"):
            load_generator(path)
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists() and not list(tmp_path.glob(".out.pt*"))


def test_unknown_classes_and_conditional_networks_are_refused(tmp_path, persistence):
    path = tmp_path / "stylegan3.pkl"
    synthesis = record(persistence, "SynthesisNetwork", {"_modules": {"input": record(persistence, "SynthesisInput",
                                                                                      {})}})
    path.write_bytes(pickle.dumps({"G_ema": record(persistence, "Generator", {"_modules": {"synthesis": synthesis}})}))
    with pytest.raises(ImportNetworkError, match="G_ema.synthesis.input is a SynthesisInput"):
        import_network(path)
    with pytest.raises(ImportNetworkError, match=r"conditional network \(c_dim=2\)"):
        import_network(DATA / "network-conditional.pkl")


def bad_rosinality(tmp_path, change):
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(ROSINALITY, weights_only=True)
    change(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    return path


def test_unrepresentable_rosinality_networks_are_refused(tmp_path):
    def swagan(state):
        state["args"].arch = "swagan"

    def blur(state):
        state["g_ema"]["convs.0.conv.blur.kernel"] = torch.ones([4, 4]) / 4

    def mapping(state):
        del state["g_ema"]["style.8.weight"], state["g_ema"]["style.8.bias"]

    def extra(state):
        state["d"]["convs.1.skip.1.bias"] = torch.zeros([8])

    def missing(state):
        del state["g_ema"]["to_rgb1.bias"]

    for change, message in ((swagan, "'swagan' checkpoint"),
                            (blur, r"convs.0.conv.blur.kernel is not the \[1, 3, 3, 1\]"),
                            (mapping, r"g has 8 mapping layers, g_ema 7 \(n_mlp\)"),
                            (extra, "d has layer convs.1.skip.1.bias"),
                            (missing, "not a network of the expected layout .KeyError: 'to_rgb1.bias'")):
        with pytest.raises(ImportNetworkError, match=message):
            import_network(bad_rosinality(tmp_path, change))


def test_generator_only_rosinality_checkpoint(tmp_path):
    """convert_weight.py's layout: g_ema and latent_avg only. G starts as G_ema, W_8's mean is
    latent_avg, and train --init refuses it for want of a discriminator."""
    from stylenas.search.genotype import Genotype
    from stylenas.train.checkpoint import init_networks

    latent_avg = torch.randn([16], generator=torch.Generator().manual_seed(3))

    def generator_only(state):
        for key in ("g", "d", "g_optim", "d_optim", "args", "ada_aug_p"):
            del state[key]
        state["latent_avg"] = latent_avg

    path = bad_rosinality(tmp_path, generator_only)
    state = import_network(path)
    assert "D" not in state and state["G"] is state["G_ema"]
    assert torch.equal(state["G_ema"]["mapping.w_avg"][7], latent_avg)
    with pytest.raises(CheckpointError, match="has no D network"):
        init_networks(path, Genotype.original(16), {"G": None, "D": None, "G_ema": None})


def test_tensorflow_pickles_get_a_hint(tmp_path, monkeypatch):
    module = types.ModuleType("dnnlib.tflib.network")

    class Network:
        def __reduce__(self):
            return Network, ()

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    module.Network = Network
    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
        monkeypatch.setitem(sys.modules, name, module if name.endswith("network") else types.ModuleType(name))
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(pickle.dumps((Network(), Network(), Network())))
    with pytest.raises(ImportNetworkError, match="dnnlib.tflib.network.Network.*convert it with .*legacy.py"):
        import_network(path)


@pytest.mark.parametrize("channel_multiplier", [1, 2, 4])
@pytest.mark.parametrize("size", [32, 256, 1024])
def test_rosinality_channel_tables_follow_our_rule(size, channel_multiplier):
    """rosinality's hard-coded table (model.py: 512 up to 32 px, then 256, 128, 64, 32, 16 times the
    multiplier) is min(channel_base / res, channel_max) for the base and max the importer infers, except
    where it grows with the resolution (multiplier 4), which is refused."""
    from stylenas.nn.layers import channel_count
    from stylenas.train.imports.rosinality import _channel_rule

    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    channels = {res: c for res, c in table.items() if res <= size}
    if channel_multiplier == 4 and size >= 64:  # 1024 channels at 64 px after 512 at 32: not our rule
        with pytest.raises(ImportNetworkError, match="do not follow"):
            _channel_rule("x.pt", channels)
        return
    base, most = _channel_rule("x.pt", channels)
    assert {res: channel_count(res, base, most) for res in channels} == channels
    with pytest.raises(ImportNetworkError, match="do not follow"):
        _channel_rule("x.pt", {**channels, 4: 256})


def test_a_cut_snapshot_names_the_previous_one(tmp_path):
    good, cut = tmp_path / "network-snapshot-000001.pt", tmp_path / "network-snapshot-000002.pt"
    assert CliRunner().invoke(import_command, [str(ROSINALITY), "--out", str(good)]).exit_code == 0
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=f"{cut}: not a readable checkpoint.*the previous snapshot {good}"):
        load_generator(cut)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    text = tmp_path / "notes.pkl"
    text.write_text("not a network\n")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(PKL.read_bytes()[:5000])
    ours = tmp_path / "ours.pt"
    assert CliRunner().invoke(import_command, [str(ROSINALITY), "--out", str(ours)]).exit_code == 0
    for source, message in ((tmp_path / "missing.pkl", "No such file"), (text, "not a network file"),
                            (truncated, "not a readable stylegan2-ada-pytorch network pickle"),
                            (DATA / "network-conditional.pkl", "conditional network"),
                            (ours, "already a StyleNAS checkpoint")):
        out = tmp_path / "out.pt"
        result = CliRunner().invoke(import_command, [str(source), "--out", str(out)])
        assert result.exit_code == 1, result.output
        assert message in result.output and str(source) in result.output
        assert result.output.count("\n") == 1, result.output
        assert not out.exists() and not list(tmp_path.glob(".out.pt*"))


# ---------------------------------------------------------------------------------------------- train --init

@pytest.fixture(scope="module")
def lmdb16(tmp_path_factory):
    from stylenas.datasets import make_demo_data

    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [16], 8, progress=False)
    return path


TINY_IMPORT = dict(z_dim=16, w_dim=16, channel_base=128, channel_max=16, mbstd_group=4, batch=4, kimg=0.004,
                   snap=0.004, pl_weight=0)


@pytest.mark.parametrize("source", [PKL, ROSINALITY], ids=["nvlabs", "rosinality"])
def test_train_init_starts_from_the_imported_weights(source, lmdb16, tmp_path, one_thread):
    """One step at learning rate 1e-30 (a no-op in float32): G and D stay the imported weights."""
    from stylenas.train.run import TrainOptions, train

    out = tmp_path / "run"
    train(TrainOptions(data=str(lmdb16), genotype="stylegan2", outdir=str(out), cfg="tiny", device="cpu", workers=0,
                       init=str(source), overrides={**TINY_IMPORT, "lr": 1e-30, "conv_clamp": None}),
          log=lambda line: None)
    trained = torch.load(out / "checkpoint.pt", weights_only=True)
    imported = load_network(source)
    assert trained["counters"]["step"] == 1
    for key, value in imported["D"].items():
        assert torch.equal(trained["D"][key], value), key
    for key, value in imported["G"].items():
        if key != "mapping.w_avg":  # tracked during the step: moves by 0.5 % toward the batch mean
            assert torch.equal(trained["G"][key], value), key
    w_avg, start = trained["G"]["mapping.w_avg"], imported["G"]["mapping.w_avg"]
    assert (w_avg - start).abs().max() < 0.01 * (start.abs().max() + w_avg.abs().max())


def test_train_init_names_the_first_mismatching_layer(lmdb16, tmp_path):
    from stylenas.train.commands import train_command

    common = ["--data", str(lmdb16), "--cfg", "tiny", "--device", "cpu", "--workers", "0", "--kimg", "0.004"]
    result = CliRunner().invoke(train_command, [*common, "--genotype", "stylegan2", "--outdir", str(tmp_path / "a"),
                                                "--init", str(PKL)])  # tiny: z 32, 32 channels; the pickle: 16
    assert result.exit_code == 1
    assert f"--init {PKL} (G): layer mapping.w_avg is [8, 16], the network being built has [8, 32]" \
        in result.output, result.output
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
    map2 = DATA / "network-map2.pkl"
    result = CliRunner().invoke(train_command, [*common, "--genotype", "stylegan2", "--outdir", str(tmp_path / "c"),
                                                "--init", str(map2)])
    assert result.exit_code == 1
    assert f"--init {map2}: its mapping network has 2 layers, the training's 8" in result.output, result.output
    genotype = tmp_path / "nearest.json"
    from stylenas.search.genotype import Genotype

    layers = [dict(layer, op="nearest_conv") if layer["name"] == "b16.conv0" else layer
              for layer in Genotype.original(16).layers]
    Genotype(16, layers, "macro").save(genotype)
    result = CliRunner().invoke(train_command, [*common, "--genotype", str(genotype), "--outdir", str(tmp_path / "b"),
                                                "--init", str(ROSINALITY)])
    assert result.exit_code == 1
    assert "layer b16.conv0 is 'deconv' there and 'nearest_conv' in the genotype being trained" in result.output
