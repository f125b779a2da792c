"""What `stylenas train` writes per tick and per evaluation, in stylegan2-ada-pytorch's layout:
stats.jsonl (one record per --tick), metric-<name>.jsonl, log.txt (the console), TensorBoard events
when the package is there, and their truncation on resume; plus the pieces behind them."""
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stylenas.datasets import make_demo_data
from stylenas.train.commands import train_command
from stylenas.train.distributed import Dist
from stylenas.train.runlog import (NVLABS_KEYS, Console, RunLog, TickStats, merge_moments, stats_kimg,
                                   stats_record, summarise, tick_line, tick_series)

pytestmark = pytest.mark.usefixtures("one_thread")

# 8 px, batch 4: one step per 0.004 kimg tick, tens of milliseconds each on one thread
TINY = ["--cfg", "tiny", "--batch", "4", "--mbstd-group", "2", "--device", "cpu", "--workers", "0",
        "--genotype", "stylegan2", "--resolution", "8"]
# the fields stylegan2-ada-pytorch's training_loop.py reports once per tick
TICK_KEYS = {"Progress/tick", "Progress/kimg", "Timing/total_sec", "Timing/sec_per_tick", "Timing/sec_per_kimg",
             "Timing/maintenance_sec", "Timing/total_hours", "Timing/total_days", "Resources/cpu_mem_gb"}


@pytest.fixture(scope="module")
def demo_lmdb(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [8], 40, progress=False)
    return path


def invoke(args):
    return CliRunner().invoke(train_command, [str(a) for a in args])


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def mean(record, key):
    return record[key]["mean"]


# ------------------------------------------------------------------------------------------ pieces

def test_tick_stats_are_the_moments_of_every_reported_element():
    values = [torch.tensor([0.5, -1.0, 2.0, 0.25]), torch.tensor([[3.0], [1.5]]), 4.0]
    stats = TickStats()
    for value in values:
        stats.add("score", value)
    stats.add("loss", torch.tensor(0.75))
    moments = stats.collect(Dist())
    flat = np.array([0.5, -1.0, 2.0, 0.25, 3.0, 1.5, 4.0])
    assert moments["score"][0] == 7
    summary = summarise(*moments["score"])
    assert summary["num"] == 7
    assert summary["mean"] == pytest.approx(flat.mean(), rel=1e-6)
    assert summary["std"] == pytest.approx(flat.std(), rel=1e-5)  # population std, as NVlabs' collector
    assert summarise(*moments["loss"]) == {"num": 1, "mean": 0.75, "std": 0.0}
    assert stats.collect(Dist()) == {}  # collecting starts a new interval
    nothing = summarise(0, 0.0, 0.0)
    assert nothing["num"] == 0 and math.isnan(nothing["mean"]) and math.isnan(nothing["std"])
    total = merge_moments({}, moments)
    merge_moments(total, {"loss": [1, 0.25, 0.0625]})
    assert summarise(*total["loss"])["mean"] == pytest.approx(0.5)
    stats.add("loss", 1.0)
    assert stats.means(Dist()) == {"loss": 1.0}  # the trainer accumulator's interface


def test_stats_record_layout_names_and_console_line():
    moments = {"loss_G": [2, 1.0, 0.5], "loss_D": [1, 1.25, 1.5625], "D_accuracy": [1, 0.5, 0.25]}
    record = stats_record(moments, {"Progress/tick": 3, "Progress/kimg": 12.0, "Timing/total_sec": 3725.0,
                                    "Timing/sec_per_tick": 40.0, "Timing/sec_per_kimg": 10.0,
                                    "Timing/maintenance_sec": 1.5, "Resources/cpu_mem_gb": 2.5,
                                    "Progress/augment": 0.125}, timestamp=123.0)
    assert list(record)[-1] == "timestamp" and record["timestamp"] == 123.0
    assert record["Loss/G/loss"] == {"num": 2, "mean": 0.5, "std": 0.0}
    assert record["Loss/D/loss"] == {"num": 1, "mean": 1.25, "std": 0.0}
    assert record["Stats/D_accuracy"]["mean"] == 0.5  # no NVlabs name: ours under Stats/
    assert record["Progress/kimg"] == {"num": 1, "mean": 12.0, "std": 0.0} and stats_kimg(record) == 12.0
    keys = [k for k in record if k != "timestamp"]
    assert keys == sorted(keys)
    assert NVLABS_KEYS["r1_penalty"] == "Loss/r1_penalty" and NVLABS_KEYS["augment_p"] == "Progress/augment"
    line = tick_line(record)
    assert line.split()[:4] == ["tick", "3", "kimg", "12.000"]
    for field in ("time 1h 02m", "sec/tick 40.0", "sec/kimg 10.00", "maintenance 1.5", "cpumem 2.50",
                  "augment 0.125", "loss/G 0.5", "loss/D 1.25"):
        assert field in line, field
    assert "gpumem" not in line  # no GPU, no field
    (flat,) = tick_series([record])  # back under our names, for plot_series
    assert flat["kimg"] == 12.0 and flat["loss_G"] == 0.5 and flat["D_accuracy"] == 0.5 and flat["augment_p"] == 0.125


def test_runlog_truncates_by_a_nested_key_and_console_tees(tmp_path):
    path = tmp_path / "stats.jsonl"
    log = RunLog(path, key=stats_kimg)
    for kimg in (4.0, 8.0, 12.0):
        log.write(stats_record({}, {"Progress/kimg": kimg}))
    log.close()
    path.write_text(path.read_text() + '{"Progress/kimg": {"num": 1, "mea')  # a line cut by a kill
    RunLog(path, resume_at=8.0, key=stats_kimg).close()
    assert [stats_kimg(r) for r in read_jsonl(path)] == [4.0, 8.0]
    said = []
    console = Console(said.append)
    console("before the folder is known")
    console.open(tmp_path / "log.txt", append=False)
    console("tick 0")
    console.close()
    assert said == ["before the folder is known", "tick 0"]
    assert (tmp_path / "log.txt").read_text() == "before the folder is known\ntick 0\n"


# -------------------------------------------------------------------------------------- a training run

def test_a_run_writes_one_stats_record_per_tick_and_log_txt(demo_lmdb, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as without the optional package
    out = tmp_path / "run"
    result = invoke(["--data", demo_lmdb, "--outdir", out, "--kimg", "0.016", "--snap", "0.008", "--tick", "0.004",
                     *TINY])
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "stats.jsonl")
    assert [mean(r, "Progress/kimg") for r in records] == pytest.approx([0.004, 0.008, 0.012, 0.016])
    assert [mean(r, "Progress/tick") for r in records] == [0, 1, 2, 3]
    for record in records:
        assert TICK_KEYS | {"Loss/G/loss", "Loss/D/loss", "Loss/scores/real", "Loss/scores/fake", "timestamp"} \
            <= set(record)
        assert "Resources/peak_gpu_mem_gb" not in record  # a CPU run
        for key, value in record.items():
            if key != "timestamp":
                assert set(value) == {"num", "mean", "std"} and value["num"] >= 1, key
        assert record["Loss/scores/real"]["num"] % 4 == 0  # one step of 4 images per tick, every score counted
        assert record["Loss/scores/real"]["std"] > 0  # the spread of the 4 scores, not one mean per step
        assert 0 < mean(record, "Loss/G/loss") < 10 and 0 < mean(record, "Loss/D/loss") < 10  # softplus sums
        assert mean(record, "Timing/sec_per_kimg") == pytest.approx(mean(record, "Timing/sec_per_tick") / 0.004)
    assert "Loss/r1_penalty" in records[0] and "Loss/pl_penalty" in records[0]  # the lazy regularisers of step 0
    totals = [mean(r, "Timing/total_sec") for r in records]
    assert totals == sorted(totals)
    assert totals[-1] >= sum(mean(r, "Timing/sec_per_tick") for r in records) - 1e-6
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)
    # the snapshot lines of log.jsonl average the ticks since the previous snapshot
    snapshots = read_jsonl(out / "log.jsonl")
    assert [s["kimg"] for s in snapshots] == [0.008, 0.016]
    for snap, ticks in zip(snapshots, (records[:2], records[2:])):
        num = sum(t["Loss/scores/real"]["num"] for t in ticks)
        weighted = sum(t["Loss/scores/real"]["num"] * mean(t, "Loss/scores/real") for t in ticks) / num
        assert snap["score_real"] == pytest.approx(weighted, rel=1e-5)
        assert snap["loss_G"] == pytest.approx(sum(mean(t, "Loss/G/loss") for t in ticks) / 2, rel=1e-5)
    # log.txt holds the console: every tick line, in order
    log_lines = (out / "log.txt").read_text().splitlines()
    tick_lines = [line for line in log_lines if line.startswith("tick ")]
    assert [line.split()[:4] for line in tick_lines] == [["tick", str(i), "kimg", f"{0.004 * (i + 1):.3f}"]
                                                         for i in range(4)]
    assert all(line in result.output for line in log_lines)
    assert log_lines[0].startswith("training ") and log_lines[-1].startswith("done: ")
    assert not list(out.glob("events.out.tfevents.*"))  # no tensorboard: no event file, no error


def test_resume_continues_stats_without_duplicate_ticks_and_appends_log_txt(demo_lmdb, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "run"
    common = ["--data", demo_lmdb, "--outdir", out, "--snap", "0.008", "--tick", "0.004", *TINY]
    assert invoke(["--kimg", "0.012", *common]).exit_code == 0
    first_log = (out / "log.txt").read_text()
    # a kill after the 0.012 tick but before its checkpoint: the resume point is the 0.008 snapshot
    shutil.copy(out / "network-snapshot-000000.008.pt", out / "checkpoint.pt")
    before = read_jsonl(out / "stats.jsonl")
    result = invoke(["--kimg", "0.016", "--resume", *common])
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "stats.jsonl")
    assert [mean(r, "Progress/kimg") for r in records] == pytest.approx([0.004, 0.008, 0.012, 0.016])
    assert [mean(r, "Progress/tick") for r in records] == [0, 1, 2, 3]
    assert records[:2] == before[:2]  # the ticks up to the checkpoint are kept as written
    assert mean(records[2], "Timing/total_sec") >= mean(records[1], "Timing/total_sec")  # the clock continues
    text = (out / "log.txt").read_text()
    assert text.startswith(first_log) and "resumed " in text[len(first_log):]
    assert text.count("\ntick 2 ") == 2  # the replayed tick is in the console log of both runs


def test_the_error_that_ends_a_run_is_in_log_txt(demo_lmdb, tmp_path, monkeypatch):
    import stylenas.train.run as run

    def disk_full(state, path):
        raise OSError(f"{path}: No space left on device")

    monkeypatch.setattr(run, "save_checkpoint", disk_full)
    out = tmp_path / "run"
    result = invoke(["--data", demo_lmdb, "--outdir", out, "--kimg", "0.008", "--snap", "0.004", "--tick", "0.004",
                     *TINY])
    assert result.exit_code != 0
    lines = (out / "log.txt").read_text().splitlines()
    assert lines[-2].startswith("tick 0 ") and lines[-1].startswith("OSError: ") and "No space left" in lines[-1]


def test_bad_tick_is_one_line_error(demo_lmdb, tmp_path):
    result = invoke(["--data", demo_lmdb, "--outdir", tmp_path / "run", "--kimg", "0.004", "--tick", "0", *TINY])
    assert result.exit_code != 0 and "--tick must be a positive number of kimg, got 0" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_metric_jsonl_per_evaluation_in_nvlabs_layout(demo_lmdb, tmp_path, monkeypatch):
    """--metrics fid50k_full: one metric-fid50k_full.jsonl line per snapshot (random Inception weights
    in pytorch-fid's layout stand in for the real file), the value log.jsonl holds; dropped past a
    resumed checkpoint."""
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import write_weights

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setenv("STYLENAS_CACHE", str(tmp_path / "cache"))
    weights = write_weights(tmp_path / "weights")
    small = tmp_path / "small.lmdb"  # few images: the Inception network is slow on a CPU
    make_demo_data(str(small), [8], 6, progress=False)
    out = tmp_path / "run"
    common = ["--data", small, "--outdir", out, "--snap", "0.004", "--tick", "0.004", "--metrics", "fid50k_full",
              "--fid-num", "8", "--inception", weights, *TINY]
    result = invoke(["--kimg", "0.008", *common])
    assert result.exit_code == 0, result.output
    lines = read_jsonl(out / "metric-fid50k_full.jsonl")
    fids = [r["fid"] for r in read_jsonl(out / "log.jsonl")]
    assert [line["results"] for line in lines] == [{"fid50k_full": f} for f in fids]
    for line, snapshot in zip(lines, ("network-snapshot-000000.004.pt", "network-snapshot-000000.008.pt")):
        assert {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"} <= set(line)
        assert line["metric"] == "fid50k_full" and line["num_gpus"] == 1 and line["total_time"] > 0
        assert line["snapshot_pkl"] == snapshot and (out / snapshot).is_file()
    shutil.copy(out / "network-snapshot-000000.004.pt", out / "checkpoint.pt")
    assert invoke(["--kimg", "0.008", "--resume", *common]).exit_code == 0
    again = read_jsonl(out / "metric-fid50k_full.jsonl")
    assert [line["kimg"] for line in again] == [0.004, 0.008] and again[0] == lines[0]


def test_tensorboard_events_when_the_package_is_installed(demo_lmdb, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = invoke(["--data", demo_lmdb, "--outdir", out, "--kimg", "0.008", "--snap", "0.008", "--tick", "0.004",
                     *TINY])
    assert result.exit_code == 0, result.output
    (events,) = out.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(out))
    accumulator.Reload()
    scalars = accumulator.Scalars("Loss/G/loss")
    records = read_jsonl(out / "stats.jsonl")
    assert [s.step for s in scalars] == [4, 8]  # real images shown
    assert [s.value for s in scalars] == pytest.approx([mean(r, "Loss/G/loss") for r in records], rel=1e-6)
    assert "Progress/kimg" in accumulator.Tags()["scalars"]
