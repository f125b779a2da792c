"""alphaGAN on AutoGAN cells: the switches for the authors' code where it differs from Algorithm 1 (n_critic
in the weight part, the weights' Adam betas, batches as passes over each half), each against its source,
and the config.json of a search."""
import json

import pytest
import torch

from stylenas.conventional.searchers import alphagan
from stylenas.conventional.searchers.alphagan import AlphaGANMethod, CriticSearcher, PassStream
from stylenas.conventional.searchers.differentiable import SearchConfig, run_search
from stylenas.conventional.commands import retrain_sources
from stylenas.conventional.sources import unsourced
from stylenas.conventional.spaces.alphagan_cells import AlphaGANSuperGenerator
from stylenas.conventional.spaces.discriminators import Discriminator
from stylenas.conventional.train import TrainConfig, settings_of
from stylenas.conventional.genotypes import load_genotype
from stylenas.search.alphagan import PRESETS, AlphaGANSearcher
from helpers import images, quiet

pytestmark = pytest.mark.usefixtures("one_thread")

# yuesongtian/AlphaGAN, transcribed independently of the code under test: cfg_search.py lines 41-42
# (--beta1 0.0 --beta2 0.9), line 46 (--n_critic 5); appendix .1.1.1 of the paper: (0.0, 0.999).
AUTHORS = {"n_critic": 5, "betas": (0.0, 0.9), "batches": "passes"}
PAPER = {"n_critic": 1, "betas": (0.0, 0.999)}


def test_passes_cover_each_half_once_without_replacement():
    data = [torch.full((3, 2, 2), i, dtype=torch.uint8) for i in range(30)]
    half = torch.arange(3, 27)  # 24 images, batch 4: 6 batches a pass
    stream = PassStream(data, half, 4, seed=1, stream=0, device="cpu")
    passes = [[stream.positions(k).tolist() for k in range(6 * e, 6 * e + 6)] for e in range(3)]
    for batches in passes:
        seen = [i for b in batches for i in b]
        assert sorted(seen) == half.tolist()  # every image of the half exactly once
    assert passes[0] != passes[1]  # a fresh permutation each pass
    first = next(stream)
    assert first.shape == (4, 3, 2, 2) and (first[:, 0, 0, 0] + 1) * 127.5 == pytest.approx(
        torch.tensor(passes[0][0], dtype=torch.float))
    resumed = PassStream(data, half, 4, seed=1, stream=0, device="cpu", step=7)
    assert resumed.positions(7).tolist() == passes[1][1]
    odd = PassStream(data, torch.arange(10), 4, seed=0, stream=1, device="cpu")  # 2 batches, 2 images wait
    assert len(set(odd.positions(0).tolist() + odd.positions(1).tolist())) == 8


def test_the_l_preset_is_one_pass_over_the_training_half():
    """Section 5.1: alphaGAN (l) 'passing through every epoch', T = R = 390 = 25000 // 64."""
    data = images(n=2 * 200, size=8)
    halves = (torch.arange(0, 200), torch.arange(200, 400))
    method = AlphaGANMethod("l", 8, halves, data, 0, "cpu")
    assert method.preset.T == method.preset.R == 200 // 64 == method.train.per_pass
    seen = [i for k in range(method.preset.T) for i in method.train.positions(k).tolist()]
    assert len(seen) == len(set(seen)) == method.preset.T * 64


def tiny_pair(seed=0):
    torch.manual_seed(seed)
    return AlphaGANSuperGenerator(16, 4, 4), Discriminator(4)


def test_n_critic_steps_g_as_the_authors_train_gan_parameter():
    """functions.py line 513: a G step when the global D-step count inner_step % n_critic == 0."""
    G, D = tiny_pair()
    preset = PRESETS["tiny"].__class__(T=7, R=1, S=1, iterations=1, batch=2)
    searcher = CriticSearcher(G, D, lambda n: torch.randn(n, 4), preset, n_critic=5)
    real = iter(lambda: torch.rand(2, 3, 16, 16) * 2 - 1, None)
    searcher.weight_part(real)
    searcher.weight_part(real)
    expected = sum(1 for inner_step in range(14) if inner_step % 5 == 0)  # 0, 5, 10
    step_of = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert step_of(searcher.g_opt) == expected == 3 and step_of(searcher.d_opt) == 14
    assert searcher.state_dict()["d_steps"] == 14


def test_n_critic_1_is_algorithm_1():
    preset = PRESETS["tiny"].__class__(T=3, R=1, S=1, iterations=1, batch=2)
    results = []
    for cls, kwargs in ((AlphaGANSearcher, {}), (CriticSearcher, {"n_critic": 1})):
        G, D = tiny_pair(3)
        searcher = cls(G, D, lambda n: torch.randn(n, 4), preset, **kwargs)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(1)
        searcher.weight_part(iter(lambda: torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1, None))
        results.append([p.detach().clone() for p in (*G.parameters(), *D.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("options,expected", [({}, AUTHORS), (PAPER, {**AUTHORS, **PAPER})])
def test_defaults_are_the_authors_code_and_options_give_the_paper(options, expected):
    data = images(n=16, size=16)
    method = AlphaGANMethod("tiny", 16, (torch.arange(8), torch.arange(8, 16)), data, 0, "cpu", options=options)
    for opt in (method.searcher.g_opt, method.searcher.d_opt):
        assert opt.param_groups[0]["betas"] == expected["betas"]
    assert method.searcher.arch_opt.param_groups[0]["betas"] == (0.5, 0.999)  # appendix .1.1.1, architect.py
    assert method.searcher.n_critic == expected["n_critic"] and isinstance(method.train, PassStream)


def test_a_search_records_every_setting_with_its_source(tmp_path):
    out = tmp_path / "search"
    config = SearchConfig("alphagan", "mem", str(out), preset="tiny", iters=1, device="cpu", sample_every=0,
                          options={"n_critic": 1, "betas": (0.0, 0.999), "batches": "uniform"})
    run_search(config, dataset=images(n=16, size=16), log=quiet)
    record = json.loads((out / "config.json").read_text())
    assert not unsourced(record) and set(record) == set(alphagan.SOURCES)
    assert record["n_critic"]["value"] == 1 and record["n_critic"]["source"].startswith("command line: --n-critic")
    assert record["betas"]["value"] == [0.0, 0.999] and record["batches"]["value"] == "uniform"
    assert record["iterations"]["value"] == 1 and record["T"]["value"] == PRESETS["tiny"].T
    state = torch.load(out / "search-state.pt", weights_only=True)
    assert state["settings"]["options"] == {"n_critic": 1, "betas": (0.0, 0.999), "batches": "uniform"}
    assert state["method"]["searcher"]["d_steps"] == PRESETS["tiny"].T  # what the search ran
    assert record["S"]["source"] == alphagan.SOURCES["S"].by_preset["tiny"]


def test_retraining_an_alphagan_genotype_keeps_the_rate_constant(tmp_path):
    """README lines 41-49: train_geno_gan.py without --lr_decay (line 157: no LinearLrDecay)."""
    genotype = load_genotype("alphagan_s")
    settings = settings_of(TrainConfig("alphagan_s", "mem", str(tmp_path)), 100, 32, genotype)
    assert settings["lr_schedule"] == "constant" and (settings["gf_dim"], settings["df_dim"]) == (256, 128)
    assert "without --lr_decay" in retrain_sources(genotype.search_space)["lr_schedule"].source
    stl = settings_of(TrainConfig("alphagan_s", "mem", str(tmp_path)), 100, 48, genotype)
    assert stl["betas"] == [0.5, 0.9] and stl["steps"] == 80000  # the README's STL-10 command


def test_every_conventional_table_cites_a_source_and_a_restoring_switch():
    from stylenas import docs_tables
    from stylenas.conventional.searchers import agan, autogan_sources

    tables = [autogan_sources.SOURCES, autogan_sources.RETRAIN_SOURCES, agan.SOURCES, agan.RETRAIN_SOURCES, alphagan.SOURCES,
              alphagan.RETRAIN_SOURCES]
    for table in tables:
        for name, entry in table.items():
            assert entry.source.split(":")[0] in ("paper", "authors' code", "StyleNAS choice"), name
            assert bool(entry.deviation) == bool(entry.restore), f"{name}: a deviation needs its restoring switch"
    for name in ("autogan-search", "agan-train", "alphagan-conv-search"):
        assert name in docs_tables.TABLES
    assert "--n-critic 1" in docs_tables.generated("alphagan-conv-search")
