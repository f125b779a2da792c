"""DGGAN (conventional/searchers/dggan.py): growing, weight inheritance, fade-in, Algorithm 1 on a toy score,
ProgGAN's WGAN-GP, a tiny 8 -> 16 px search with the proxy reward, resume after a kill, and a
2-process search equal to a 1-process one."""
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stylenas.conventional.searchers import dggan, dggan_candidates, dggan_reports, dggan_run
from stylenas.conventional.searchers.dggan import DGGANConfig, run_dggan
from stylenas.conventional.searchers.dggan_candidates import FIDScorer, fade_alpha, wgan_gp_d_loss
from stylenas.conventional.searchers.dggan_run import SearchInterrupted
from stylenas.conventional.spaces.dggan_grown import (Action, action_space, apply_action, base_body, build_grown,
                                                       grow, stage_resolutions)
from helpers import launch

pytestmark = pytest.mark.usefixtures("one_thread")


def trained_parent(body, seed=0):
    torch.manual_seed(seed)
    G, D = build_grown(body)
    return {"G": G.state_dict(), "D": D.state_dict()}, G, D


def toy_data(n=32, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    images = []
    for _ in range(n):
        colour = torch.rand(3, 1, 1, generator=gen)
        images.append((255 * colour * (ramp.view(1, 1, -1) * ramp.view(1, -1, 1))).to(torch.uint8))
    return images


# ---------------------------------------------------------------------------- growing

# transcribed from the paper (/work/shared/papers/dggan.txt), section by section
PAPER = {
    "kernels": (3, 7),  # "Action Search Space": "filter sizes from {3, 7}"
    "filters": (32, 64, 128, 256, 512, 1024),  # "Action Search Space": "number of filters from {32, ..., 1024}"
    "top_k": 20, "p": 0.4,  # "Discussion on Efficiency": "we choose K = 20 and p = 0.4"
    "child_iters": 100_000,  # "Implementation Details": "train each new candidate with 100k iterations"
    "d0": 8,  # "Generator and Discriminator Base Architecture": "d0 is 8 in our experiments"
}
# ProgGAN's schedule ("We follow the same training schedule as ProgGAN"): tkarras/progressive_growing_of_gans
# config.py G_opt / D_opt (beta1 0.0, beta2 0.99), learning rate 0.001, minibatch 16 at low resolutions
PROGGAN = {"lr": 0.001, "betas": (0.0, 0.99), "batch": 16}


def test_action_space_and_paper_preset_are_the_papers():
    actions = action_space()
    assert len(actions) == 2 * len(PAPER["kernels"]) * len(PAPER["filters"]) + 1
    for net in ("g", "d"):
        assert {(a.kernel, a.filters) for a in actions if a.kind == net} == {
            (k, f) for k in PAPER["kernels"] for f in PAPER["filters"]}
    assert all(Action.parse(a.name) == a for a in actions)
    config = DGGANConfig(**dggan.PRESETS["paper"]).resolved()
    assert (config.kernels, config.filters, config.top_k, config.p, config.child_iters) == (
        PAPER["kernels"], PAPER["filters"], PAPER["top_k"], PAPER["p"], PAPER["child_iters"])
    assert (config.lr, config.betas, config.batch) == (PROGGAN["lr"], PROGGAN["betas"], PROGGAN["batch"])
    assert stage_resolutions(base_body(4, [4]))[0] == PAPER["d0"]


def test_base_networks_and_heads():
    body = base_body(16, [8, 8, 8])
    G, D = build_grown(body)
    z = torch.randn(4, 16)
    assert G(z).shape == (4, 3, 8, 8) and D(G(z)).shape == (4, 1)
    grown = apply_action(apply_action(body, Action("g", 7, 4)), Action("g", 3, 6))
    G2, _ = build_grown(grown)
    stage = G2.stages[0]  # G: first, grown in order, then the last conv (the newest sits before it)
    assert [m.conv.weight.shape[1:] for m in stage.grown] == [(8, 7, 7), (4, 3, 3)]
    assert stage.last.conv.weight.shape[1] == 6
    grown_d = apply_action(apply_action(body, Action("d", 7, 4)), Action("d", 3, 6))
    _, D2 = build_grown(grown_d)
    stage = D2.stages[0]  # D: first, then the newest, then older ones, then the last conv
    assert stage.grown[1].conv.weight.shape == (6, 8, 3, 3)  # newest, right after the first conv
    assert stage.grown[0].conv.weight.shape == (4, 6, 7, 7)
    assert stage.last.conv.weight.shape[1] == 4
    assert D2(torch.randn(4, 3, 8, 8)).shape == (4, 1)


@pytest.mark.parametrize("action", [Action("g", 3, 4), Action("d", 7, 16), Action("double")])
def test_weight_inheritance(action):
    body = base_body(16, [8, 8, 8])
    parent, _, _ = trained_parent(body)
    torch.manual_seed(1)
    child_body, G, D = grow(body, parent, action)
    for net, state in (("G", G.state_dict()), ("D", D.state_dict())):
        source = dict(parent[net])
        if action.kind == "double":  # the old toRGB / fromRGB become the fading path
            source = {k.replace("to_rgb.", "to_rgb_prev.").replace("from_rgb.", "from_rgb_prev."): v
                      for k, v in source.items()}
        shared = [k for k in state if k in source and state[k].shape == source[k].shape]
        assert len(shared) >= len(source) - 2
        for key in shared:
            assert torch.equal(state[key], source[key]), key
        new = [k for k in state if k not in source and k.endswith("weight")]
        assert new if net.lower() == action.kind or action.kind == "double" else not new
        for key in new:  # random, not a copy of anything the parent had
            assert not any(v.shape == state[key].shape and torch.equal(v, state[key]) for v in source.values())
        for key in (k for k in state if k in source and state[k].shape != source[k].shape):
            block = tuple(slice(0, min(a, b)) for a, b in zip(state[key].shape, source[key].shape))
            assert torch.equal(state[key][block], source[key][block]), key  # the overlapping block


def test_fade_in_schedule_and_weight_zero_is_the_parent():
    assert [fade_alpha(i, 4) for i in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert fade_alpha(3, 0) == 1.0
    body = apply_action(base_body(16, [8, 6, 4]), Action("g", 3, 4))
    parent, G, D = trained_parent(body)
    _, G2, D2 = grow(body, parent, Action("double"))
    z, x = torch.randn(4, 16), torch.randn(4, 3, 16, 16)
    G.eval(), D.eval()
    G2.alpha = D2.alpha = 0.0
    assert torch.equal(G2(z), F.interpolate(G(z), scale_factor=2, mode="nearest"))
    assert torch.equal(D2(x), D(F.avg_pool2d(x, 2)))
    G2.alpha = D2.alpha = 0.5
    half = G2(z)
    G2.alpha = 1.0
    full = G2(z)
    low = F.interpolate(G(z), scale_factor=2, mode="nearest")
    assert torch.allclose(half, 0.5 * full + 0.5 * low, atol=1e-6) and not torch.allclose(full, low)
    # training moves alpha along the schedule: after it the fading layers are gone from the state
    seen = []
    original = G2.forward

    def spy(z):
        seen.append(G2.alpha)
        return original(z)

    G2.forward = spy
    dggan_candidates.train_candidate(G2, D2, toy_data(8), iters=4, batch=2, lr=1e-3, betas=(0, 0.99), fade_iters=2,
                          device="cpu")
    assert seen[::2] == [0.5, 1.0, 1.0, 1.0] and G2.alpha == 1.0
    assert not any("_prev" in k for k in dggan_candidates.final_state(G2, D2)["G"])


def test_wgan_gp_with_drift_by_hand():
    class Linear(torch.nn.Module):  # D(x) = <w, x>: the gradient is w everywhere
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([3.0, 0.0, 4.0, 0.0]).view(1, 4, 1, 1))

        def forward(self, x):
            return (x * self.w).sum(dim=(1, 2, 3))[:, None]

    real, fake = torch.ones(2, 4, 1, 1), torch.zeros(2, 4, 1, 1)
    loss = wgan_gp_d_loss(Linear(), real, fake)
    # E[D(fake)] - E[D(real)] + 10 (||w|| - 1)^2 + 0.001 E[D(real)^2] = 0 - 7 + 10 * 16 + 0.049
    assert loss.item() == pytest.approx(-7 + 160 + 0.001 * 49, rel=1e-6)


# ---------------------------------------------------------------------------- Algorithm 1 on a toy score

class ToySearch(dggan.DGGANSearch):
    """Algorithm 1 with the training replaced by a toy score of the genotype."""

    @staticmethod
    def toy(body):
        g = sum(f for stage in body["stages"] for _, f in stage["g"])
        d = sum(f for stage in body["stages"] for _, f in stage["d"])
        return abs(g - 2 * d) + 10.0 / len(body["stages"]) + 0.01 * (g + d)

    def save_samples(self, record):  # no weights behind a toy score
        pass

    def evaluate_jobs(self, jobs, step):
        return [{"fid": self.toy(j["genotype"]), "g_params": 1 + len(json.dumps(j["genotype"])), "d_params": 50,
                 "losses": {}, "seconds": 0.0} for j in jobs]


class ToyScorer:
    label = "toy"


def test_top_k_by_normalised_score_and_the_draw_on_a_toy_score(tmp_path):
    config = DGGANConfig(final_resolution=32, latent_dim=4, channels=(4, 4, 4), top_k=3, p=0.4, kernels=(3,),
                         filters=(2, 4), max_grown=1, seed=5)
    search = ToySearch(config, tmp_path, toy_data(4, 32), ToyScorer(), log=lambda line: None)
    step = 0
    while step == 0 or not search.stop_reason():
        parents = list(search.state["parents"])
        search.run_step(step)
        children = [r for r in search.state["candidates"] if r["step"] == step and r["sampled"]]
        if step:  # allowed (parent, action) pairs of this step's parents, each at most once
            pairs = [(c["parent"], c["action"]) for c in children]
            assert len(set(pairs)) == len(pairs) and {pid for pid, _ in pairs} <= set(parents)
            assert all(dggan.allowed(search.candidate(pid)["genotype"], Action.parse(name), 32, 1)
                       for pid, name in pairs)
        # the top K by the score over the ProgGAN baseline's at the child's resolution
        base = {int(r): ToySearch.toy(search.candidate(cid)["genotype"]) for r, cid in search.state["baselines"].items()}
        ranked = sorted(children, key=lambda r: (ToySearch.toy(r["genotype"]) / base[r["resolution"]], r["id"]))
        assert search.state["parents"] == [r["id"] for r in ranked[:3]]
        step += 1
    assert 3 <= step <= 12
    final = [r for r in search.state["candidates"] if r["resolution"] == 32]
    assert search.state["best"] == min(final, key=lambda r: (r["fid"], r["id"]))["id"]
    # the draw: each allowed pair with probability p (a draw of nothing is drawn again), the same
    # children for the same (seed, step), others for other steps and seeds
    again = ToySearch(config, tmp_path / "again", toy_data(4, 32), ToyScorer(), log=lambda line: None)
    other = ToySearch(replace(config, seed=6), tmp_path / "other", toy_data(4, 32), ToyScorer(),
                      log=lambda line: None)
    for s in (again, other):
        s.state["parents"] = [0]
        s.state["candidates"] = [{"id": 0, "genotype": base_body(4, [4, 4, 4])}]
    draws = [[a.name for _, a in again.sample_children(s)] for s in range(1, 400)]
    pairs = len(again.actions)
    expected = 0.4 / (1 - 0.6 ** pairs)
    assert sum(map(len, draws)) / (len(draws) * pairs) == pytest.approx(expected, abs=0.03)
    for action in again.actions:  # every action as often (independent draws)
        assert sum(action.name in d for d in draws) / len(draws) == pytest.approx(expected, abs=0.08)
    assert again.sample_children(7) == again.sample_children(7)
    assert len({tuple(d) for d in draws}) > 20
    assert any(again.sample_children(s) != other.sample_children(s) for s in range(1, 10))
    # every step's candidates are logged, normalised by the ProgGAN baseline of their resolution
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == len(search.state["candidates"])
    for record in log:
        base = search.candidate(search.state["baselines"][str(record["resolution"])])
        assert record["toy_norm"] == pytest.approx(record["toy"] / base["fid"])
    assert (tmp_path / "fig3.png").stat().st_size > 0
    # Fig. 3 (right): replays of Algorithm 1 on the trained candidates; at p = 1 and the search's K
    # the replay is the search itself, a smaller K explores a subset of it
    records = search.state["candidates"]
    real = min(r["fid_norm"] for r in records if r["resolution"] == 32 and r["sampled"])
    assert dggan_reports.simulate(records, 3, 1.0, 32) == {"best_fid_norm": pytest.approx(real), "reached": 1.0}
    greedy = dggan_reports.simulate(records, 1, 1.0, 32)  # may stop where the search trained no children
    assert greedy["reached"] in (0.0, 1.0) and (greedy["best_fid_norm"] or math.inf) >= real - 1e-12
    replays = json.loads((tmp_path / "simulation.json").read_text())
    assert list(replays["K"]) == ["1", "2", "3"] and "0.4" in replays["p"] and "1.0" in replays["p"]
    assert replays["p"]["1.0"]["best_fid_norm"] == pytest.approx(real)
    assert (tmp_path / "candidates.csv").read_text().count("\n") == len(log) + 1


def test_resume_refuses_other_scorer_settings_and_the_state_names_the_score(tmp_path):
    class Scorer:
        label, num, ref_num, weights_sha256 = "proxy_fid", 16, 64, "a" * 64

    config = DGGANConfig(final_resolution=16, latent_dim=4, channels=(4, 4), top_k=2, p=1.0, kernels=(3,),
                         filters=(2,), max_grown=1, seed=0)
    search = ToySearch(config, tmp_path, toy_data(4, 16), Scorer(), log=lambda line: None)
    search.run_step(0)
    search.run_step(1)
    stored = json.loads((tmp_path / dggan_run.STATE_FILE).read_text())
    assert all("fid" not in r and "fid_norm" not in r and r["proxy_fid"] > 0 for r in stored["candidates"])
    assert stored["settings"]["scorer"] == "proxy_fid"
    for name, value in (("num", 32), ("ref_num", None), ("weights_sha256", "b" * 64), ("label", "fid")):
        other = type("Other", (Scorer,), {name: value})
        with pytest.raises(ValueError, match="other settings") as error:
            ToySearch(config, tmp_path, toy_data(4, 16), other(), log=lambda line: None, resume=True)
        assert {"num": "scorer_samples", "ref_num": "scorer_reference_images", "weights_sha256": "inception_sha256",
                "label": "scorer"}[name] in str(error.value)
    resumed = ToySearch(config, tmp_path, toy_data(4, 16), Scorer(), log=lambda line: None, resume=True)
    assert resumed.state["candidates"] == search.state["candidates"]  # scores back under "fid" in memory
    figure = dggan_reports.plot_fig3(search.state["candidates"], 0, tmp_path / "proxy.png", label="proxy_fid")
    assert "PROXY" in figure._suptitle.get_text() and "proxy FID" in figure.axes[0].get_ylabel()


class ResolutionToy(ToySearch):
    """A score that grows with the resolution as FID does (R^2), worse with layers grown at the
    newest resolution, better with layers grown below it: doubling a grown parent is the best move."""

    @staticmethod
    def toy(body):
        newest = len(body["stages"][-1]["g"]) + len(body["stages"][-1]["d"])
        below = sum(len(stage["g"]) + len(stage["d"]) for stage in body["stages"][:-1])
        return (8 * 2 ** (len(body["stages"]) - 1)) ** 2 * (1 + 0.1 * newest) * 0.9 ** below


@pytest.mark.parametrize("rank_by", ["fid_norm", "fid"])
def test_a_doubled_child_can_survive(tmp_path, rank_by):
    config = DGGANConfig(final_resolution=32, latent_dim=4, channels=(4, 4, 4), top_k=3, p=1.0, kernels=(3,),
                         filters=(2, 4), max_grown=1, seed=0, rank_by=rank_by)
    search = ResolutionToy(config, tmp_path, toy_data(4, 32), ToyScorer(), log=lambda line: None)
    search.run_step(0)
    search.run_step(1)
    kept = {search.candidate(cid)["resolution"] for cid in search.state["parents"]}
    if rank_by == "fid_norm":  # the doubled base (score 1 x its baseline) beats 8 px children (1.1 x theirs)
        assert 16 in kept
        search.run_step(2)  # ... and doubling a grown parent (0.9 x the 16 px baseline) leads
        best = search.candidate(search.state["parents"][0])
        assert best["resolution"] == 16 and best["action"] == "double" and best["parent"] != 0
    else:  # raw scores: every 8 px child (64 x 1.1) beats every 16 px one (256 x ...): no doubling survives
        assert kept == {8}


def test_equalised_learning_rate_keeps_the_scale_of_activations():
    """ProgGAN's He constant sqrt(2 / fan_in): through a freshly built 32 px G and D the activations
    (root mean square) neither vanish nor explode, and D's output is of order 1. tkarras' gains
    (base_net proggan, gain 1 in toRGB); pytorch_GAN_zoo's sqrt(2) there: test_dggan_base.py."""
    torch.manual_seed(0)
    body = apply_action(apply_action(base_body(32, [32, 32, 32], "proggan"), Action("double")), Action("double"))
    G, D = build_grown(body)
    rms = {}
    for prefix, net in (("G", G), ("D", D)):
        for name, module in net.named_modules():
            if name.count(".") <= 1 and name:
                module.register_forward_hook(lambda m, i, o, key=f"{prefix}.{name}": rms.__setitem__(
                    key, o.detach().pow(2).mean().sqrt().item()))
    with torch.no_grad():
        out = D(G(torch.randn(64, 32)))
    assert 0.7 < rms["G.conv4.conv"] < 2.0 and 0.5 < rms["G.to_rgb"] < 2.0
    assert all(0.5 < rms[f"D.stages.{s}"] / rms["D.from_rgb"] < 2.0 for s in range(3)), rms
    assert 0.5 < rms["D.dense"] / rms["D.from_rgb"] < 2.0 and out.pow(2).mean().sqrt() > 0.3, rms


# ---------------------------------------------------------------------------- real searches (proxy reward)

TINY = dict(dggan.PRESETS["tiny"], final_resolution=16, seed=3)


@pytest.fixture(scope="module")
def proxy_scorer():
    from stylenas.conventional.rewards import reward_network

    return FIDScorer(reward_network("proxy"), num=16, batch=16)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, proxy_scorer):
    outdir = tmp_path_factory.mktemp("dggan") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    search = run_dggan(DGGANConfig(**TINY), outdir, toy_data(), proxy_scorer, log=lambda line: None)
    torch.set_num_threads(threads)
    return outdir, search


@pytest.mark.slow
def test_tiny_search_8_to_16_px_with_the_proxy_reward(uninterrupted):
    outdir, search = uninterrupted
    state = search.state
    log = [json.loads(line) for line in (outdir / "log.jsonl").read_text().splitlines()]
    assert len(log) == len(state["candidates"]) and {r["resolution"] for r in log} == {8, 16}
    for record in log:
        assert record["proxy_fid"] > 0 and "fid" not in record  # a proxy score is never called FID
        assert record["g_d_ratio"] == pytest.approx(record["g_params"] / record["d_params"])
        assert (record["parent"] is None) == (record["action"] is None)
    actions = {r["action"] for r in log if r["action"]}
    assert "double" in actions and any(a.startswith("G ") or a.startswith("D ") for a in actions)
    genotype = json.loads((outdir / "genotype.json").read_text())
    best = search.candidate(state["best"])
    assert genotype["search_space"] == "dggan" and genotype["resolution"] == 16
    assert genotype["stages"] == best["genotype"]["stages"] and best["fid"] == min(
        r["fid"] for r in state["candidates"] if r["resolution"] == 16)
    route = genotype["arch_parameters"]["route"]
    assert route[0]["action"] is None and route[-1]["id"] == best["id"]
    final = torch.load(outdir / "final.pt", weights_only=True)
    assert state["final"]["id"] == best["id"] and math.isfinite(state["final"]["fid"])
    # the grown G and D are what train-conventional builds from genotype.json
    from stylenas.conventional import build_networks, load_genotype

    G, D = build_networks(load_genotype(outdir / "genotype.json"), resolution=16)
    G.load_state_dict(final["G"]), D.load_state_dict(final["D"])
    assert G(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    assert len(list((outdir / "samples").glob("step*.png"))) == state["step"] + 1
    for name in ("fig3.png", "simulation.json", "candidates.csv", "samples/final.png", "fid-ref-8.npz",
                 "fid-ref-16.npz"):
        assert (outdir / name).stat().st_size > 0, name
    live = {int(p.stem[1:]) for p in (outdir / "candidates").glob("c*.pt")}
    assert live == set(state["parents"]) | set(state["baselines"].values()) | {state["best"]}


@pytest.mark.slow
def test_resume_after_a_kill_does_not_retrain_finished_candidates(tmp_path, uninterrupted, proxy_scorer):
    _, reference = uninterrupted
    outdir = tmp_path / "run"
    with pytest.raises(SearchInterrupted):  # killed right after the 4th trained candidate's weights
        run_dggan(DGGANConfig(**TINY), outdir, toy_data(), proxy_scorer, log=lambda line: None, stop_after=4)
    with pytest.raises(ValueError, match="--resume"):
        run_dggan(DGGANConfig(**TINY), outdir, toy_data(), proxy_scorer, log=lambda line: None)
    saved = (outdir / dggan_run.STATE_FILE).read_text()
    (outdir / dggan_run.STATE_FILE).unlink()  # weights without a state: never taken for a new search's
    with pytest.raises(ValueError, match="candidate weights of another search"):
        run_dggan(DGGANConfig(**TINY), outdir, toy_data(), proxy_scorer, log=lambda line: None)
    (outdir / dggan_run.STATE_FILE).write_text(saved)
    with pytest.raises(ValueError, match="top_k"):
        run_dggan(DGGANConfig(**{**TINY, "top_k": 3}), outdir, toy_data(), proxy_scorer, log=lambda line: None,
                  resume=True)
    resumed = run_dggan(DGGANConfig(**TINY), outdir, toy_data(), proxy_scorer, log=lambda line: None, resume=True)
    assert resumed.trained == len(reference.state["candidates"]) - 4
    keys = ("id", "parent", "action", "genotype", "fid", "kept")
    assert [{k: r[k] for k in keys} for r in resumed.state["candidates"]] == [
        {k: r[k] for k in keys} for r in reference.state["candidates"]]
    assert resumed.state["final"] == reference.state["final"]
    lines = (outdir / "log.jsonl").read_text().splitlines()
    assert len(lines) == len(reference.state["candidates"])


@pytest.mark.slow
def test_a_finished_search_continues_with_a_larger_budget(tmp_path, uninterrupted, proxy_scorer):
    _, reference = uninterrupted
    outdir = tmp_path / "run"
    short = run_dggan(DGGANConfig(**TINY, max_steps=1), outdir, toy_data(), proxy_scorer, log=lambda line: None)
    assert short.state["step"] == 1 and short.state["final"] is not None
    continued = run_dggan(DGGANConfig(**TINY), outdir, toy_data(), proxy_scorer, log=lambda line: None, resume=True)
    keys = ("id", "parent", "action", "genotype", "fid", "kept")
    assert [{k: r[k] for k in keys} for r in continued.state["candidates"]] == [
        {k: r[k] for k in keys} for r in reference.state["candidates"]]
    assert continued.state["final"] == reference.state["final"]
    assert len((outdir / "log.jsonl").read_text().splitlines()) == len(reference.state["candidates"])


SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(1)
from stylenas.train.distributed import init_distributed
from stylenas.conventional.searchers import dggan
from stylenas.conventional.rewards import reward_network
sys.path.insert(0, sys.argv[3])
from test_dggan import TINY, toy_data
dist = init_distributed("cpu")
scorer = dggan.FIDScorer(reward_network("proxy"), num=16, batch=16)
search = dggan.run_dggan(dggan.DGGANConfig(**TINY), sys.argv[1], toy_data(), scorer, dist=dist, log=lambda line: None)
if dist.is_main:
    json.dump(search.state, open(sys.argv[2], "w"))
dist.close()
"""


@pytest.mark.slow
def test_two_processes_give_the_one_process_search(tmp_path, uninterrupted):
    _, reference = uninterrupted
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    out = tmp_path / "state.json"
    launch(script, tmp_path / "run", out, Path(__file__).parent, processes=2)
    state = json.loads(out.read_text())
    keys = ("id", "parent", "action", "genotype", "kept", "g_params", "d_params")
    assert [{k: r[k] for k in keys} for r in state["candidates"]] == [
        {k: r[k] for k in keys} for r in reference.state["candidates"]]
    for two, one in zip(state["candidates"], reference.state["candidates"]):
        assert two["fid"] == pytest.approx(one["fid"], rel=1e-9)
    assert state["best"] == reference.state["best"]
    assert state["final"]["fid"] == pytest.approx(reference.state["final"]["fid"], rel=1e-9)


def test_budget_and_bad_input(tmp_path):
    from stylenas.conventional import build_networks
    from stylenas.conventional.genotypes import ConventionalGenotype
    from stylenas.search.genotype import GenotypeError

    config = DGGANConfig(final_resolution=32, latent_dim=4, channels=(4, 4, 4), top_k=2, p=0.5, kernels=(3,),
                         filters=(2,), max_grown=2, max_steps=2, seed=1)
    search = ToySearch(config, tmp_path / "toy", toy_data(4, 32), ToyScorer(), log=lambda line: None)
    for step in range(3):
        search.run_step(step)
    assert "budget of 2 growing steps" in search.stop_reason()
    with pytest.raises(ValueError, match="already holds"):
        ToySearch(config, tmp_path / "toy", toy_data(4, 32), ToyScorer(), log=lambda line: None)
    data = toy_data(4, 16)
    for bad, message in ((dict(final_resolution=32), "16px"), (dict(final_resolution=24), "power of two"),
                         (dict(final_resolution=16, p=0.0), "p must be"),
                         (dict(final_resolution=16, channels=(4,)), "one width per stage")):
        with pytest.raises(ValueError, match=message):
            run_dggan(DGGANConfig(**bad), tmp_path / "bad", data, ToyScorer(), log=lambda line: None)
    assert not (tmp_path / "bad").exists()
    record = {"format": "stylenas-genotype", "version": 2, "search_space": "dggan", "resolution": 16,
              "latent_dim": 4, "channels": [4, 4], "stages": [{"g": [], "d": []}, {"g": [[4, 8]], "d": []}]}
    with pytest.raises(GenotypeError, match="kernel"):
        ConventionalGenotype.from_dict(record)
    record["stages"][1]["g"] = [[3, 8]]
    genotype = ConventionalGenotype.from_dict(record)
    with pytest.raises(ValueError, match="grown to 16px"):
        build_networks(genotype, resolution=32)
    G, D = build_networks(genotype, resolution=16)
    assert G(torch.randn(2, 4)).shape == (2, 3, 16, 16) and D(torch.randn(2, 3, 16, 16)).shape == (2, 1)


@pytest.mark.slow
def test_cli_search_then_retrain(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from stylenas.conventional.commands import search_conventional_command, train_conventional_command
    from stylenas.datasets import make_demo_data

    make_demo_data(tmp_path / "demo.lmdb", [16, 24], 24, image_format="png")
    monkeypatch.setattr(dggan_run, "FID_BATCH", 2)  # FIDs also computed while a step's children train
    runner = CliRunner()
    base = ["--method", "dggan", "--data", str(tmp_path / "demo.lmdb"), "--preset", "tiny", "--proxy",
            "--device", "cpu"]
    result = runner.invoke(search_conventional_command, base + ["--resolution", "24", "--outdir", str(tmp_path / "x")])
    assert result.exit_code == 1 and "power of two" in result.output and not (tmp_path / "x").exists()
    result = runner.invoke(search_conventional_command, base + [
        "--resolution", "16", "--outdir", str(tmp_path / "search"), "--iters", "2", "--max-steps", "2",
        "--final-iters", "2", "--top-k", "1", "--p", "1", "--max-grown", "1"])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "search" / "log.jsonl").read_text().splitlines()]
    # p = 1, K = 1: step 1 grows the base by all 5 tiny actions, step 2 the one kept child by all its allowed ones
    assert [r["step"] for r in log[:6]] == [0, 1, 1, 1, 1, 1]
    assert all(math.isfinite(r["proxy_fid"]) and r["proxy_fid"] > 0 for r in log)
    (kept,) = [r["id"] for r in log if r["step"] == 1 and r["kept"]]
    state = json.loads((tmp_path / "search" / "dggan-state.json").read_text())
    allowed = [a for a in action_space((3,), (4, 8))
               if dggan.allowed(state["candidates"][kept]["genotype"], a, 16, 1)]
    assert [(r["parent"], r["action"]) for r in log if r["step"] == 2] == [(kept, a.name) for a in allowed]
    result = runner.invoke(train_conventional_command, ["--genotype", str(tmp_path / "search" / "genotype.json"),
                                                        "--data", str(tmp_path / "demo.lmdb"), "--resolution", "16",
                                                        "--outdir", str(tmp_path / "train"), "--preset", "tiny",
                                                        "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "train" / "checkpoint.pt", weights_only=True)
    assert state["config"]["loss"] == "wgan-gp" and state["genotype"]["search_space"] == "dggan"
    assert state["config"]["latent_dim"] == 16
    # continued: train-conventional starts from the searched weights (lr 0: they stay as they were)
    train = ["--genotype", str(tmp_path / "search" / "genotype.json"), "--data", str(tmp_path / "demo.lmdb"),
             "--resolution", "16", "--preset", "tiny", "--steps", "1", "--device", "cpu", "--lr", "0"]
    result = runner.invoke(train_conventional_command, train + ["--outdir", str(tmp_path / "bad"), "--init",
                                                                str(tmp_path / "search" / "genotype.json")])
    assert result.exit_code == 1 and "--init" in result.output and "Traceback" not in result.output
    result = runner.invoke(train_conventional_command, train + ["--outdir", str(tmp_path / "continued"), "--init",
                                                                str(tmp_path / "search" / "final.pt")])
    assert result.exit_code == 0, result.output
    final = torch.load(tmp_path / "search" / "final.pt", weights_only=True)
    state = torch.load(tmp_path / "continued" / "checkpoint.pt", weights_only=True)
    for net in ("G", "D"):
        assert all(torch.equal(state[net][k], v) for k, v in final[net].items())


@pytest.mark.slow
def test_cli_search_with_an_inception_weights_file(tmp_path):
    """The real-Inception path (--inception, random weights in pytorch-fid's file format): scores
    logged as FID, the weights' digest in the state, and a --resume with other scorer settings
    refused with one line."""
    from click.testing import CliRunner

    from stylenas.conventional.commands import search_conventional_command
    from stylenas.datasets import make_demo_data
    from stylenas.conventional.sources import unsourced
    from stylenas.metrics import InceptionV3FID
    from helpers import write_weights

    make_demo_data(tmp_path / "demo.lmdb", [16], 8, image_format="png")
    weights = write_weights(tmp_path / "inception")
    args = ["--method", "dggan", "--data", str(tmp_path / "demo.lmdb"), "--preset", "tiny", "--device", "cpu",
            "--outdir", str(tmp_path / "search"), "--iters", "1", "--max-steps", "1", "--final-iters", "0",
            "--top-k", "1", "--p", "0.3", "--max-grown", "1", "--inception", str(weights)]
    result = CliRunner().invoke(search_conventional_command, args + ["--fid-num", "2"])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "search" / "log.jsonl").read_text().splitlines()]
    assert log and all(math.isfinite(r["fid"]) and "proxy_fid" not in r for r in log)
    state = json.loads((tmp_path / "search" / dggan_run.STATE_FILE).read_text())
    assert state["settings"]["scorer"] == "fid" and state["settings"]["scorer_samples"] == 2
    assert state["settings"]["inception_sha256"] == dggan_candidates.weights_sha256(InceptionV3FID(weights=weights))
    record = json.loads((tmp_path / "search" / "config.json").read_text())  # every setting with its source
    assert record["scorer_samples"] == {"value": 2, "source": record["scorer_samples"]["source"]}
    assert record["scorer_samples"]["source"].startswith("command line: --fid-num")
    assert record["top_k"]["value"] == 1 and record["rank_by"]["value"] == "fid_norm"
    assert not unsourced(record) and record["p"]["source"].startswith("command line: --p")
    result = CliRunner().invoke(search_conventional_command, args + ["--fid-num", "3", "--resume"])
    assert result.exit_code == 1 and "scorer_samples" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_bench_reports_the_cost_of_a_child():
    from stylenas.conventional.bench import dggan_search

    row = dggan_search("tiny", torch.device("cpu"), 1, (1, 4))
    assert row["seconds_per_child_iteration"] > 0 and row["seconds_per_scored_sample"] > 0
    assert row["seconds_per_child"] == pytest.approx(row["child_iters"] * row["seconds_per_child_iteration"]
                                                     + row["score_samples"] * row["seconds_per_scored_sample"])
    assert row["children_per_hour"]["4"] == pytest.approx(4 * row["children_per_hour"]["1"])
