"""stylenas compare --family conventional: the measured budget unit on a hand-counted loop, the
samplers of every space, a tiny compare with a searcher, random search in its space and a published
genotype, and one with every searcher, random search in each one's space and every published genotype."""
import csv
import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from stylenas.compare import BUDGETS
from stylenas.compare.counting import count_images
from stylenas.compare.random_search import sample_alphagan_cells, sample_autogan
from helpers import quiet, write_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_count_images_counts_outermost_g_and_d_calls():
    from stylenas.metrics import InceptionV3FID

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)), nn.Conv2d(3, 3, 1))

        def forward(self, z):
            return self.body(z)

    g, d = G(), nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(1))
    controller = nn.LSTMCell(4, 4)
    with count_images() as counter:
        fake = g(torch.randn(5, 4))  # 5 through G (its inner conv, also image -> image, is not outermost)
        d(fake)  # 5 through D
        d(torch.rand(7, 3, 8, 8))  # 7 reals through D
        controller(torch.randn(2, 4))  # not an image network
    assert (counter.generator, counter.discriminator) == (5, 12) and counter.kimg == pytest.approx(0.017)
    class SmallInception(InceptionV3FID):  # the class is what is excluded; the real one is slow to build
        def __init__(self):
            nn.Module.__init__(self)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x.float()).mean((2, 3))

    with count_images() as counter:
        SmallInception()(torch.rand(2, 3, 16, 16))  # a reward network, not the search's D
    d(fake)  # outside the block: not counted
    assert counter.kimg == 0


def test_conventional_samplers_are_valid_seeded_and_uniform():
    rng = np.random.default_rng(0)
    codes = [sample_autogan(rng, 32) for _ in range(400)]
    ups = Counter(cell["up"] for g in codes for cell in g.body["cells"])
    assert set(ups) == {"bilinear", "nearest", "deconv"} and all(abs(n / 1200 - 1 / 3) < 0.05 for n in ups.values())
    skips = Counter(tuple(g.body["cells"][2]["skip_in"]) for g in codes)  # 4 choices of cell 3's skips
    assert len(skips) == 4 and all(abs(n / 400 - 1 / 4) < 0.07 for n in skips.values())
    cells = [sample_alphagan_cells(rng, 32) for _ in range(300)]
    for g in cells[:10]:
        g.validate()
    normal = Counter(op for g in cells for cell in g.body["cells"] for op in cell["normal"])
    assert len(normal) == 6 and all(abs(n / 2700 - 1 / 6) < 0.03 for n in normal.values())
    assert [len(cell["skip"]) for cell in cells[0].body["cells"]] == [0, 1, 2]
    assert sample_autogan(np.random.default_rng(5), 32).body == sample_autogan(np.random.default_rng(5), 32).body


@pytest.mark.slow
def test_tiny_conventional_compare(tmp_path):
    from stylenas.compare.run import compare
    from stylenas.datasets.demo import make_demo_data

    data = tmp_path / "demo.lmdb"
    make_demo_data(data, sizes=[16], num=32, progress=False)
    budget = replace(BUDGETS["tiny"], name="test", candidate_fid_num=6, eval_num=6, eval_num_ref=6)
    out = tmp_path / "cmp"
    compare(data, out, methods=["autogan", "random"], seeds=[0], budget=budget, family="conventional", device="cpu",
            inception=write_weights(tmp_path / "w"), log=quiet, published=["autogan_a"])
    rows = {r["method"]: r for r in json.loads((out / "leaderboard.json").read_text())}
    assert set(rows) == {"autogan", "random-autogan", "autogan_a"}
    protocol = (out / "leaderboard.md").read_text().split("## Methods")[0]  # this family's recipe, not StyleGAN2's
    assert "`stylenas train-conventional --loss hinge --preset tiny --steps 4`" in protocol
    assert "stylenas train --cfg" not in protocol and "2 G steps" in protocol
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["autogan"]["search_kimg"] > 0 and rows["autogan_a"]["search_kimg"] == 0
    genotype = json.loads((out / "jobs" / "autogan-s0" / "search" / "genotype.json").read_text())
    assert rows["autogan"]["search_score"] == -genotype["source"]["proxy_is"]  # its reward, for Kendall's tau
    # random search within its budget, AutoGAN's measured cost with the same seed, scored by AutoGAN's
    # reward (the Inception Score, negated)
    assert 0 < rows["random-autogan"]["search_kimg"] <= rows["autogan"]["search_kimg"] + 1e-9
    assert rows["random-autogan"]["search_score_name"].startswith("-IS")
    candidates = [json.loads(line) for line in
                  (out / "jobs" / "random-autogan-s0" / "search" / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == rows["random-autogan"]["candidates"] >= 1
    # it stopped before the next candidate would pass AutoGAN's cost
    assert rows["random-autogan"]["search_kimg"] + candidates[-1]["kimg"] > rows["autogan"]["search_kimg"]
    # one recipe: every row retrained with the hinge loss (DEGAS rows too), the same steps and batches
    recipes = []
    for job in ("autogan-s0", "random-autogan-s0", "published-autogan_a-s0"):
        config = torch.load(out / "jobs" / job / "retrain" / "checkpoint.pt", weights_only=True)["config"]
        recipes.append({k: config[k] for k in ("loss", "steps", "g_batch", "d_batch", "seed", "resolution")})
    assert recipes[0] == recipes[1] == recipes[2] and recipes[0]["loss"] == "hinge" and recipes[0]["resolution"] == 16


@pytest.mark.parametrize("space", ["degas", "agan", "dggan"])
def test_degas_agan_dggan_samplers_give_networks_that_run(space):
    from stylenas.compare.random_search import sample_agan, sample_degas, sample_dggan
    from stylenas.conventional import build_networks

    sample = {"degas": sample_degas, "agan": sample_agan, "dggan": lambda rng, res: sample_dggan(rng, res, "tiny")}
    rng = np.random.default_rng(2)
    drawn = [sample[space](rng, 16) for _ in range(3)]
    assert len({json.dumps(g.body, sort_keys=True) for g in drawn}) == 3  # the draws differ
    for genotype in drawn:
        genotype.validate()
        G, _ = build_networks(genotype, resolution=16, gf_dim=8, df_dim=8, latent_dim=16)
        z = torch.randn(2, G.latent_dim if hasattr(G, "latent_dim") else 16)
        assert G(z).shape == (2, 3, 16, 16)
    again = sample[space](np.random.default_rng(2), 16)
    assert again.body == drawn[0].body  # seeded


def test_degas_sampler_is_uniform_over_derivable_inputs():
    from stylenas.compare.random_search import sample_degas
    from stylenas.conventional.ops import DEGAS_UP_OPS

    rng = np.random.default_rng(0)
    # up3 has a direct edge and residual edges from up1 and up2: 4 + 4*4 + 4*4 = 36 derivable input sets
    # with 4 up ops; direct alone has probability 4/36, each residual source 16/36
    picks = Counter()
    for _ in range(1800):
        body = sample_degas(rng, 16).body
        up3 = next(n for n in body["nodes"] if n["name"] == "up3")
        picks[tuple(i["from"] for i in up3["inputs"] if i["residual"])] += 1
    assert len(DEGAS_UP_OPS) == 4
    assert abs(picks[()] / 1800 - 4 / 36) < 0.03
    assert abs(picks[("up1",)] / 1800 - 16 / 36) < 0.04 and abs(picks[("up2",)] / 1800 - 16 / 36) < 0.04


SEARCHERS = ("alphagan", "degas", "autogan", "agan", "dggan")


@pytest.mark.slow
def test_tiny_compare_with_every_searcher_random_search_and_every_published_genotype(tmp_path):
    """The issue's "done when": every conventional searcher, random search in each one's space and the
    five published genotypes, one seed, write the leaderboard files with every row finished. Scored on
    the proxy features (`--proxy`, as `make demo` without the weights file) to keep it CI-sized; the
    tiny preset's searchers score with the proxy anyway."""
    from stylenas.compare.run import compare
    from stylenas.conventional import PUBLISHED
    from stylenas.datasets.demo import make_demo_data

    data = tmp_path / "demo.lmdb"
    make_demo_data(data, sizes=[16], num=32, progress=False)
    budget = replace(BUDGETS["tiny"], name="test", candidate_fid_num=6, eval_num=6, eval_num_ref=6)
    out = tmp_path / "cmp"
    compare(data, out, methods=[*SEARCHERS, "random"], seeds=[0], budget=budget, family="conventional", device="cpu",
            log=quiet, proxy=True)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((out / "leaderboard.json").read_text())
    board = {r["method"]: r for r in rows}
    expected = {*SEARCHERS, *(f"random-{m}" for m in SEARCHERS), *PUBLISHED}
    assert len(rows) == len(expected) == 15 and set(board) == expected
    assert all(r["status"] == "ok" and r["seed"] == 0 and r["features"] == "proxy" for r in rows), \
        [(r["method"], r.get("error")) for r in rows if r["status"] != "ok"]
    with open(out / "leaderboard.csv") as file:
        assert {r["method"] for r in csv.DictReader(file)} == expected
    markdown = (out / "leaderboard.md").read_text()
    assert all(f"| {method} |" in markdown for method in expected)
    for row in rows:
        assert row["fid"] > 0 and 0 <= row["precision"] <= 1 and 0 <= row["coverage"] <= 1 and row["params"] > 0
    spaces = {"alphagan": "alphagan_conv", "degas": "degas", "autogan": "autogan", "agan": "agan", "dggan": "dggan"}
    for method in SEARCHERS:
        searched, drawn = board[method], board[f"random-{method}"]
        assert searched["search_kimg"] > 0 and searched["candidates"] == 1
        # random search in the searcher's own space, at the searcher's measured cost: it stopped before
        # the next candidate would pass it
        for row in (searched, drawn):
            assert json.loads(open(row["genotype"]).read())["search_space"] == spaces[method], row["job"]
        candidates = [json.loads(line) for line in
                      (out / "jobs" / f"random-{method}-s0" / "search" / "candidates.jsonl").read_text().splitlines()]
        assert drawn["candidates"] == len(candidates) >= 1
        assert drawn["search_kimg"] == pytest.approx(sum(c["kimg"] for c in candidates))
        assert 0 < drawn["search_kimg"] <= searched["search_kimg"] + 1e-9, method
        assert drawn["search_kimg"] + candidates[-1]["kimg"] > searched["search_kimg"], method
        assert drawn["search_score"] == min(c["score"] for c in candidates)
        assert drawn["search_score_name"].startswith("-IS" if method in ("autogan", "agan") else "FID")
    # the searchers' own scores of what they returned (for Kendall's tau); DGGAN keeps none
    assert [board[m]["search_score"] is not None for m in SEARCHERS] == [True, True, True, True, False]
    for name in PUBLISHED:
        row = board[name]
        assert row["search_kimg"] == 0 and row["candidates"] == 0 and row["search_score"] is None, name
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert all(summary[m]["rank_vs_random"] in (1, 2) for m in SEARCHERS)
    # one recipe for all 15 rows: the same loss, steps, batches and seed at the data's resolution
    configs = [torch.load(out / "jobs" / r["job"] / "retrain" / "checkpoint.pt", weights_only=True)["config"]
               for r in rows]
    recipes = {json.dumps({k: c[k] for k in ("loss", "steps", "g_batch", "d_batch", "seed", "resolution")})
               for c in configs}
    assert len(recipes) == 1 and '"loss": "hinge"' in recipes.pop()


@pytest.mark.parametrize("features", ["proxy", "inception"])
def test_compare_proxy_hands_proxy_to_the_searchers_that_score_with_inception(features, tmp_path, monkeypatch):
    """Under --proxy there is no weights file: AutoGAN, AGAN and DGGAN (which score candidates with the
    Inception) get their own --proxy at any budget; alphaGAN and DEGAS, which use no Inception, do not."""
    from types import SimpleNamespace

    from stylenas.compare import families

    given = {}

    def command_line(command, args, what):
        args = [str(a) for a in args]
        given[args[args.index("--method") + 1]] = args
        folder = tmp_path / args[args.index("--method") + 1]
        folder.mkdir()
        (folder / "genotype.json").write_text(json.dumps({"source": {}}))

    monkeypatch.setattr(families, "run_command", command_line)
    ctx = SimpleNamespace(data="x.lmdb", resolution=32, device="cpu", budget=BUDGETS["paper"], features=features,
                          inception_path=None if features == "proxy" else "w.pth")
    family = families.ConventionalFamily(ctx)
    for method in SEARCHERS:
        family.search(method, 0, tmp_path / method)
    proxied = {method for method, args in given.items() if "--proxy" in args}
    assert proxied == ({"autogan", "agan", "dggan"} if features == "proxy" else set())
    assert all(("--inception" in args) == (features == "inception") for args in given.values())
