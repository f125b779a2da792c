"""stylenas compare: the budget unit counted against the searcher's real forward passes, the random
sampler's uniformity, the random search's budget and resume, the statistics against hand values, and
a tiny compare end to end (leaderboard files and keys, a failing job recorded while the others go on,
a resume that reruns nothing finished, two torchrun processes giving the leaderboard of one)."""
import csv
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stylenas.compare import BUDGETS, random_search, sample_stylegan2
from stylenas.compare.budgets import alphagan_iteration_images
from stylenas.compare.report import kendall_tau, summarise
from stylenas.nn.layers import NORMAL_OPS, UP_OPS
from stylenas.nn.networks import synthesis_layout
from helpers import launch, quiet, write_weights

pytestmark = pytest.mark.usefixtures("one_thread")

KEYS = ("method", "seed", "fid", "is", "kid", "precision", "recall", "density", "coverage", "params", "search_kimg",
        "search_seconds")
# the tiny preset with fewer images still: each Inception image costs ~0.2 s on a shared CPU
TEST_BUDGET = replace(BUDGETS["tiny"], name="test", search_iters=1, candidate_kimg=0.016, candidate_fid_num=6,
                      retrain_kimg=0.016, eval_num=6, eval_num_ref=6)


# ------------------------------------------------------------------ budget unit, sampler, random search

def test_alphagan_iteration_images_count_the_real_forward_passes():
    """One searcher iteration with counting hooks on G and D (their copies G-bar and D-bar inherit
    the hooks): the images that pass through G or D equal the budget formula."""
    from stylenas.nn.networks import Discriminator
    from stylenas.search import PRESETS, AlphaGANSearcher, SuperGenerator

    preset = replace(PRESETS["tiny"], batch=2)
    G = SuperGenerator(8, z_dim=8, w_dim=8, space="micro", dynamic_w=True, channel_base=64, channel_max=8)
    D = Discriminator(8, channel_base=64, channel_max=8)
    seen = []
    for net in (G, D):
        net.register_forward_hook(lambda module, inputs, output: seen.append(len(output)))
    searcher = AlphaGANSearcher(G, D, lambda n: torch.randn(n, 8), preset)
    reals = iter(lambda: torch.rand(2, 3, 8, 8) * 2 - 1, None)
    searcher.iteration(reals, reals)
    assert sum(seen) == alphagan_iteration_images(preset)


def test_random_stylegan2_genotypes_are_valid_and_uniform():
    rng = np.random.default_rng(0)
    layout = synthesis_layout(16)
    channels = {"channel_base": 1024, "channel_max": 32, "channel_mult": 1.0}
    macro = [sample_stylegan2(rng, 16, "macro+dynamic_w", channels) for _ in range(600)]
    for g in macro[:20]:
        g.validate()
    ops = Counter(layer["op"] for g in macro for layer in g.layers if layer["name"].endswith("conv1"))
    ws = Counter(layer["w"] for g in macro for layer in g.layers)
    # every choice drawn, each near its uniform share (4 normal layers x 600 draws, 3 ops)
    assert set(ops) == set(NORMAL_OPS) and all(abs(n / sum(ops.values()) - 1 / 3) < 0.05 for n in ops.values())
    assert set(ws) == set(range(1, 9)) and all(abs(n / sum(ws.values()) - 1 / 8) < 0.03 for n in ws.values())
    micro = sample_stylegan2(np.random.default_rng(1), 16, "micro", channels)
    assert len({layer["op"] for layer in micro.layers if layer.get("op") in NORMAL_OPS}) == 1  # shared choice
    assert len({layer["op"] for layer in micro.layers if layer.get("op") in UP_OPS}) == 1
    assert {layer["w"] for layer in micro.layers} == {8}  # no dynamic W: the last mapping output
    assert [layer["name"] for layer in micro.layers] == [name for name, _ in layout]
    again = sample_stylegan2(np.random.default_rng(0), 16, "macro+dynamic_w", channels)
    assert again.layers == macro[0].layers  # seeded


def test_random_search_stops_at_the_budget_keeps_the_best_and_resumes(tmp_path):
    channels = {"channel_base": 1024, "channel_max": 32, "channel_mult": 1.0}
    scores = iter([5.0, 2.0, 3.0, 1.0, 4.0])
    evaluated = []

    def evaluate(genotype, folder):
        evaluated.append(folder.name)
        if len(evaluated) == 2:
            raise KeyboardInterrupt  # killed in the second candidate
        return next(scores), 0.3

    def sample(rng):
        return sample_stylegan2(rng, 8, "macro+dynamic_w", channels)

    with pytest.raises(KeyboardInterrupt):
        random_search(sample, evaluate, 1.0, seed=3, folder=tmp_path)
    result = random_search(sample, evaluate, 1.0, seed=3, folder=tmp_path)
    # 0.3 kimg per candidate within 1.0: three candidates; the killed one is redone, the first is not
    assert evaluated == ["candidate000", "candidate001", "candidate001", "candidate002"]
    assert [c["score"] for c in result["candidates"]] == [5.0, 2.0, 3.0] and result["best"]["index"] == 1
    assert result["kimg"] == pytest.approx(0.9)
    first = sample(np.random.default_rng(3))  # the stream continued where it was: candidate 0 is draw 0
    assert json.loads(Path(result["candidates"][0]["genotype"]).read_text())["layers"] == first.layers


def test_statistics_against_hand_values():
    def row(method, seed, fid, score=None):
        return {"method": method, "seed": seed, "status": "ok", "fid": fid, "search_score": score, "kind": "x",
                "params": 10, "search_kimg": 1.0}

    results = [row("a", 0, 10.0, 0.1), row("a", 1, 14.0, 0.3), row("a", 2, 12.0, 0.2),
               row("random-a", 0, 11.0), row("random-a", 1, 13.0), row("random-a", 2, 16.0),
               {"method": "b", "seed": 0, "status": "failed", "error": "boom", "kind": "x"}]
    summary = summarise(results)
    assert summary["a"]["fid"] == 12.0 and summary["a"]["fid_std"] == pytest.approx(2.0)  # sample std of 10, 14, 12
    assert summary["a"]["rank_vs_random"] == 1  # mean 12 < 13.33
    assert summary["a"]["wins_vs_random"] == pytest.approx(2 / 3)  # seeds 0 and 2
    assert summary["a"]["kendall_tau"] == pytest.approx(1.0)  # scores and FIDs in the same order
    assert summary["b"]["runs"] == 1 and summary["b"]["failed"] == 1 and summary["b"]["fid"] is None
    assert kendall_tau([(1, 3), (2, 2), (3, 1)])[0] == pytest.approx(-1.0)
    assert kendall_tau([(1, 3)]) == (None, None)


# ------------------------------------------------------------------ a tiny compare end to end

SCRIPT = """
import sys
from dataclasses import replace
from stylenas.compare import BUDGETS
from stylenas.compare.run import compare
budget = replace(BUDGETS["tiny"], **{json})
compare(sys.argv[1], sys.argv[2], methods=["random"], seeds=[0], budget=budget, family="stylegan2", device="cpu",
        inception=sys.argv[3], log=lambda line: print(line, file=sys.stderr))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from stylenas.datasets.demo import make_demo_data

    root = tmp_path_factory.mktemp("compare")
    data = root / "demo.lmdb"
    make_demo_data(data, sizes=[8], num=24, progress=False)
    return {"data": data, "weights": write_weights(root / "weights"), "root": root}


def _run(tiny, outdir, **kwargs):
    from stylenas.compare.run import compare

    return compare(tiny["data"], outdir, methods=["alphagan", "random"], seeds=[0], budget=TEST_BUDGET,
                   family="stylegan2", device="cpu", inception=tiny["weights"], log=quiet, **kwargs)


def _leaderboard(outdir):
    return {r["method"]: r for r in json.loads((outdir / "leaderboard.json").read_text())}


@pytest.mark.slow
def test_tiny_compare_failure_resume_and_two_processes(tiny, monkeypatch):
    from stylenas.compare.families import StyleGAN2Family

    out = tiny["root"] / "one"
    retrain = StyleGAN2Family.retrain

    def failing_for_the_original(self, genotype, seed, folder, kimg=None):
        if "published-stylegan2" in str(folder):
            raise RuntimeError("the retraining broke\nsecond line of the message")
        return retrain(self, genotype, seed, folder, kimg)

    monkeypatch.setattr(StyleGAN2Family, "retrain", failing_for_the_original)
    rows = _run(tiny, out)
    monkeypatch.setattr(StyleGAN2Family, "retrain", retrain)
    board = _leaderboard(out)
    assert set(board) == {"alphagan", "random-alphagan", "stylegan2"} and len(rows) == 3
    for method in ("alphagan", "random-alphagan"):
        assert board[method]["status"] == "ok" and all(board[method][k] is not None for k in KEYS), method
    assert board["alphagan"]["search_kimg"] == pytest.approx(alphagan_iteration_images(
        __import__("stylenas.search", fromlist=["PRESETS"]).PRESETS["tiny"]) / 1000)
    assert board["random-alphagan"]["search_kimg"] <= board["alphagan"]["search_kimg"] + 1e-9
    assert 0 <= board["alphagan"]["precision"] <= 1 and board["alphagan"]["params"] > 0
    # the failing job is recorded with its error; the others went on
    assert board["stylegan2"]["status"] == "failed"
    assert board["stylegan2"]["error"] == "RuntimeError: the retraining broke"  # one line
    assert "Traceback" in (out / "jobs" / "published-stylegan2-s0" / "error.txt").read_text()
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["job"], r["status"]) for r in logged] == [("alphagan-s0", "ok"), ("random-alphagan-s0", "ok"),
                                                         ("published-stylegan2-s0", "failed")]
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "leaderboard.csv") as file:
        assert set(KEYS) <= set(next(csv.reader(file)))
    text = (out / "leaderboard.md").read_text()
    assert "## Protocol" in text and text.index("## Protocol") < text.index("| method |")
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second start without --resume is refused; a resume after a kill mid-job reruns only what
    # did not finish: the failed job, and the retraining of a job whose result was not written
    with pytest.raises(Exception, match="--resume"):
        _run(tiny, out)
    jobs = out / "jobs"
    finished = json.loads((jobs / "random-alphagan-s0" / "result.json").read_text())["finished_at"]
    search_mtime = (jobs / "alphagan-s0" / "search.json").stat().st_mtime_ns
    (jobs / "alphagan-s0" / "result.json").unlink()  # killed after its search, during the retraining
    (jobs / "alphagan-s0" / "retrain.json").unlink()
    _run(tiny, out, resume=True)
    resumed = _leaderboard(out)
    assert json.loads((jobs / "random-alphagan-s0" / "result.json").read_text())["finished_at"] == finished
    assert (jobs / "alphagan-s0" / "search.json").stat().st_mtime_ns == search_mtime  # search not rerun
    assert resumed["stylegan2"]["status"] == "ok"
    assert resumed["alphagan"]["fid"] == pytest.approx(board["alphagan"]["fid"], rel=1e-4)  # same retraining
    # torchrun restarting the group (--max-restarts) starts the first command line again: it resumes
    (jobs / "published-stylegan2-s0" / "result.json").unlink()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    _run(tiny, out)  # no resume=True
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    assert json.loads((jobs / "random-alphagan-s0" / "result.json").read_text())["finished_at"] == finished
    assert (jobs / "published-stylegan2-s0" / "result.json").is_file()

    # two torchrun processes share the jobs (one each: random search in alphaGAN's space, and the
    # published StyleGAN2) and give the rows of one process
    two = tiny["root"] / "two"
    script = tiny["root"] / "compare_script.py"
    fields = {k: getattr(TEST_BUDGET, k) for k in ("name", "search_iters", "candidate_kimg", "candidate_fid_num",
                                                   "retrain_kimg", "eval_num", "eval_num_ref")}
    script.write_text(SCRIPT.replace("{json}", repr(fields)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch(script, tiny["data"], two, tiny["weights"], processes=2, env=env)
    both = _leaderboard(two)
    assert set(both) == {"random-alphagan", "stylegan2"}
    for method, row in both.items():
        assert row["status"] == "ok"
        for key in KEYS[2:-1]:
            assert row[key] == pytest.approx(resumed[method][key], rel=1e-4, abs=1e-9), (method, key)


def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path):
    from click.testing import CliRunner

    from stylenas.compare.commands import compare_command

    def run(*args):
        out = CliRunner().invoke(compare_command, ["--data", str(tiny["data"]), "--outdir", str(tmp_path / "c"),
                                                   "--inception", str(tiny["weights"]), "--family", "stylegan2", *args])
        assert out.exit_code != 0 and "Traceback" not in out.output
        return out.output

    assert "--methods: degas not searchers of the stylegan2 family" in run("--methods", "alphagan,degas")
    assert "--data:" in run("--data", str(tmp_path / "missing.lmdb"))
    assert "--resume: no compare in" in run("--resume")
    assert "--published: autogan_a not published genotypes" in run("--published", "autogan_a")
    assert "--seeds" in run("--seeds", "0,x")
    assert not (tmp_path / "c").exists()

    from stylenas.runs import RunFolder

    with RunFolder(tmp_path / "c"):  # another compare is writing the folder
        assert f"{tmp_path / 'c'}: another run is writing this folder (pid {os.getpid()}: " in run()
        assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock"]  # the refused one wrote nothing


def test_a_signal_stops_the_compare_instead_of_failing_the_job(tiny, tmp_path, monkeypatch):
    import click

    from stylenas.compare import run as compare_run
    from stylenas.compare.families import run_command
    from stylenas.runs import Interrupted, RunCommand

    @click.command(cls=RunCommand)
    def stopped():
        raise Interrupted(15, "stopped after its checkpoint")

    with pytest.raises(Interrupted):  # the inner command's exit status 143 is recognised
        run_command(stopped, [], "retraining")

    def interrupted_job(job, family, ctx, folder):
        raise Interrupted(2, "retraining stopped by a signal")

    monkeypatch.setattr(compare_run, "run_job", interrupted_job)
    with pytest.raises(Interrupted, match="--resume"):
        _run(tiny, tmp_path / "c")
    assert not list((tmp_path / "c").glob("jobs/*/result.json"))  # not recorded as a failure: resumable


def test_stylegan2_published_rows_are_the_original_and_table9_where_the_resolution_fits(tmp_path):
    from types import SimpleNamespace

    from stylenas.compare.families import StyleGAN2Family
    from stylenas.search.genotype import Genotype

    rows = dict(StyleGAN2Family(SimpleNamespace(resolution=128)).published())
    assert list(rows) == ["stylegan2", "alphagan_celeba128"]
    rows["alphagan_celeba128"](tmp_path / "g.json")
    written = Genotype.load(tmp_path / "g.json")
    assert written.resolution == 128 and written.paradigm == "micro+dynamic_w"
    assert list(dict(StyleGAN2Family(SimpleNamespace(resolution=32)).published())) == ["stylegan2"]


def test_each_torchrun_process_runs_its_jobs_on_its_own_gpu(monkeypatch):
    from stylenas.compare.run import process_device

    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert [process_device(d) for d in ("auto", "cuda", "cpu", "cuda:1")] == ["cuda:3", "cuda:3", "cpu", "cuda:1"]
    monkeypatch.delenv("LOCAL_RANK")
    assert process_device("auto") == "auto"


def test_random_search_waits_for_its_searchers_measured_budget(tmp_path):
    import threading

    from stylenas.compare.families import ConventionalFamily
    from stylenas.compare.run import Context, job_list

    jobs = job_list(ConventionalFamily, ["random", "autogan", "agan"], [0, 1], ["autogan_a"])
    kinds = [job.method for job in jobs]
    # every search precedes every random search, which precede the published rows: a waiting random
    # search only waits for a search, which never waits
    assert kinds == ["autogan", "autogan", "agan", "agan", "random", "random", "random", "random", "published",
                     "published"]

    ctx = Context("data.lmdb", 32, "cpu", BUDGETS["tiny"], None, tmp_path, quiet)
    ctx.searchers = ["autogan", "agan"]
    folder = tmp_path / "jobs" / "autogan-s1"

    def finish_the_search():
        folder.mkdir(parents=True)
        (folder / "search.json").write_text(json.dumps({"kimg": 0.625}))

    timer = threading.Timer(0.3, finish_the_search)
    timer.start()
    assert ctx.searcher_kimg("autogan", 1, poll_seconds=0.05) == 0.625  # waited for the other process's job
    timer.join()
    (tmp_path / "jobs" / "agan-s1").mkdir()
    (tmp_path / "jobs" / "agan-s1" / "result.json").write_text(json.dumps({"status": "failed"}))
    assert ctx.searcher_kimg("agan", 1) is None  # its search failed: the preset's budget
    assert ctx.searcher_kimg("dggan", 1) is None  # not in this compare


PROXY_FEATURES_SCRIPT = """
import sys
import torch
from stylenas.compare.evaluate import proxy_network
from stylenas.datasets import LMDBImages
from stylenas.metrics import extract_features
torch.set_num_threads(1)
images = torch.utils.data.Subset(LMDBImages(sys.argv[1]), range(int(sys.argv[2])))
_, features, _ = extract_features(proxy_network("cpu"), images, keep_features=True)
torch.save(features, sys.argv[3])
"""


@pytest.mark.slow
def test_proxy_compare_without_weights_is_labelled_everywhere(tiny, tmp_path, monkeypatch):
    """`make demo` on a machine without pytorch-fid's weights: --proxy scores every row (random-search
    candidates included) on a seeded random-weight Inception, and every output says so; the proxy
    network gives bit-identical features in another process; a resume may not switch networks. At
    128 px, so that the published rows are the original StyleGAN2 and the paper's Table 9 CelebA
    genotype, retrained and scored like the others."""
    import matplotlib.pyplot as plt

    from stylenas.compare.families import CompareError
    from stylenas.compare.run import compare
    from stylenas.datasets.demo import make_demo_data
    from stylenas.metrics import InceptionWeightsError, find_weights
    from stylenas.search import load_genotype
    from stylenas.search.genotype import Genotype

    monkeypatch.delenv("STYLENAS_INCEPTION", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no cached weights file either
    with pytest.raises(InceptionWeightsError):
        find_weights(download=False)
    out = tmp_path / "proxy"
    data = tmp_path / "demo128.lmdb"
    make_demo_data(data, sizes=[128], num=8, progress=False)

    def run(**kwargs):
        return compare(data, out, methods=["random"], seeds=[0], budget=TEST_BUDGET, family="stylegan2",
                       device="cpu", log=quiet, **kwargs)

    with pytest.raises(CompareError, match="--proxy"):  # without weights the error names the way out
        run()
    assert not (out / "compare.json").exists()
    with pytest.raises(CompareError, match="not both"):
        run(proxy=True, inception=tiny["weights"])
    titles = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (titles.append(fig.axes[0].get_title()), close(fig)))
    run(proxy=True)
    board = _leaderboard(out)
    assert set(board) == {"random-alphagan", "stylegan2", "alphagan_celeba128"}
    assert board["stylegan2"]["search_kimg"] == board["alphagan_celeba128"]["search_kimg"] == 0
    table9 = Genotype.load(out / "jobs" / "published-alphagan_celeba128-s0" / "search" / "genotype.json")
    assert table9.layers == load_genotype("alphagan_celeba128").layers and table9.resolution == 128
    assert all(r["status"] == "ok" and r["features"] == "proxy" and r["fid"] > 0 for r in board.values())
    with open(out / "leaderboard.csv") as file:
        assert {row["features"] for row in csv.DictReader(file)} == {"proxy"}
    assert json.loads((out / "compare.json").read_text())["features"] == "proxy"
    text = (out / "leaderboard.md").read_text()
    assert text.startswith("# Leaderboard (PROXY features: not FID)") and "**PROXY FEATURES**" in text
    assert "| FID |" not in text and text.count("| FID (proxy features) |") == 2  # both tables
    assert "random-weight" in titles[0] and "not comparable" in titles[0]
    # the random search's candidates were scored by the same proxy: its best score is a candidate's
    candidates = (out / "jobs" / "random-alphagan-s0" / "search" / "candidates.jsonl").read_text().splitlines()
    assert board["random-alphagan"]["search_score"] == min(json.loads(line)["score"] for line in candidates)

    # another process builds the proxy network and gets the reference features bit for bit
    saved = torch.load(out / "reference-features.pt", weights_only=True)["features"]
    script = tmp_path / "proxy_features.py"
    script.write_text(PROXY_FEATURES_SCRIPT)
    launch(script, data, len(saved), tmp_path / "again.pt", env={**os.environ, "OMP_NUM_THREADS": "1"})
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert saved.shape == (TEST_BUDGET.eval_num_ref, 2048) and torch.equal(again, saved)

    # a resume must not mix feature networks; with the same one it reruns nothing
    with pytest.raises(CompareError, match="features='proxy' \\(now 'inception'\\)"):
        run(resume=True, inception=tiny["weights"])
    finished = {name: json.loads((out / "jobs" / name / "result.json").read_text())["finished_at"]
                for name in ("random-alphagan-s0", "published-stylegan2-s0", "published-alphagan_celeba128-s0")}
    run(resume=True, proxy=True)
    assert finished == {name: json.loads((out / "jobs" / name / "result.json").read_text())["finished_at"]
                        for name in finished}
