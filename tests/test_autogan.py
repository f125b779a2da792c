"""AutoGAN: the space and its published points, the shared cells against the derived networks, the
dynamic-reset rule, BatchNorm recalibration, and tiny searches (resume, reset, FID reward, CLI,
retraining, 2 processes == 1)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stylenas.conventional import rewards
from stylenas.conventional.searchers import autogan
from stylenas.conventional.searchers.autogan import (AutoGANConfig, LossWindows, SearchError, recalibrate_batchnorm,
                                                     run_autogan)
from stylenas.conventional.spaces.autogan_cells import SharedGenerator, decode, space_size
from stylenas.conventional.commands import search_conventional_command
from stylenas.conventional.genotypes import PUBLISHED, load_genotype
from stylenas.conventional.spaces.autogan_cells import autogan_code, autogan_from_code
from stylenas.conventional.networks import build_generator
from stylenas.conventional.train import TrainConfig, run_training
from stylenas.metrics import frechet_distance
from helpers import images, launch, quiet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def proxy():
    return rewards.ProxyInception(seed=0)


def test_space_size_counts_every_code():
    assert space_size() == 36 ** 3 * 2 * 4 == 373_248
    assert autogan.STAGE_CHOICES[2][-1] == 4 and sum(len(c) for c in autogan.STAGE_CHOICES) == 14


# The cells of the authors' models/autogan_cifar10_{a,b,c}.py (all pre-activation: their retraining Cell)
def cell(norm, up, shortcut, skip):
    return {"conv": "pre", "norm": norm, "up": up, "shortcut": shortcut, "skip_in": skip}


SHIPPED = {
    "autogan_a": [cell("none", "nearest", True, []), cell("none", "bilinear", True, [1]),
                  cell("none", "nearest", False, [1, 2])],
    "autogan_b": [cell("none", "nearest", True, []), cell("none", "nearest", True, [1]),
                  cell("none", "nearest", True, [1, 2])],
    "autogan_c": [cell("bn", "nearest", True, []), cell("none", "bilinear", True, [1]),
                  cell("none", "nearest", False, [1, 2])],
}
CODES = {"autogan_a": [1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3],
         "autogan_b": [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 3],
         "autogan_c": [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3]}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_published_codes_decode_to_the_shipped_genotypes(name):
    assert autogan_from_code(CODES[name]).body["cells"] == SHIPPED[name]
    assert load_genotype(name).body["cells"] == SHIPPED[name] and autogan_code(PUBLISHED[name]()) == CODES[name]
    assert decode(CODES[name]) == SHIPPED[name] and decode(CODES[name][:9]) == SHIPPED[name][:2]
    assert decode(CODES[name][:4]) == SHIPPED[name][:1]


def copy_into_derived(shared, derived, cells):
    """Load the path ``cells`` takes through the shared G into the derived network's parameters."""
    target = {"l1": shared.l1, "to_rgb": shared.to_rgb}
    for name, module in target.items():
        getattr(derived, name).load_state_dict(module.state_dict())
    for c, (mine, spec) in enumerate(zip(derived.cells, cells)):
        src = shared.cells[c]
        first, second = src.blocks[f"{spec['conv']}1"], src.blocks[f"{spec['conv']}2"]
        mine.c1.load_state_dict(first["conv"].state_dict()), mine.c2.load_state_dict(second["conv"].state_dict())
        if spec["norm"] == "bn":
            mine.n1.load_state_dict(first["bn"].state_dict()), mine.n2.load_state_dict(second["bn"].state_dict())
        if spec["up"] == "deconv":
            mine.deconv.load_state_dict(first["deconv"].state_dict())
        if spec["shortcut"]:
            mine.c_sc.load_state_dict(src.c_sc.state_dict())
            if spec["up"] == "deconv":
                mine.deconv_sc.load_state_dict(src.deconv_sc.state_dict())
        for i, source in enumerate(sorted(spec["skip_in"])):
            mine.skip_in_ops[i].load_state_dict(src.skip_in_ops[source - 1].state_dict())
            if spec["up"] == "deconv":
                mine.skip_deconvs[i].load_state_dict(src.skip_deconvs[source - 1].state_dict())


@pytest.mark.parametrize("code", [CODES["autogan_a"], [0, 1, 2, 1, 0, 2, 2, 1, 1, 1, 1, 2, 0, 2],
                                  [0, 2, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 1, 3]])
def test_the_shared_path_equals_the_derived_network(code):
    torch.manual_seed(0)
    shared = SharedGenerator(16, 8, 4)
    genotype = autogan_from_code(code, resolution=16)
    derived = build_generator(genotype, 16, 8, 4)
    copy_into_derived(shared, derived, genotype.body["cells"])
    z = torch.randn(5, 4)
    torch.testing.assert_close(shared(z, decode(code)), derived(z))
    assert shared(z, decode(code[:4])).shape == (5, 3, 4, 4) and shared(z, decode(code[:9])).shape[-1] == 8


def test_reset_rule_on_a_synthetic_loss_series():
    rng = np.random.default_rng(0)
    windows = LossWindows(500, 1e-3)
    for _ in range(499):
        windows.push(d_loss=1 + 0.001 * rng.standard_normal(), g_loss=2.0)
    assert not windows.collapsed()  # the G window is not full yet
    windows.push(d_loss=1.0, g_loss=2.0)
    assert windows.collapsed()  # flat G losses
    for _ in range(500):  # variance 0.01 (G) and ~1e-6 (D): D collapsed
        windows.push(d_loss=1 + 0.001 * rng.standard_normal(), g_loss=2 + 0.1 * rng.standard_normal())
    assert windows.collapsed()
    for _ in range(500):  # both vary: training goes on
        windows.push(d_loss=1 + 0.1 * rng.standard_normal(), g_loss=2 + 0.1 * rng.standard_normal())
    assert not windows.collapsed()
    windows.push(d_loss=1.0, g_loss=12.0)  # one outlier keeps the G variance at ~0.2
    for _ in range(499):
        windows.push(d_loss=1 + 0.1 * rng.standard_normal(), g_loss=2.0)
    assert len(windows.g) == 500 and not windows.collapsed()
    windows.push(g_loss=2.0)  # the window slides past it
    assert np.var(windows.g) == 0 and windows.collapsed()
    windows.clear()
    assert not windows.collapsed()


def test_batchnorm_statistics_are_recomputed_per_candidate():
    torch.manual_seed(1)
    G = SharedGenerator(16, 8, 4)
    arch = decode([1, 1, 0, 1])  # cell 1 with BN
    G.train()
    for _ in range(3):  # shared running statistics drift with other architectures
        G(torch.randn(6, 4), decode([0, 1, 2, 0]))
    fresh = recalibrate_batchnorm(G, arch, samples=12, batch=4, seed=5)
    assert not fresh.training
    bn = fresh.cells[0].blocks["pre1"]["bn"]
    captured = []
    hook = bn.register_forward_hook(lambda m, i, o: captured.append(i[0]))
    with torch.no_grad():
        for start in (0, 4, 8):
            fresh(autogan.latents(5, start, 11, 4, 4, "cpu"), arch)  # eval mode: running stats unchanged
    hook.remove()
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean((0, 2, 3)) for x in captured]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([x.var((0, 2, 3)) for x in captured]).mean(0),
                               rtol=1e-4, atol=1e-6)


def tiny(outdir, **kwargs):
    return AutoGANConfig("mem", str(outdir), preset="tiny", device="cpu", **kwargs)


@pytest.mark.slow
def test_tiny_search_resumes_exactly_and_its_genotype_retrains(tmp_path, proxy):
    data = images()
    whole = run_autogan(tiny(tmp_path / "whole"), dataset=data, log=quiet, net=proxy)
    assert run_autogan(tiny(tmp_path / "cut"), dataset=data, log=quiet, net=proxy, stop_at=2) is None
    cut = run_autogan(tiny(tmp_path / "cut", resume=True), dataset=data, log=quiet, net=proxy)
    assert cut.body == whole.body and cut.source["candidates"] == whole.source["candidates"]
    first = torch.load(tmp_path / "whole" / autogan.STATE_FILE, weights_only=True)["search"]
    second = torch.load(tmp_path / "cut" / autogan.STATE_FILE, weights_only=True)["search"]
    for part in ("G", "D", "controller"):
        for key in first[part]:
            torch.testing.assert_close(first[part][key], second[part][key], rtol=0, atol=0, msg=f"{part}.{key}")
    assert first["baseline"] == second["baseline"] and first["counters"] == second["counters"]
    records = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    untimed = [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert untimed == [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                       for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "ctrl_step" in r]
    assert [r["ctrl_step"] for r in steps] == list(range(1, 7)) and all(r["score"] == "proxy_is" for r in steps)
    assert [r["stage"] for r in steps] == [1, 1, 2, 2, 3, 3]
    baseline = None
    for r in steps:  # one EMA over all controller steps, stages included
        baseline = r["reward_mean"] if baseline is None else 0.9 * baseline + 0.1 * r["reward_mean"]
        assert r["baseline"] == pytest.approx(baseline)
    assert all(len(code) == 4 + 5 * (r["stage"] - 1) for r in steps for code in r["archs"])
    assert {r["grow"] for r in records if "grow" in r} == {1, 2}
    for name in ("genotype.json", "rewards.png", "samples/iter0003.png"):
        assert (tmp_path / "cut" / name).is_file()
    genotype = load_genotype(tmp_path / "cut" / "genotype.json")
    assert genotype.search_space == "autogan" and genotype.source["method"] == "autogan"
    assert "proxy_is" in genotype.source and "is" not in genotype.source
    run_training(TrainConfig(str(tmp_path / "cut" / "genotype.json"), "mem", str(tmp_path / "train"), preset="tiny",
                             steps=2, device="cpu"), dataset=data, log=quiet)
    assert (tmp_path / "train" / "checkpoint.pt").is_file()


def test_dynamic_reset_reinitialises_the_shared_gan(tmp_path, proxy):
    data = images(n=8)
    overrides = {"reset_window": 1, "reset_threshold": 1e9, "iterations": 3, "ctrl_steps": 1, "ctrl_batch": 1,
                 "num_candidates": 2}
    lines = []
    run_autogan(tiny(tmp_path, overrides=overrides), dataset=data, log=lines.append, net=proxy)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    iterations = [r for r in records if "reset" in r]
    # each iteration stops at its first G loss (n_critic 2)
    assert [r["reset"] for r in iterations] == [True] * 3 and all(r["d_steps"] <= 2 for r in iterations)
    assert sum("dynamic reset" in line for line in lines) == 3
    state = torch.load(tmp_path / autogan.STATE_FILE, weights_only=True)["search"]
    assert state["counters"]["resets"] == 3 and state["windows"] == {"g": [], "d": []}
    # the shared G is the fresh one of reset 3
    fresh = autogan.AutoGANSearch(autogan.replace(autogan.PRESETS["tiny"], **overrides), 16, data, 0, "cpu", "is",
                                  proxy, None)
    fresh.counters["resets"] = 3
    fresh._new_gan()
    for key, value in fresh.G.state_dict().items():
        torch.testing.assert_close(state["G"][key], value, rtol=0, atol=0)
    with pytest.raises(SearchError, match="reward_num=8 \\(now 4\\)"):
        run_autogan(tiny(tmp_path, overrides={**overrides, "reward_num": 4}, resume=True), dataset=data, log=quiet,
                    net=proxy)


@pytest.mark.slow
def test_command_line_search_then_retraining(tmp_path):
    from stylenas.conventional.commands import train_conventional_command
    from stylenas.datasets import make_demo_data

    make_demo_data(tmp_path / "demo.lmdb", [16], 16, progress=False)
    out = tmp_path / "search"
    result = CliRunner().invoke(search_conventional_command, [
        "--method", "autogan", "--data", str(tmp_path / "demo.lmdb"), "--outdir", str(out), "--preset", "tiny",
        "--proxy", "--device", "cpu", "--ctrl-batch", "1", "--reward-num", "4"])
    assert result.exit_code == 0, result.output
    assert "PROXY reward" in result.output and "proxy_is" in result.output
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"ctrl_step"' in line]
    assert all(len(r["archs"]) == 1 for r in steps)
    result = CliRunner().invoke(train_conventional_command, [
        "--genotype", str(out / "genotype.json"), "--data", str(tmp_path / "demo.lmdb"), "--outdir",
        str(tmp_path / "train"), "--preset", "tiny", "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_fid_reward_is_minus_the_batched_fid(proxy):
    data = images(n=12)
    preset = autogan.replace(autogan.PRESETS["tiny"], reward_num=6, fid_reference_num=12)
    search = autogan.AutoGANSearch(preset, 16, data, 0, "cpu", "fid", proxy, None)
    codes = [[1, 0, 1, 1], [0, 2, 2, 0]]
    scores = search.score(codes, seed=1)
    mu_ref, sigma_ref = search.reference()
    for code, score in zip(codes, scores):
        G = recalibrate_batchnorm(autogan.copy.deepcopy(search.G), decode(code), preset.bn_samples,
                                  preset.eval_batch, 0)
        G.arch = decode(code)
        _, stats = rewards.sample_outputs(G, proxy, 6, preset.latent_dim, 0, preset.eval_batch)
        assert score == pytest.approx(-frechet_distance(stats.mu(), stats.sigma(), mu_ref, sigma_ref), rel=1e-6)


def test_tiny_search_with_the_fid_reward(tmp_path, proxy):
    overrides = {"ctrl_steps": 1, "ctrl_batch": 2, "num_candidates": 2, "reward_num": 6, "fid_reference_num": 8}
    genotype = run_autogan(tiny(tmp_path, reward="fid", overrides=overrides), dataset=images(n=8), log=quiet,
                           net=proxy)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "ctrl_step" in r]
    assert all(r["score"] == "proxy_fid" and all(x < 0 for x in r["rewards"]) for r in steps)  # reward = -FID
    fids = [c["proxy_fid"] for c in genotype.source["candidates"]]
    assert genotype.source["proxy_fid"] == min(fids) == fids[0] > 0  # the best candidate has the lowest FID
    assert "fid" not in genotype.source and "is" not in genotype.source


def test_errors(tmp_path, proxy):
    with pytest.raises(SearchError, match="iterations"):
        run_autogan(tiny(tmp_path, iters=2), dataset=images(n=4), log=quiet, net=proxy)
    with pytest.raises(SearchError, match="reward"):
        run_autogan(tiny(tmp_path, reward="kid"), dataset=images(n=4), log=quiet, net=proxy)
    with pytest.raises(SearchError, match="no search-state.pt"):
        run_autogan(tiny(tmp_path, resume=True), dataset=images(n=4), log=quiet, net=proxy)
    result = CliRunner().invoke(search_conventional_command, [
        "--method", "autogan", "--data", str(tmp_path / "no.lmdb"), "--outdir", str(tmp_path / "o"), "--preset", "tiny",
        "--proxy", "--device", "cpu"])
    assert result.exit_code != 0 and "no.lmdb" in result.output
    assert not (tmp_path / "o" / autogan.STATE_FILE).exists()


SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(1)
from stylenas.conventional.searchers.autogan import AutoGANConfig, run_autogan
gen = torch.Generator().manual_seed(0)
data = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=gen) for _ in range(16)]
overrides = {"ctrl_batch": 3, "num_candidates": 3}
g = run_autogan(AutoGANConfig("mem", sys.argv[1], preset="tiny", proxy=True, device="cpu", overrides=overrides),
                dataset=data, log=lambda line: None)
if g is not None:
    json.dump(g.source["candidates"], open(sys.argv[1] + "/candidates.json", "w"))
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
    candidates = [json.loads((out / "candidates.json").read_text()) for out in outs]
    assert candidates[0] == candidates[1]
    states = [torch.load(out / autogan.STATE_FILE, weights_only=True)["search"] for out in outs]
    for key, value in states[0]["controller"].items():
        torch.testing.assert_close(value, states[1]["controller"][key], rtol=0, atol=0)
    rewards_of = [[r["rewards"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
                   if "rewards" in r] for out in outs]
    assert rewards_of[0] == rewards_of[1]


@pytest.mark.slow
def test_bench_reports_controller_steps_children_and_candidates_per_hour():
    from stylenas.conventional import bench

    device = torch.device("cpu")
    row = bench.autogan_search("tiny", device, 1, processes=(1, 4))
    assert all(row[k] > 0 for k in ("seconds_per_shared_d_step", "seconds_per_candidate_reward",
                                    "seconds_per_controller_step"))
    assert row["candidates_per_hour"]["4"] == pytest.approx(4 * 3600 / row["seconds_per_candidate_reward"])
    child = bench.agan_search("tiny", device, 1, processes=(2,))
    assert child["seconds_per_child"] == pytest.approx(child["child_steps"] * child["seconds_per_child_g_step"]
                                                       + child["reward_num"] * child["seconds_per_reward_image"])
    assert child["children_per_hour"]["2"] == pytest.approx(2 * 3600 / child["seconds_per_child"])
