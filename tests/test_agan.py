"""AGAN: the operation set, the module construction of section 3.2 on the paper's Fig. 2 example and
its heuristics, the genotype with G and D, and tiny searches (resume, retraining, 2 processes == 1)."""
import json

import pytest
import torch
from torch import nn

from stylenas.conventional import rewards
from stylenas.conventional.searchers import agan
from stylenas.conventional.searchers.agan import AGANConfig, SearchError, run_agan
from stylenas.conventional.spaces import agan_modules
from stylenas.conventional.spaces.agan_modules import (AGANModule, DOWN_OPS, NORMAL_OPS, UP_OPS, ResampleOp, genotype_of,
                                                       module_plan)
from stylenas.conventional.genotypes import ConventionalGenotype, load_genotype
from stylenas.conventional.networks import build_networks
from stylenas.conventional.sources import unsourced
from stylenas.conventional.train import TrainConfig, run_training
from stylenas.search.genotype import GenotypeError
from helpers import images, launch, quiet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def proxy():
    return rewards.ProxyInception(seed=0)


FIG2_OPS = ["conv_1x1", "max_pool_3x3", "sep_conv_3x3", "avg_pool_7x7"]
FIG2_VECTORS = [(1, 0, 0, 0), (0, 0, 0, 0), (0, 1, 0, 1)]


@pytest.mark.parametrize("generator", [False, True])
def test_figure_2_normal_module(generator):
    """conv 1x1 on prev; maxpool 3x3 on x0 (1,0,0,0); sep 3x3 on the input when nothing is selected;
    avgpool 7x7 on x1 + x3 (0,1,0,1); concatenate tensors 2 and 4, then a 1x1 conv."""
    plan = module_plan("normal", FIG2_OPS, FIG2_VECTORS, prev_resamples=False)
    assert plan["inputs"] == [None, [0], [0], [1, 3]] and plan["leaves"] == [2, 4]
    assert plan["resample"] == [None] * 4
    torch.manual_seed(0)
    module = AGANModule("normal", FIG2_OPS, FIG2_VECTORS, 4, generator, prev_resamples=False).eval()
    conv, maxpool, sep, avgpool = (op.op.body for op in module.ops)
    pre = [nn.BatchNorm2d, nn.ReLU] if generator else [nn.ReLU]
    assert [type(m) for m in conv] == pre + [nn.Conv2d] and conv[-1].kernel_size == (1, 1)
    assert isinstance(maxpool, nn.MaxPool2d) and maxpool.kernel_size == 3
    assert [type(m) for m in sep] == pre + [nn.Conv2d, nn.Conv2d]
    assert sep[-2].groups == 4 and sep[-2].kernel_size == (3, 3)
    assert isinstance(avgpool, nn.AvgPool2d) and avgpool.kernel_size == 7
    x, prev = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        expected = module.final(torch.cat([maxpool(x), avgpool(conv(prev) + sep(x))], 1))
        torch.testing.assert_close(module(x, prev), expected)
    assert module.final[-1].in_channels == 8 and module.final[-1].out_channels == 4


def test_the_operation_set():
    assert len(NORMAL_OPS) == 16 and len(UP_OPS) == 3 + 16 and len(DOWN_OPS) == 32
    x = torch.randn(1, 2, 8, 8)
    for name in NORMAL_OPS:
        assert ResampleOp(name, 2, True)(x).shape == x.shape, name
    for name in UP_OPS:
        assert ResampleOp(name, 2, True, "up")(x).shape == (1, 2, 16, 16), name
        assert ResampleOp(name, 2, True)(x).shape == x.shape, name  # applied after the up-sampling
    for name in DOWN_OPS:
        assert ResampleOp(name, 2, False, "down")(x).shape == (1, 2, 4, 4), name
    # conv then pool / pool then conv, no BN in D; nothing between 1xn and nx1
    first = ResampleOp("conv_3x3_then_pool", 2, False, "down")
    second = ResampleOp("pool_then_conv_3x3", 2, False, "down")
    first.load_state_dict(second.state_dict())
    y = first(x)
    assert not torch.allclose(y, second(x))
    torch.testing.assert_close(y, nn.functional.avg_pool2d(first.op(x), 2))
    torch.testing.assert_close(second(x), second.op(nn.functional.avg_pool2d(x, 2)))
    assert [type(m) for m in ResampleOp("conv_1x5_5x1", 2, True).op.body] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d,
                                                                            nn.Conv2d]
    deconv = ResampleOp("deconv_5x5", 2, True, "up").deconv
    assert isinstance(deconv[-1], nn.ConvTranspose2d) and deconv[-1].kernel_size == (5, 5)


def test_heuristics_of_the_module_construction():
    ops_up = ["deconv_3x3", "nearest_conv_3x3", "nearest_identity", "nearest_conv_1x1"]
    # up module after an up module: o_0 up-samples h_{i-1}; ops on x0/x1 only up-sample; a mix of
    # low and high resolution inputs is summed at the high one
    plan = module_plan("up", ops_up, [(1, 1), (0, 0, 1), (0, 1, 0, 1)], prev_resamples=True)
    assert plan["resample"] == ["up", "up", None, None] and plan["leaves"] == [4]
    module = AGANModule("up", ops_up, [(1, 1), (0, 0, 1), (0, 1, 0, 1)], 3, True, prev_resamples=True)
    assert module(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)).shape == (2, 3, 8, 8)
    first = module_plan("up", ops_up, [(1, 1), (0, 0, 1), (0, 1, 0, 1)], prev_resamples=False)
    assert first["resample"][0] is None  # first module: h_{i-1} = h_i
    # down module: the ops making concatenated tensors down-sample; unused x0/x1 are pooled
    ops_down = ["conv_3x3_then_pool", "pool_then_conv_1x1", "identity_then_pool", "max_pool_3x3_then_pool"]
    plan = module_plan("down", ops_down, [(1, 0), (0, 0, 1), (0, 0, 0, 0)], prev_resamples=True)
    assert plan["inputs"] == [None, [0], [2], [0]] and plan["leaves"] == [1, 3, 4]
    assert plan["resample"] == ["down", None, "down", "down"]
    module = AGANModule("down", ops_down, [(1, 0), (0, 0, 1), (0, 0, 0, 0)], 3, False, prev_resamples=True)
    assert module(torch.randn(2, 3, 8, 8), torch.randn(2, 3, 16, 16)).shape == (2, 3, 4, 4)
    # a normal module after a down-sampling module: o_0 down-samples h_{i-1}
    assert module_plan("normal", FIG2_OPS, FIG2_VECTORS, prev_resamples=True)["resample"][0] == "down"
    with pytest.raises(ValueError, match="bits 0..1"):
        module_plan("normal", FIG2_OPS, [(0, 0, 1, 0), (0, 0, 0, 0), (0, 1, 0, 1)], False)
    with pytest.raises(ValueError, match="3 adjacency vectors"):
        module_plan("normal", FIG2_OPS, FIG2_VECTORS[:2], False)


def test_genotype_holds_g_and_d_and_builds_both(tmp_path):
    controller = agan.new_controller(hidden=8)
    arch = controller(batch=1, generator=torch.Generator().manual_seed(3)).actions[0]
    genotype = genotype_of(arch, 16, source={"method": "agan"})
    genotype.save(tmp_path / "g.json")
    loaded = load_genotype(tmp_path / "g.json")
    assert loaded.body == genotype.body and set(loaded.body) == {"generator", "discriminator"}
    G, D = build_networks(loaded, 16, gf_dim=4, df_dim=4, latent_dim=8)
    assert isinstance(G, agan_modules.AGANGenerator) and isinstance(D, agan_modules.AGANDiscriminator)
    assert G(torch.randn(3, 8)).shape == (3, 3, 16, 16) and D(torch.rand(3, 3, 16, 16)).shape == (3, 1)
    assert hasattr(D.stem, "weight_orig")  # spectral norm on D
    bad = json.loads((tmp_path / "g.json").read_text())
    bad["discriminator"]["normal"]["ops"][0] = "deconv_3x3"
    with pytest.raises(GenotypeError, match="not an AGAN normal operation"):
        ConventionalGenotype.from_dict(bad)


def tiny(outdir, **kwargs):
    return AGANConfig("mem", str(outdir), preset="tiny", device="cpu", **kwargs)


@pytest.mark.slow
def test_tiny_search_resumes_exactly_and_retrains_g_and_d(tmp_path, proxy):
    data = images(n=16)
    whole = run_agan(tiny(tmp_path / "whole", iters=3), dataset=data, log=quiet, net=proxy)
    assert run_agan(tiny(tmp_path / "cut", iters=3), dataset=data, log=quiet, net=proxy, stop_at=1) is None
    cut = run_agan(tiny(tmp_path / "cut", iters=3, resume=True), dataset=data, log=quiet, net=proxy)
    assert cut.body == whole.body and cut.source["proxy_is"] == whole.source["proxy_is"]
    states = [torch.load(tmp_path / d / agan.STATE_FILE, weights_only=True) for d in ("whole", "cut")]
    for key, value in states[0]["controller"].items():
        torch.testing.assert_close(value, states[1]["controller"][key], rtol=0, atol=0)
    assert states[0]["baseline"] == states[1]["baseline"] and states[0]["best"] == states[1]["best"]
    records = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [1, 2, 3] and all(len(r["proxy_is"]) == 2 for r in records)
    baseline = None
    for r in records:
        assert r["rewards"] == pytest.approx([(s - 1) / (11.24 - s) for s in r["proxy_is"]])
        mean = sum(r["rewards"]) / len(r["rewards"])
        baseline = mean if baseline is None else 0.9 * baseline + 0.1 * mean  # the EMA persists across updates
        assert r["baseline"] == pytest.approx(baseline) and r["advantages"] == pytest.approx(
            [x - baseline for x in r["rewards"]], abs=1e-6)
    for name in ("genotype.json", "rewards.png", "samples/update00003.png"):
        assert (tmp_path / "cut" / name).is_file()
    run_training(TrainConfig(str(tmp_path / "cut" / "genotype.json"), "mem", str(tmp_path / "train"), preset="tiny",
                             steps=2, device="cpu"), dataset=data, log=quiet)
    checkpoint = torch.load(tmp_path / "train" / "checkpoint.pt", weights_only=True)
    assert any(key.startswith("cells.") for key in checkpoint["D"])  # the searched D was retrained


def test_errors(tmp_path, proxy):
    with pytest.raises(SearchError, match="shaped Inception Score"):
        run_agan(tiny(tmp_path, reward="fid"), dataset=images(n=4), log=quiet, net=proxy)
    with pytest.raises(SearchError, match="no search-state.pt"):
        run_agan(tiny(tmp_path, resume=True), dataset=images(n=4), log=quiet, net=proxy)
    with pytest.raises(SearchError, match="--is-range 5,5.005"):
        run_agan(tiny(tmp_path, overrides={"is_min": 5.0, "is_max": 5.005}), dataset=images(n=4), log=quiet,
                 net=proxy)


def test_a_child_at_is_max_is_clamped_and_logged_not_fatal(tmp_path, proxy):
    """Section 3.3's R = (IS - IS_min) / (IS_max - IS) has a pole at IS_max: with IS_max = 1 every proxy
    IS (> 1) is at or above it; the search goes on with R = (0.99 - 0) / 0.01 = 99 and says so."""
    lines = []
    genotype = run_agan(tiny(tmp_path, iters=1, overrides={"is_min": 0.0, "is_max": 1.0}), dataset=images(n=8),
                        log=lines.append, net=proxy)
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert all(s > 1.0 for s in record["proxy_is"]) and record["clamped"] == [True, True]
    assert record["rewards"] == pytest.approx([99.0, 99.0])
    assert any("reward clamped to 99" in line for line in lines)
    assert genotype.source["proxy_is"] == max(record["proxy_is"])  # ties broken by the IS
    config = json.loads((tmp_path / "config.json").read_text())
    assert not unsourced(config) and set(config) == set(agan.SOURCES)
    assert config["is_max"]["value"] == 1.0 and config["is_max"]["source"].startswith("command line: --is-range")
    settings = torch.load(tmp_path / agan.STATE_FILE, weights_only=True)["settings"]
    assert all(config[k]["value"] == (list(v) if isinstance(v, tuple) else v) for k, v in settings.items())


# AGAN (Wang and Huan 2019), transcribed from the paper independently of the code: section 4.2 (search)
# and 4.3 (retraining: the top models "train for 50,000 steps", channels doubled in G and D).
PAPER_SEARCH = {"update_every": 10, "child_steps": 5000, "channels": 128, "g_batch": 128, "d_batch": 64,
                "n_critic": 5, "lr": 2e-4, "betas": (0.0, 0.9), "ctrl_lr": 6e-4, "entropy": 1e-4, "hidden": 100,
                "reward_num": 50000, "is_splits": 10, "is_min": 1.0, "is_max": 11.24}
PAPER_RETRAIN = {"gf_dim": 256, "df_dim": 256, "steps": 50000, "g_batch": 128, "d_batch": 64, "n_critic": 5,
                 "lr": 2e-4, "betas": [0.0, 0.9], "lr_schedule": "constant"}


def test_paper_preset_is_section_4_2():
    preset = agan.PRESETS["paper"]
    assert {k: getattr(preset, k) for k in PAPER_SEARCH} == PAPER_SEARCH
    assert preset.updates * preset.update_every == 20000  # "an overall sample complexity of 20,000"


def test_retraining_an_agan_genotype_uses_256_channels_in_g_and_d(tmp_path):
    from stylenas.conventional.train import settings_of

    arch = agan.new_controller(hidden=8)(batch=1, generator=torch.Generator().manual_seed(3)).actions[0]
    genotype = genotype_of(arch, 32)
    settings = settings_of(TrainConfig("g.json", "mem", str(tmp_path)), 100, 32, genotype)
    assert {k: settings[k] for k in PAPER_RETRAIN} == PAPER_RETRAIN
    wider = settings_of(TrainConfig("g.json", "mem", str(tmp_path), gf_dim=64, df_dim=32), 100, 32, genotype)
    assert (wider["gf_dim"], wider["df_dim"]) == (64, 32)  # --gf-dim / --df-dim
    G, D = build_networks(genotype, 32, settings["gf_dim"], settings["df_dim"], 128)
    for net in (G, D):  # every convolution of the module cells at 256 channels
        assert max(p.shape[0] for p in net.parameters() if p.dim() == 4) == 256


SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(1)
from stylenas.conventional.searchers.agan import AGANConfig, run_agan
gen = torch.Generator().manual_seed(0)
data = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=gen) for _ in range(16)]
g = run_agan(AGANConfig("mem", sys.argv[1], preset="tiny", proxy=True, device="cpu", iters=2,
                        overrides={"update_every": 3}), dataset=data, log=lambda line: None)
"""


@pytest.mark.slow
def test_two_processes_search_like_one(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    outs = []
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        launch(script, out, processes=processes)
        outs.append(out)
    logs = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (out / "log.jsonl").read_text().splitlines()] for out in outs]
    assert logs[0] == logs[1] and len(logs[0]) == 2
    assert (outs[0] / "genotype.json").read_text() == (outs[1] / "genotype.json").read_text()
