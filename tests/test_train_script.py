"""scripts/train_stylegan2.py end to end: outputs, one-line errors, exact resume after SIGKILL (in a
subprocess), and 2 gloo processes under torchrun equal to 1 process."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from stylenas.datasets import make_demo_data
from stylenas.search.genotype import Genotype
from stylenas.train.commands import train_command

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_stylegan2.py"
# 8 px, batch 4: a step takes tens of milliseconds on one thread
TINY = ["--cfg", "tiny", "--batch", "4", "--mbstd-group", "2", "--device", "cpu", "--workers", "0"]


@pytest.fixture(scope="module")
def demo_lmdb(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [8, 16], 40, progress=False)
    return path


def env_one_thread():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get(
        "PYTHONPATH", "")}


def run_script(args, launcher=None):
    cmd = (launcher or [sys.executable]) + [str(SCRIPT)] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env_one_thread(), timeout=600)


def load(path):
    return torch.load(path, weights_only=True)


def invoke(args):
    return CliRunner().invoke(train_command, [str(a) for a in args])


def test_a_run_writes_snapshots_log_grids_and_plot(demo_lmdb, tmp_path):
    out = tmp_path / "run"
    result = invoke(["--data", demo_lmdb, "--genotype", "stylegan2", "--resolution", "8", "--outdir", out,
                     "--kimg", "0.012", "--snap", "0.004", *TINY])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert {"checkpoint.pt", "network-snapshot-000000.004.pt", "network-snapshot-000000.008.pt",
            "network-snapshot-000000.012.pt", "log.jsonl", "losses.png", "genotype.json", "config.json",
            "samples"} <= set(names)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.004, 0.008, 0.012]
    for key in ("loss_G", "loss_D", "r1_penalty", "pl_length", "s_per_kimg", "s_per_step", "memory_gb", "lr_G",
                "lr_D", "nan_count"):
        assert key in records[0], key
    assert (out / "samples" / "reals.png").is_file()
    assert (out / "samples" / "fakes00000.012-trunc0.7.png").is_file()
    state = load(out / "checkpoint.pt")  # the contract: weights_only
    assert state["kind"] == "stylegan2" and state["counters"]["step"] == 3 and state["config"]["batch"] == 4
    assert {"G", "D", "G_ema", "G_opt", "D_opt", "rng", "pl_mean", "genotype", "data"} <= set(state)
    assert Genotype.from_dict(state["genotype"]).resolution == 8
    # resuming a finished run does nothing and says so; a longer --kimg continues
    result = invoke(["--data", demo_lmdb, "--genotype", "stylegan2", "--resolution", "8", "--outdir", out,
                     "--kimg", "0.016", "--snap", "0.004", "--resume", *TINY])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["kimg"] for line in (out / "log.jsonl").read_text().splitlines()][-1] == 0.016


def test_bad_inputs_give_one_line_errors(demo_lmdb, tmp_path):
    base = ["--data", demo_lmdb, "--outdir", tmp_path / "run", "--kimg", "0.004", "--snap", "0.004", *TINY]
    g32 = tmp_path / "g32.json"
    Genotype.original(32).save(g32)
    result = invoke(["--genotype", g32, *base])
    assert result.exit_code != 0 and "is for 32 px images" in result.output and "holds 8, 16" in result.output
    result = invoke(["--genotype", "stylegan2", "--resolution", "64", *base])
    assert result.exit_code != 0 and "resolution 64 is not stored" in result.output
    result = invoke(["--genotype", tmp_path / "missing.json", *base])
    assert result.exit_code != 0 and "missing.json: genotype file not found" in result.output
    result = invoke(["--genotype", "stylegan2", "--data", tmp_path / "nope.lmdb", "--outdir", tmp_path / "r2"])
    assert result.exit_code != 0 and "nope.lmdb" in result.output
    result = invoke(["--genotype", "stylegan2", "--resume", *base])
    assert result.exit_code != 0 and "checkpoint.pt: checkpoint not found" in result.output
    result = invoke(["--genotype", "stylegan2", *base[:-len(TINY)], *TINY[:2], "--batch", "0", "--device", "cpu"])
    assert result.exit_code != 0 and "--batch must be positive" in result.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()

    assert invoke(["--genotype", "stylegan2", "--resolution", "8", *base]).exit_code == 0
    result = invoke(["--genotype", "stylegan2", "--resolution", "8", *base])
    assert result.exit_code != 0 and "already holds a training run" in result.output
    result = invoke(["--genotype", "stylegan2", "--resolution", "8", "--resume", *base, "--gamma", "5"])
    assert result.exit_code != 0 and "another configuration: gamma=" in result.output
    fewer = tmp_path / "fewer.lmdb"
    make_demo_data(str(fewer), [8], 12, progress=False)
    result = invoke(["--genotype", "stylegan2", "--resolution", "8", "--resume", *base[:1], fewer, *base[2:]])
    assert result.exit_code != 0 and "was trained on 40 images; --data" in result.output
    other = Genotype.original(8)
    other.layers[0]["op"] = "conv_1x1"
    other.save(tmp_path / "other.json")
    result = invoke(["--genotype", tmp_path / "other.json", "--resume", *base])
    assert result.exit_code != 0 and "from another genotype" in result.output
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"corrupt")
    result = invoke(["--genotype", "stylegan2", "--resolution", "8", "--resume", *base])
    assert result.exit_code != 0 and "not a readable checkpoint" in result.output
    assert "network-snapshot-000000.004.pt can be used" in result.output


def assert_same_state(a, b, exact=True, atol=0.0):
    for key in ("G", "D", "G_ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            if exact:
                assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
            else:
                assert torch.allclose(a[key][name], b[key][name], atol=atol, rtol=0), \
                    f"{key}.{name}: {(a[key][name] - b[key][name]).abs().max()}"


@pytest.mark.slow
def test_sigkill_and_resume_equals_an_uninterrupted_run(demo_lmdb, tmp_path):
    args = ["--data", demo_lmdb, "--genotype", "stylegan2", "--resolution", "8", "--kimg", "0.032", "--snap",
            "0.008", *TINY]
    straight = run_script([*args, "--outdir", tmp_path / "straight"])
    assert straight.returncode == 0, straight.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args), "--outdir", str(killed)],
                            env=env_one_thread(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    at_kill = load(killed / "checkpoint.pt")["counters"]["kimg"]
    assert at_kill < 0.032
    resumed = run_script([*args, "--outdir", killed, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {killed / 'checkpoint.pt'} at kimg" in resumed.stderr
    a, b = load(tmp_path / "straight" / "checkpoint.pt"), load(killed / "checkpoint.pt")
    assert_same_state(a, b, exact=True)
    for opt in ("G_opt", "D_opt"):
        for i, s in a[opt]["state"].items():
            assert torch.equal(s["exp_avg_sq"], b[opt]["state"][i]["exp_avg_sq"])
    assert torch.equal(a["pl_mean"], b["pl_mean"]) and a["counters"] == b["counters"]
    logged = [json.loads(line)["kimg"] for line in (killed / "log.jsonl").read_text().splitlines()]
    assert logged == [0.008, 0.016, 0.024, 0.032]  # lines after the resume point were dropped once


@pytest.mark.slow
def test_two_gloo_processes_equal_one(demo_lmdb, tmp_path):
    """torchrun --nproc_per_node 2 with total batch 4 trains what 1 process with batch 4 trains (path
    length off: float rounding of its all-reduced mean would be amplified by the penalty)."""
    args = ["--data", demo_lmdb, "--genotype", "stylegan2", "--resolution", "8", "--kimg", "0.016", "--snap",
            "0.008", "--pl-weight", "0", *TINY]
    one = run_script([*args, "--outdir", tmp_path / "one"])
    assert one.returncode == 0, one.stderr
    two = run_script([*args, "--outdir", tmp_path / "two"], launcher=[
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])
    assert two.returncode == 0, two.stderr
    assert "on 2 process(es)" in two.stderr and "(2 per process)" in two.stderr
    a, b = load(tmp_path / "one" / "checkpoint.pt"), load(tmp_path / "two" / "checkpoint.pt")
    assert len(b["rng"]) == 2 and a["counters"] == b["counters"]
    assert_same_state(a, b, exact=False, atol=1e-4)
    # two steps move the weights by far more than the tolerance: the comparison has teeth
    with pytest.raises(AssertionError):
        assert_same_state(a, load(tmp_path / "one" / "network-snapshot-000000.008.pt"), exact=False, atol=1e-4)


@pytest.mark.slow
def test_fid_at_snapshots_keeps_the_best(demo_lmdb, tmp_path, monkeypatch):
    """--metrics fid50k_full: reference statistics of the data computed once and cached, the FID of
    --fid-num G_ema images in every log line, network-snapshot-best.pt the lowest. Random Inception
    weights in pytorch-fid's layout stand in for the real file."""
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import write_weights

    monkeypatch.setenv("STYLENAS_CACHE", str(tmp_path / "cache"))
    weights = write_weights(tmp_path / "weights")
    small = tmp_path / "small.lmdb"  # few images: the Inception network is slow on a CPU
    make_demo_data(str(small), [8], 6, progress=False)
    out = tmp_path / "run"
    result = invoke(["--data", small, "--genotype", "stylegan2", "--resolution", "8", "--outdir", out,
                     "--kimg", "0.008", "--snap", "0.004", "--metrics", "fid50k_full", "--fid-num", "8",
                     "--inception", weights, *TINY])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    fids = [r["fid"] for r in records]
    assert len(fids) == 2 and all(f > 0 for f in fids)
    cached = list((tmp_path / "cache" / "fid-stats").glob("small-8px-*.npz"))
    assert len(cached) == 1
    best = load(out / "network-snapshot-best.pt")
    assert best["counters"]["kimg"] == records[fids.index(min(fids))]["kimg"]
    # the checkpoint's G_ema scored by fid.py with the cached statistics gives the logged value
    from stylenas.metrics.cli import evaluate

    again = evaluate(str(out / "checkpoint.pt"), str(cached[0]), num=8, inception=weights, device="cpu",
                     workers=0, progress=False)
    assert again["fid"] == pytest.approx(fids[-1], rel=1e-6)
