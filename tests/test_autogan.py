"""AutoGAN: the space and its published points, the shared cells against the derived networks, the
dynamic-reset rule, BatchNorm recalibration, and tiny searches (resume, reset, FID reward, CLI,
retraining, 2 processes == 1)."""
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner

from stylenas.conventional import rewards
from stylenas.conventional.searchers import autogan
from stylenas.conventional.searchers.autogan import (AutoGANConfig, LossWindows, SearchError, recalibrate_batchnorm,
                                                     run_autogan)
from stylenas.conventional.spaces.autogan_cells import SharedGenerator, decode, space_size
from stylenas.conventional.commands import retrain_sources, search_conventional_command
from stylenas.conventional.genotypes import PUBLISHED, load_genotype
from stylenas.conventional.spaces.autogan_cells import autogan_code, autogan_from_code
from stylenas.conventional.networks import build_generator
from stylenas.conventional.sources import unsourced
from stylenas.conventional.train import TrainConfig, run_training
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
    baseline, iteration = None, None
    for r in steps:  # the authors' train_controller: baseline = None at each iteration's controller phase
        mean = sum(r["shaped_rewards"]) / len(r["shaped_rewards"])
        baseline = mean if r["iteration"] != iteration else 0.9 * baseline + 0.1 * mean
        iteration = r["iteration"]
        assert r["baseline"] == pytest.approx(baseline, rel=1e-12)
        assert r["advantages"] == pytest.approx([x - baseline for x in r["shaped_rewards"]], abs=1e-6)
        # the entropy bonus 1e-3 x (mean entropy per decision) is in the reward, and only there
        bonus = [x - y for x, y in zip(r["shaped_rewards"], r["rewards"])]
        assert all(0 < b <= 1e-3 * np.log(4) for b in bonus)
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


def scipy_fid(a, b):
    """FID of two feature sets [n, d] by the formula. With n << d the covariances have rank < n, so
    tr sqrt(S_a S_b) is taken exactly as the sum of the square roots of the eigenvalues (scipy) of the
    n x n matrix A S_b A^T / (n - 1), A the centred features of a (the same nonzero spectrum as S_a S_b)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    centred = a - mu1
    eigenvalues = scipy.linalg.eigvalsh(centred @ s2 @ centred.T / (len(a) - 1))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eigenvalues.clip(0)).sum())


def test_fid_reward_is_minus_the_scipy_fid_of_the_same_features(proxy):
    """The FID reward against an independent oracle: the proxy's features of the candidate's samples
    and of the stage-resolution reals taken here, and the FID through scipy."""
    data = images(n=12)
    preset = autogan.replace(autogan.PRESETS["tiny"], reward_num=6, fid_reference_num=12)
    search = autogan.AutoGANSearch(preset, 16, data, 0, "cpu", "fid", proxy, None)
    codes = [[1, 0, 1, 1], [0, 2, 2, 0]]
    scores = search.score(codes, seed=1)
    factor = 16 // search.stage_resolution()  # cell 1 draws 4 px images (bottom width 2 at 16 px)
    assert factor == 4
    with torch.no_grad():  # the reals at the stage's resolution: average-pooled, rounded to uint8
        reals = torch.stack([torch.nn.functional.avg_pool2d(x[None].float(), factor)[0].round() for x in data])
        real_features = proxy(reals.to(torch.uint8)).features.double().numpy()
    for code, score in zip(codes, scores):
        G = recalibrate_batchnorm(autogan.copy.deepcopy(search.G), decode(code), preset.bn_samples,
                                  preset.eval_batch, 0)
        with torch.no_grad():
            fake = G(rewards._latents(0, 0, 6, preset.latent_dim), decode(code))
            features = proxy(((fake + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)).features.double().numpy()
        assert -score == pytest.approx(scipy_fid(features, real_features), rel=1e-4)
    assert scores[0] != scores[1]


def test_tiny_search_with_the_fid_reward(tmp_path, proxy):
    overrides = {"ctrl_steps": 1, "ctrl_batch": 2, "num_candidates": 2, "reward_num": 6, "fid_reference_num": 8,
                 "baseline": "persistent"}
    genotype = run_autogan(tiny(tmp_path, reward="fid", overrides=overrides), dataset=images(n=8), log=quiet,
                           net=proxy)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "ctrl_step" in r]
    baseline = None
    for r in steps:  # --baseline persistent: one EMA over every controller step of the search
        mean = sum(r["shaped_rewards"]) / len(r["shaped_rewards"])
        baseline = mean if baseline is None else 0.9 * baseline + 0.1 * mean
        assert r["baseline"] == pytest.approx(baseline, rel=1e-12)
    record = json.loads((tmp_path / "config.json").read_text())
    assert not unsourced(record) and set(record) == set(autogan.SOURCES)
    settings = torch.load(tmp_path / autogan.STATE_FILE, weights_only=True)["settings"]  # what the search ran with
    assert all(record[k]["value"] == (list(v) if isinstance(v, tuple) else v) for k, v in settings.items())
    assert record["baseline"]["value"] == "persistent" and record["reward"]["value"] == "fid"
    assert record["ctrl_betas"]["value"] == [0.0, 0.9] and "create_ctrler" in record["ctrl_betas"]["source"]
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


# VITA-Group/AutoGAN, transcribed independently of the code under test: exps/autogan_search.sh (the flags
# it passes) and cfg.py defaults for the flags it does not (line numbers of the fetched checkout).
AUTHORS_SEARCH = {
    "iterations": 65,  # --max_search_iter 65
    "grow_at": (15, 35),  # --grow_step1 15 --grow_step2 35
    "shared_epochs": 15,  # --shared_epoch 15
    "ctrl_steps": 30,  # --ctrl_step 30
    "ctrl_batch": 1,  # --ctrl_sample_batch 1
    "num_candidates": 10,  # --num_candidate 10
    "topk": 5,  # --topk 5
    "gf_dim": 128, "df_dim": 64, "latent_dim": 128,  # --gf_dim 128 --df_dim 64 --latent_dim 128
    "g_batch": 128, "d_batch": 64,  # -gen_bs 128 -dis_bs 64
    "n_critic": 5, "lr": 2e-4, "betas": (0.0, 0.9),  # --n_critic 5 --g_lr 0.0002 --beta1 0.0 --beta2 0.9
    "ctrl_lr": 3.5e-4,  # cfg.py line 40
    "ctrl_betas": (0.0, 0.9),  # search.py lines 52-56: the controller's Adam gets (args.beta1, args.beta2)
    "hidden": 100,  # cfg.py line 169
    "baseline_decay": 0.9,  # cfg.py line 172
    "reward_num": 5000,  # cfg.py line 177
    "entropy": 1e-3,  # cfg.py line 193
    "reset_threshold": 1e-3, "reset_window": 500,  # cfg.py lines 196, 199
    "baseline": "phase",  # functions.py line 246: baseline = None in every train_controller call
}


def test_paper_preset_and_optimisers_are_the_authors_search(proxy):
    preset = autogan.PRESETS["paper"]
    assert {k: getattr(preset, k) for k in AUTHORS_SEARCH} == AUTHORS_SEARCH
    tiny_preset = autogan.replace(autogan.PRESETS["tiny"], ctrl_lr=AUTHORS_SEARCH["ctrl_lr"])
    search = autogan.AutoGANSearch(tiny_preset, 16, images(n=8), 0, "cpu", "is", proxy, None)
    for _ in range(2):  # the first controller and the one of the next stage
        group = search.ctrl_opt.param_groups[0]
        assert group["betas"] == AUTHORS_SEARCH["ctrl_betas"] and group["lr"] == AUTHORS_SEARCH["ctrl_lr"]
        search.stage += 1
        search._new_controller()
    assert search.G_opt.param_groups[0]["betas"] == search.D_opt.param_groups[0]["betas"] == (0.0, 0.9)


@pytest.mark.parametrize("schedule", [None, "linear"])
def test_retraining_keeps_the_learning_rate_constant_as_the_authors_scripts(tmp_path, schedule):
    """exps/autogan_cifar10_a.sh passes no --lr_decay, so the authors' train.py (line 144) never
    decays the rate; --lr-schedule linear is their LinearLrDecay to 0 over the D steps."""
    out = tmp_path / "train"
    run_training(TrainConfig("autogan_a", "mem", str(out), preset="tiny", steps=3, device="cpu", lr=3e-4,
                             lr_schedule=schedule), dataset=images(n=8), log=quiet, sources=retrain_sources)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    d_steps = checkpoint["counters"]["d_step"]
    assert d_steps == 3 * 2  # tiny: n_critic 2
    last = 3e-4 if schedule is None else 3e-4 * (1 - (d_steps - 1) / d_steps)  # the rate of the last D step
    for opt in ("G_opt", "D_opt"):
        assert checkpoint[opt]["param_groups"][0]["lr"] == pytest.approx(last, rel=1e-12)
    record = json.loads((out / "config.json").read_text())
    assert not unsourced(record)
    assert record["lr_schedule"]["value"] == (schedule or "constant")
    if schedule is None:
        assert "no --lr_decay" in record["lr_schedule"]["source"]
    else:
        assert record["lr_schedule"]["source"].startswith("command line: --lr-schedule")
    for name, value in checkpoint["config"].items():  # config.json holds what the trainer ran with
        if name != "genotype_record":
            assert record[name]["value"] == value, name


def test_train_conventional_options_reach_the_run_and_its_config(tmp_path):
    from stylenas.conventional.commands import train_conventional_command
    from stylenas.datasets import make_demo_data

    make_demo_data(tmp_path / "demo.lmdb", [16], 8, progress=False)
    out = tmp_path / "train"
    result = CliRunner().invoke(train_conventional_command, [
        "--genotype", "autogan_a", "--data", str(tmp_path / "demo.lmdb"), "--outdir", str(out), "--preset", "tiny",
        "--steps", "2", "--device", "cpu", "--gf-dim", "12", "--df-dim", "10", "--lr-schedule", "linear"])
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (checkpoint["config"]["gf_dim"], checkpoint["config"]["df_dim"]) == (12, 10)
    assert checkpoint["G"]["l1.weight"].shape[0] == 12 * 2 * 2  # bottom width 2 at 16 px
    record = json.loads((out / "config.json").read_text())
    for name, option in (("gf_dim", "--gf-dim"), ("df_dim", "--df-dim"), ("lr_schedule", "--lr-schedule")):
        assert record[name]["source"].startswith(f"command line: {option}")
    assert record["lr_schedule"]["value"] == "linear"


def test_alphagan_options_are_refused_for_other_methods(tmp_path):
    result = CliRunner().invoke(search_conventional_command, [
        "--method", "degas", "--data", str(tmp_path / "x.lmdb"), "--outdir", str(tmp_path / "o"), "--n-critic", "1"])
    assert result.exit_code != 0 and "only for --method alphagan" in result.output
