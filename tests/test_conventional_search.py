"""Tiny conventional searches (alphaGAN on AutoGAN cells, DEGAS): they run, resume exactly, and
write a genotype that train-conventional retrains as is."""
import json

import pytest
import torch
from click.testing import CliRunner

from stylenas.conventional import load_genotype
from stylenas.conventional.commands import search_conventional_command, train_conventional_command
from stylenas.conventional.searchers.differentiable import SearchConfig, SearchError, run_search
from stylenas.datasets import make_demo_data
from helpers import images, quiet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["alphagan", "degas"])
def test_search_resumes_exactly(tmp_path, method):
    data = images()
    whole = SearchConfig(method, "mem", str(tmp_path / "whole"), preset="tiny", iters=4, device="cpu", sample_every=2)
    g_whole = run_search(whole, dataset=data, log=quiet)
    # stopped at 1, off the sample grid (a final sample is drawn there): side work must not shift the stream
    cut = SearchConfig(method, "mem", str(tmp_path / "cut"), preset="tiny", iters=1, device="cpu", sample_every=2)
    run_search(cut, dataset=data, log=quiet)
    cut.iters, cut.resume = 4, True
    g_cut = run_search(cut, dataset=data, log=quiet)
    assert g_cut.arch_parameters == g_whole.arch_parameters  # alphas bit for bit
    assert g_cut.body == g_whole.body
    first = torch.load(tmp_path / "whole" / "search-state.pt", weights_only=True)["method"]
    second = torch.load(tmp_path / "cut" / "search-state.pt", weights_only=True)["method"]
    G1 = first["searcher"]["G"] if method == "alphagan" else first["G"]
    G2 = second["searcher"]["G"] if method == "alphagan" else second["G"]
    for key in G1:
        torch.testing.assert_close(G1[key], G2[key], rtol=0, atol=0, msg=key)
    log = [json.loads(line)["iteration"] for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]
    for name in ("genotype.json", "alphas.png", "samples/iter000004.png"):
        assert (tmp_path / "cut" / name).is_file()
    # the alphas moved away from their 1e-3 start, and the state holds them
    alphas = torch.cat([torch.tensor(v).flatten() for v in g_cut.arch_parameters.values()])
    assert alphas.abs().max() > 1e-2


def test_search_errors(tmp_path):
    with pytest.raises(SearchError, match="method"):
        run_search(SearchConfig("autogan", "mem", str(tmp_path / "a")), dataset=images())
    with pytest.raises(SearchError, match="s, l or tiny"):
        run_search(SearchConfig("alphagan", "mem", str(tmp_path / "b"), preset="cifar", device="cpu"), dataset=images())
    with pytest.raises(SearchError, match="too few"):
        run_search(SearchConfig("degas", "mem", str(tmp_path / "c"), preset="tiny", device="cpu"), dataset=images(n=6))
    with pytest.raises(SearchError, match="no search-state.pt"):
        run_search(SearchConfig("degas", "mem", str(tmp_path / "d"), preset="tiny", device="cpu", resume=True),
                   dataset=images())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["alphagan", "degas"])
def test_cli_search_then_retrain(tmp_path, method):
    make_demo_data(tmp_path / "demo.lmdb", [16], 24, image_format="png")
    runner = CliRunner()
    result = runner.invoke(search_conventional_command, ["--method", method, "--data", str(tmp_path / "demo.lmdb"),
                                                         "--outdir", str(tmp_path / "search"), "--preset", "tiny",
                                                         "--iters", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    genotype = load_genotype(tmp_path / "search" / "genotype.json")
    assert genotype.search_space == ("alphagan_conv" if method == "alphagan" else "degas")
    result = runner.invoke(train_conventional_command, ["--genotype", str(tmp_path / "search" / "genotype.json"),
                                                        "--data", str(tmp_path / "demo.lmdb"), "--outdir",
                                                        str(tmp_path / "train"), "--preset", "tiny", "--steps", "2",
                                                        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "train" / "checkpoint.pt", weights_only=True)
    assert state["config"]["loss"] == ("hinge" if method == "alphagan" else "ctgan")
    assert state["genotype"]["search_space"] == genotype.search_space


def test_derived_network_metrics_and_bn_recalibration(tmp_path, monkeypatch):
    """--metrics scores the derived architecture (inherited weights, fresh BN statistics), and
    the extra evaluation leaves the search itself unchanged."""
    import numpy as np

    from stylenas.conventional.searchers import differentiable as search_module
    from stylenas.conventional.train import MetricEvaluator
    from stylenas.metrics import save_stats

    class Features(torch.nn.Module):
        def forward(self, images):
            x = images.float() / 255
            features = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
            return features, features[:, :5] * 10

    save_stats(tmp_path / "ref.npz", np.full(6, 0.5), np.eye(6) * 0.01)
    seen = []

    def stand_in(metrics, num, fid_stats=None, inception=None, device="cpu"):
        evaluator = MetricEvaluator(metrics, num, fid_stats, net=Features())

        def call(G, latent_dim, seed):
            seen.append(G)
            return evaluator(G, latent_dim, seed)
        return call

    monkeypatch.setattr(search_module, "MetricEvaluator", stand_in, raising=False)
    data = images()
    scored = SearchConfig("degas", "mem", str(tmp_path / "scored"), preset="tiny", iters=2, device="cpu",
                          sample_every=1, metrics=("is", "fid"), fid_stats=str(tmp_path / "ref.npz"), metric_num=10)
    g1 = run_search(scored, dataset=data, log=quiet)
    plain = SearchConfig("degas", "mem", str(tmp_path / "plain"), preset="tiny", iters=2, device="cpu", sample_every=1)
    g2 = run_search(plain, dataset=data, log=quiet)
    assert g1.arch_parameters == g2.arch_parameters
    records = [json.loads(line) for line in (tmp_path / "scored" / "log.jsonl").read_text().splitlines()]
    assert all(set(r["derived"]) == {"is", "is_std", "fid"} for r in records)
    assert len(seen) == 2 and type(seen[0]).__name__ == "DegasGenerator" and not seen[0].training
    norms = [m for m in seen[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 2 for m in norms)  # recalibrated on 2 batches


@pytest.mark.parametrize("method, option", [("agan", ["--ctrl-batch", "1"]), ("alphagan", ["--top-k", "2"]),
                                            ("dggan", ["--reward-num", "10"]), ("autogan", ["--is-range", "1,9"]),
                                            ("degas", ["--n-critic", "2"]), ("agan", ["--metrics", "is"])])
def test_an_option_of_another_method_is_refused_before_anything_is_written(tmp_path, method, option):
    """Every method-specific option names the methods that read it; another method refuses it in one
    line (before, agan --ctrl-batch 1 failed with a TypeError from inside its preset)."""
    out = tmp_path / "out"
    result = CliRunner().invoke(search_conventional_command, ["--method", method, "--data", str(tmp_path / "none.lmdb"),
                                                              "--outdir", str(out), "--preset", "tiny", *option])
    assert result.exit_code == 2, result.output
    assert option[0] in result.output and f"not {method}" in result.output
    assert not out.exists()
