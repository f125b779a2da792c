"""The conventional trainer: losses against hand computations, exact resume, checkpoints that
load through stylenas.train.load_generator, the command line."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stylenas.conventional import generator_from_checkpoint
from stylenas.conventional.commands import train_conventional_command
from stylenas.conventional.losses import d_loss, gradient_penalty
from stylenas.conventional.train import TrainConfig, TrainError, batch_indices, run_training
from stylenas.datasets import make_demo_data
from stylenas.train.checkpoint import load_checkpoint, load_generator
from helpers import images, launch

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


class Linear1(torch.nn.Module):
    """D(x) = w . x: grad_x D = w everywhere, so the penalty is known in closed form."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1, keepdim=True)


def test_gradient_penalty_by_hand():
    w = torch.full((12,), 0.5, dtype=torch.float64)  # ||w|| = sqrt(12 * 0.25) = sqrt(3)
    D = Linear1(w)
    real, fake = torch.randn(5, 3, 2, 2, dtype=torch.float64), torch.randn(5, 3, 2, 2, dtype=torch.float64)
    assert gradient_penalty(D, real, fake).item() == pytest.approx((3 ** 0.5 - 1) ** 2, rel=1e-12)
    loss, stats = d_loss("wgan-gp", D, real, fake)
    expected = (D(fake).mean() - D(real).mean()).item() + 10 * (3 ** 0.5 - 1) ** 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()  # the penalty is differentiable in D's weights
    assert D.w.grad is not None


def test_hinge_by_hand():
    D = Linear1(torch.ones(12))
    real = torch.full((2, 3, 2, 2), 0.05)  # D = 0.6
    fake = torch.full((2, 3, 2, 2), -0.1)  # D = -1.2
    loss, _ = d_loss("hinge", D, real, fake)
    assert loss.item() == pytest.approx((1 - 0.6) + 0)


def test_batches_depend_on_seed_and_step_only():
    a = [batch_indices(10, 4, 3, s) for s in range(5)]
    assert a == [batch_indices(10, 4, 3, s) for s in range(5)]
    flat = sum(a, [])[:20]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # epochs


def state_of(path):
    state = load_checkpoint(path)
    return state


def assert_same_run(a, b):
    for key in ("G", "D", "G_ema"):
        for name, value in a[key].items():
            torch.testing.assert_close(value, b[key][name], rtol=0, atol=0, msg=f"{key}.{name}")
    assert a["counters"] == b["counters"]


@pytest.mark.parametrize("loss", ["hinge", "ctgan"])
def test_resume_equals_uninterrupted(tmp_path, loss):
    data = images()
    whole = TrainConfig("alphagan_s", "mem", str(tmp_path / "whole"), preset="tiny", steps=6, loss=loss, device="cpu",
                        snap=3)
    run_training(whole, dataset=data, log=lambda line: None)
    cut = TrainConfig("alphagan_s", "mem", str(tmp_path / "cut"), preset="tiny", steps=6, loss=loss, device="cpu",
                      snap=3)
    assert run_training(cut, dataset=data, log=lambda line: None, stop_at=4)["step"] == 4
    # the run "died" after step 4's checkpoint; take it back to step 3's snapshot as a kill would
    (tmp_path / "cut" / "checkpoint.pt").write_bytes((tmp_path / "cut" / "network-snapshot-000003.pt").read_bytes())
    cut.resume = True
    run_training(cut, dataset=data, log=lambda line: None)
    assert_same_run(state_of(tmp_path / "whole" / "checkpoint.pt"), state_of(tmp_path / "cut" / "checkpoint.pt"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # lines past the checkpoint were dropped
    assert (tmp_path / "cut" / "samples" / "step000006.png").is_file()


def test_checkpoint_loads_through_load_generator(tmp_path):
    config = TrainConfig("autogan_a", "mem", str(tmp_path / "run"), preset="tiny", steps=2, device="cpu")
    run_training(config, dataset=images(), log=lambda line: None)
    G, info = load_generator(tmp_path / "run" / "checkpoint.pt")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["kind"] == "conventional" and info["resolution"] == 16 and info["z_dim"] == 16
    x = G(torch.randn(3, 16))
    assert x.shape == (3, 3, 16, 16) and x.abs().max() <= 1
    # what `stylenas fid CHECKPOINT ...` reads: quantised samples of G_ema by seed
    from stylenas.train.generate import checkpoint_images

    samples = checkpoint_images(tmp_path / "run" / "checkpoint.pt", 5, "cpu")
    assert len(samples) == 5 and samples[4].shape == (3, 16, 16) and samples[4].dtype == torch.uint8


def test_generator_learns_a_constant_image(tmp_path):
    """A loss that falls where it should: on a dataset of one grey level the samples approach it."""
    data = [torch.full((3, 16, 16), 200, dtype=torch.uint8)] * 16
    config = TrainConfig("autogan_a", "mem", str(tmp_path / "run"), preset="tiny", steps=40, device="cpu", lr=2e-3,
                         snap=40)
    run_training(config, dataset=data, log=lambda line: None)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    G, _ = generator_from_checkpoint({**state, "G_ema": state["G"]})  # 40 steps: the EMA has barely moved
    before = build_untrained_mean()
    with torch.no_grad():
        after = float(G.eval()(torch.randn(16, 16)).mean())
    target = 200 / 127.5 - 1
    assert abs(after - target) < abs(before - target) / 2


def build_untrained_mean():
    from stylenas.conventional import build_networks

    torch.manual_seed(0)
    G, _ = build_networks("autogan_a", 16, 8, 8, 16)
    with torch.no_grad():
        return float(G.eval()(torch.randn(16, 16)).mean())


def test_errors(tmp_path):
    config = TrainConfig("alphagan_s", "mem", str(tmp_path / "run"), preset="tiny", steps=2, device="cpu")
    run_training(config, dataset=images(), log=lambda line: None)
    with pytest.raises(TrainError, match="already holds a run"):
        run_training(config, dataset=images(), log=lambda line: None)
    config.resume, config.steps = True, 3
    with pytest.raises(TrainError, match="steps"):
        run_training(config, dataset=images(), log=lambda line: None)
    with pytest.raises(TrainError, match="published genotype"):
        run_training(TrainConfig("nope", "mem", str(tmp_path / "x"), preset="tiny"), dataset=images())
    with pytest.raises(TrainError, match="multiple of 8"):
        run_training(TrainConfig("alphagan_s", "mem", str(tmp_path / "y"), preset="tiny", device="cpu"),
                     dataset=images(size=12))
    result = CliRunner().invoke(train_conventional_command, ["--genotype", "alphagan_s", "--data",
                                                             str(tmp_path / "missing.lmdb"), "--outdir",
                                                             str(tmp_path / "z"), "--preset", "tiny"])
    assert result.exit_code == 1 and "Error:" in result.output and "missing.lmdb" in result.output


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    make_demo_data(tmp_path / "demo.lmdb", [16], 32, image_format="png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(outdir, *extra):
        return [sys.executable, str(ROOT / "scripts" / "train_conventional.py"), "--genotype", "alphagan_s", "--data",
                str(tmp_path / "demo.lmdb"), "--outdir", str(outdir), "--preset", "tiny", "--steps", "16", "--snap",
                "2", "--device", "cpu", *extra]

    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(command(tmp_path / "cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "network-snapshot-000004.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["counters"]["step"]
    assert done < 16, "the run finished before it was killed: nothing tested"
    subprocess.run(command(tmp_path / "cut", "--resume"), check=True, env=env, capture_output=True)
    assert_same_run(state_of(tmp_path / "whole" / "checkpoint.pt"), state_of(tmp_path / "cut" / "checkpoint.pt"))


@pytest.mark.slow
def test_torchrun_two_processes_resume_exactly(tmp_path):
    """Two CPU processes (gloo): gradients averaged, each rank's RNG state in the checkpoint, and
    a resume from a snapshot equals the uninterrupted two-process run."""
    make_demo_data(tmp_path / "demo.lmdb", [16], 32, image_format="png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(outdir, *extra):
        launch(ROOT / "scripts" / "train_conventional.py", "--genotype", "autogan_a", "--data", tmp_path / "demo.lmdb",
               "--outdir", outdir, "--preset", "tiny", "--steps", "4", "--snap", "2", "--loss", "ctgan", "--device",
               "cpu", *extra, processes=2, env=env, timeout=300)

    run(tmp_path / "whole")
    state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert len(state["rng"]) == 2 and state["counters"]["step"] == 4
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "checkpoint.pt").write_bytes((tmp_path / "whole" / "network-snapshot-000002.pt").read_bytes())
    run(tmp_path / "cut", "--resume")
    assert_same_run(state, load_checkpoint(tmp_path / "cut" / "checkpoint.pt"))


def test_metric_snapshots_keep_the_best(tmp_path):
    """--metrics is,fid through a stand-in for the Inception network (same interface): logged at
    every checkpoint, best.pt holds the lowest FID."""
    from stylenas.conventional.train import MetricEvaluator
    from stylenas.metrics import save_stats

    class Features(torch.nn.Module):
        def forward(self, images):  # uint8 [N, 3, H, W] -> (features [N, 6], logits [N, 5])
            x = images.float() / 255
            features = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
            return features, features[:, :5] * 10

    save_stats(tmp_path / "ref.npz", np.full(6, 0.5), np.eye(6) * 0.01)
    evaluator = MetricEvaluator(("is", "fid"), 12, fid_stats=tmp_path / "ref.npz", net=Features())
    config = TrainConfig("alphagan_s", "mem", str(tmp_path / "run"), preset="tiny", steps=4, snap=2, device="cpu",
                         metrics=("is", "fid"))
    run_training(config, dataset=images(), log=lambda line: None, evaluator=evaluator)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    fids = [r["fid"] for r in records if "fid" in r]
    assert len(fids) == 2 and all(r["is"] >= 1 for r in records if "is" in r)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["best"]["best"] == min(fids)
    assert best["counters"]["step"] == 2 * (1 + fids.index(min(fids)))
    with pytest.raises(TrainError, match="--fid-stats"):
        MetricEvaluator(("fid",), 10, net=Features())
