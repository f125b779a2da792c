"""DEGAS (conventional/searchers/degas.py, conventional/spaces/degas_dag.py, losses.glo_loss) against the
paper (Doveh and Giryes, /work/shared/papers/degas.txt) and DARTS' CIFAR settings, with values transcribed
here from those sources: pruning on the raw alphas, the two readings of the learning rate and the
alphas under each, GLO's reconstruction loss against hand computations."""
import json

import pytest
import torch

from stylenas.conventional.losses import glo_loss, laplacian_pyramid
from stylenas.conventional.searchers import degas
from stylenas.conventional.searchers.common import SearchError
from stylenas.conventional.spaces.degas_dag import DegasSuperGenerator, edge_key
from helpers import images

pytestmark = pytest.mark.usefixtures("one_thread")

# DEGAS section 4: "the DARTS hyperparameters of CIFAR-10, except for the learning rate that is set to
# 3e-1 for CIFAR-10, and 3e-2 for STL"; DARTS (Liu et al. 2019) train_search.py defaults
PAPER_LR = {"cifar": 3e-1, "stl": 3e-2}
DARTS = {"learning_rate": 0.025, "learning_rate_min": 0.001, "momentum": 0.9, "weight_decay": 3e-4,
         "grad_clip": 5.0, "arch_learning_rate": 3e-4, "arch_betas": (0.5, 0.999), "arch_weight_decay": 1e-3,
         "epochs": 50, "batch_size": 64, "init_channels": 16}


@pytest.mark.parametrize("name", ["cifar", "stl"])
def test_presets_are_darts_but_the_weights_learning_rate(name):
    p = degas.DEGAS_PRESETS[name]
    assert p.lr == PAPER_LR[name] and p.arch_lr == DARTS["arch_learning_rate"]  # the default reading
    assert (p.lr_min, p.momentum, p.weight_decay, p.grad_clip, p.arch_betas, p.arch_weight_decay, p.epochs,
            p.batch, p.gf_dim) == (DARTS["learning_rate_min"], DARTS["momentum"], DARTS["weight_decay"],
                                   DARTS["grad_clip"], DARTS["arch_betas"], DARTS["arch_weight_decay"],
                                   DARTS["epochs"], DARTS["batch_size"], DARTS["init_channels"])
    # the other reading: the alphas take the paper's rate, the weights keep DARTS'
    assert degas.LR_READINGS["alphas"](PAPER_LR[name]) == (DARTS["learning_rate"], PAPER_LR[name])
    assert degas.LR_READINGS["weights"](PAPER_LR[name]) == (PAPER_LR[name], DARTS["arch_learning_rate"])


def test_lr_and_arch_lr_options_reach_the_optimisers():
    data = images(16, 16)
    halves = ([*range(8)], [*range(8, 16)])
    method = degas.DegasMethod("tiny", 16, halves, data, 0, torch.device("cpu"), options={"lr": 0.3, "arch_lr": 3e-4})
    assert method.w_opt.param_groups[0]["lr"] == 0.3 and method.arch_opt.param_groups[0]["lr"] == 3e-4
    for bad in ({"lr": -1.0}, {"betas": (0, 0.9)}):
        with pytest.raises(SearchError):
            degas.DegasMethod("tiny", 16, halves, data, 0, torch.device("cpu"), options=bad)


def test_alphas_saturate_under_the_alphas_reading_only():
    """The measurement behind the default: the alphas' Adam at 3e-1 moves the strongest softmax
    weight of the edges far from uniform within a few steps; at DARTS' 3e-4 they stay near it."""
    result = degas.alpha_trajectories(images(16, 16), steps=4, record_at=(1, 4), batch=4)
    uniform = result["weights"][0]["mean_max"]
    assert result["weights"][-1]["mean_max"] == pytest.approx(uniform, abs=0.01)
    assert result["alphas"][-1]["mean_max"] > uniform + 0.05
    assert result["alphas"][-1]["max_max"] > result["weights"][-1]["max_max"]


def test_pruning_compares_raw_alphas_across_edges():
    """Section 3.2: "The connection is selected to be the operation with the largest value of alpha".
    Edge up2 <- n1_2 (direct) has alphas all 2 (softmax 1/4 each); up2 <- up1 (residual) has one alpha
    1.5 and the rest -5 (softmax ~0.99): by raw alpha the direct edge is the strongest, so it alone is
    kept (a softmax comparison would keep the residual one and add the direct edge)."""
    G = DegasSuperGenerator(16, 4, 8, 2)
    with torch.no_grad():
        for value in G.arch.values():
            value.fill_(-5.0)
        G.arch[edge_key("up2", "n1_2")].fill_(2.0)
        G.arch[edge_key("up2", "up1")][1] = 1.5
    (node,) = [n for n in G.genotype().body["nodes"] if n["name"] == "up2"]
    assert [(i["from"], i["residual"]) for i in node["inputs"]] == [("n1_2", False)]
    with torch.no_grad():  # now the residual edge holds the largest alpha: both edges are kept
        G.arch[edge_key("up2", "up1")][1] = 2.5
    (node,) = [n for n in G.genotype().body["nodes"] if n["name"] == "up2"]
    assert [(i["from"], i["residual"]) for i in node["inputs"]] == [("n1_2", False), ("up1", True)]


def test_laplacian_pyramid_reconstructs_and_a_constant_has_no_detail():
    """Properties every Laplacian pyramid has, whatever its filter: the band-pass levels and the
    low-pass rest give the image back through the expand step, and a constant image has no
    band-pass content (its low-pass rest is the constant)."""
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    bands = laplacian_pyramid(x, levels=3)
    assert [tuple(b.shape[-2:]) for b in bands] == [(16, 16), (8, 8), (4, 4)]
    flat = laplacian_pyramid(torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64), levels=3)
    assert all(b.abs().max() < 1e-12 for b in flat[:-1]) and torch.allclose(flat[-1], torch.full_like(flat[-1], 0.3))
    # expand = up-sample with zeros, the 5-tap binomial low-pass, x 4: collapsing gives the image back
    rebuilt = bands[-1]
    for detail in reversed(bands[:-1]):
        up = torch.zeros_like(detail)
        up[:, :, ::2, ::2] = rebuilt
        rebuilt = detail + 4 * _expand_blur(up)
    torch.testing.assert_close(rebuilt, x, rtol=0, atol=1e-12)


def _expand_blur(x):
    """The 5-tap binomial low-pass (1 4 6 4 1) / 16 in each direction, mirrored at the borders, in a
    separable form of our own."""
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype) / 16
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    rows = sum(taps[k] * padded[:, :, k:k + x.shape[2], :] for k in range(5))
    return sum(taps[k] * rows[:, :, :, k:k + x.shape[3]] for k in range(5))


@pytest.mark.parametrize("c", [0.25, -0.5])
def test_glo_loss_of_a_constant_offset_by_hand(c):
    """x + c against x: the L2 term is c^2 per value; every band-pass level is unchanged (a constant
    has no detail) and the low-pass rest (2x2 of an 8x8 image at 3 levels) moves by c, weighted
    2^(2j) = 16 at j = 2: 16 |c| 2 x 2 x 3 values over the 8 x 8 x 3 of the image = |c|."""
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    assert glo_loss(x + c, x, levels=3).item() == pytest.approx(c * c + abs(c), rel=1e-10)
    assert glo_loss(x, x, levels=3).item() == 0


def test_command_line_rates(tmp_path):
    from click.testing import CliRunner

    from stylenas.conventional.commands import search_conventional_command
    from stylenas.conventional.sources import unsourced
    from stylenas.datasets import make_demo_data

    make_demo_data(tmp_path / "demo.lmdb", [16], 16, image_format="png")
    base = ["--data", str(tmp_path / "demo.lmdb"), "--preset", "tiny", "--device", "cpu", "--iters", "1",
            "--sample-every", "0"]
    result = CliRunner().invoke(search_conventional_command, ["--method", "degas", "--outdir", str(tmp_path / "d"),
                                                              "--lr", "0.3", "--arch-lr", "0.0003"] + base)
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "d" / "search-state.pt", weights_only=False)
    assert state["settings"]["options"] == {"lr": 0.3, "arch_lr": 0.0003}
    assert state["method"]["arch_opt"]["param_groups"][0]["lr"] == 0.0003
    record = json.loads((tmp_path / "d" / "config.json").read_text())  # every setting with its source
    assert not unsourced(record) and record["lr"]["value"] == 0.3
    assert record["lr"]["source"].startswith("command line: --lr")
    assert record["arch_lr"]["source"].startswith("command line: --arch-lr")
    assert "section 4" in degas.SOURCES["lr"].source and "arch_learning_rate" in degas.SOURCES["arch_lr"].source
    result = CliRunner().invoke(search_conventional_command, ["--method", "alphagan", "--outdir",
                                                              str(tmp_path / "a"), "--arch-lr", "0.1"] + base)
    assert result.exit_code == 2 and "--arch-lr" in result.output
