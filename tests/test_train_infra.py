"""The trainer infrastructure shared by the StyleGAN2 and conventional trainers: checkpoints,
RNG capture, log.jsonl, snapshot names, plots, single-process distributed helpers."""
import json
import random

import numpy as np
import pytest
import torch

from stylenas.train.checkpoint import (CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint,
                                       snapshot_files)
from stylenas.train.distributed import init_distributed
from stylenas.train.runlog import KeepBest, Progress, RunLog, plot_series, save_image_grid, snapshot_name
from helpers import launch, one_thread_env


def minimal_state(**extra):
    net = torch.nn.Linear(3, 2)
    return {"kind": "stylegan2", "G": net.state_dict(), "D": net.state_dict(), "G_ema": net.state_dict(),
            "counters": {"step": 3, "kimg": 0.012}, "rng": [capture_rng()], "genotype": {"layers": []},
            "config": {"batch": 4}, **extra}


def test_checkpoint_round_trip_weights_only(tmp_path):
    state = minimal_state()
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    again = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # the contract: no pickled code
    assert again["counters"] == {"step": 3, "kimg": 0.012}
    assert torch.equal(again["G"]["weight"], state["G"]["weight"])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"] == {"batch": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_checkpoint_errors_name_the_file_and_the_fallback(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    save_checkpoint(minimal_state(), tmp_path / "network-snapshot-000002.pt")
    save_checkpoint(minimal_state(), tmp_path / "network-snapshot-000000.5.pt")
    assert [p.name for p in snapshot_files(tmp_path)] == ["network-snapshot-000000.5.pt",
                                                          "network-snapshot-000002.pt"]
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert "checkpoint.pt: not a readable checkpoint" in str(error.value)
    assert "network-snapshot-000002.pt can be used" in str(error.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a StyleNAS training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="a stylegan2 checkpoint, expected a conventional one"):
        load_checkpoint(tmp_path / "network-snapshot-000002.pt", kind="conventional")
    with pytest.raises(CheckpointError, match="'kind'"):
        save_checkpoint({"G": {}}, tmp_path / "bad.pt")


def test_rng_capture_restore_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    expected = (torch.rand(3), np.random.randn(3), random.random())
    save_checkpoint(minimal_state(rng=[state]), tmp_path / "c.pt")
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"][0])
    got = (torch.rand(3), np.random.randn(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_runlog_drops_lines_after_the_resume_point(tmp_path):
    log = RunLog(tmp_path / "log.jsonl")
    for kimg in (0.5, 1.0, 1.5, 2.0):
        log.write({"kimg": kimg, "loss": kimg * 2})
    log.close()
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"kimg": 2.5, "lo')  # a line cut by a kill
    log = RunLog(tmp_path / "log.jsonl", resume_at=1.0)
    assert [r["kimg"] for r in log.records()] == [0.5, 1.0]
    log.write({"kimg": 1.5})
    assert [r["kimg"] for r in log.records()] == [0.5, 1.0, 1.5]
    log.close()
    assert RunLog(tmp_path / "log.jsonl").records() == []  # a fresh run starts a fresh log


def test_snapshot_names_keep_fractions():
    assert snapshot_name(0) == "network-snapshot-000000.pt"
    assert snapshot_name(120) == "network-snapshot-000120.pt"
    assert snapshot_name(0.25) == "network-snapshot-000000.25.pt"
    assert snapshot_name(3.5) != snapshot_name(3.0)


def test_progress_line_has_eta():
    line = Progress(10.0, start=2.0).line(2.0, loss=0.5)
    assert line.startswith("kimg 2.000/10 (20%)") and "ETA ?" in line and "loss 0.5" in line


def test_grid_plot_and_keep_best(tmp_path):
    from PIL import Image

    save_image_grid(torch.linspace(-1, 1, 4 * 3 * 8 * 8).view(4, 3, 8, 8), tmp_path / "grid.png", nrow=2)
    assert Image.open(tmp_path / "grid.png").size == (2 * 9 + 1, 2 * 9 + 1)
    records = [{"kimg": i, "loss_G": 1.0 / (i + 1), "loss_D": float("nan")} for i in range(5)]
    assert plot_series(records, ["loss_G", "loss_D"], tmp_path / "losses.png")
    assert Image.open(tmp_path / "losses.png").size[0] > 0
    assert not plot_series(records, ["loss_D"], tmp_path / "none.png")
    saved = []
    best = KeepBest(tmp_path / "best.pt", "fid")
    assert best.update(10.0, "a", lambda s, p: saved.append(s))
    assert not best.update(12.0, "b", lambda s, p: saved.append(s))
    assert best.update(9.0, "c", lambda s, p: saved.append(s))
    assert saved == ["a", "c"] and best.state_dict()["best"] == 9.0


def test_single_process_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = init_distributed("cpu")
    assert (d.rank, d.world_size, d.is_main, d.active) == (0, 1, True, False)
    x = torch.arange(6.0)
    assert torch.equal(d.shard(x), x) and torch.equal(d.all_reduce_mean(x.clone()), x)
    assert d.gather_objects({"a": 1}) == [{"a": 1}] and d.broadcast_object(5) == 5
    with pytest.raises(ValueError, match="--batch 5 must be divisible"):
        type(d)(world_size=2).local_batch(5)
    assert json.dumps(d.local_batch(4)) == "4"


TWO_PROCESS_SCRIPT = r'''
import json, sys
import torch
from stylenas.train.distributed import init_distributed

d = init_distributed("cpu")
assert d.world_size == 2 and d.backend == "gloo" and d.device.type == "cpu"
out = {"rank": d.rank}
out["gathered"] = d.gather_objects({"rank": d.rank})
out["broadcast"] = d.broadcast_object("from rank 0" if d.is_main else None)
out["mean"] = d.all_reduce_mean(torch.tensor([float(d.rank)])).item()
out["shard"] = d.shard(list(range(6)))
p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
p.grad = torch.full([2], float(d.rank + 1))  # q has no gradient on either process
d.sync_gradients([p, q])
out["grad"], out["q_grad"] = p.grad.tolist(), q.grad
d.barrier()
if d.is_main:
    json.dump(out, open(sys.argv[1], "w"))
d.close()
'''


@pytest.mark.slow
def test_two_process_helpers_under_torchrun(tmp_path):
    script = tmp_path / "helpers.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    env = one_thread_env()
    launch(script, tmp_path / "out.json", processes=2, env=env, timeout=300)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["gathered"] == [{"rank": 0}, {"rank": 1}] and out["broadcast"] == "from rank 0"
    assert out["mean"] == 0.5 and out["shard"] == [0, 2, 4]
    assert out["grad"] == [1.5, 1.5] and out["q_grad"] is None  # averaged; no gradient stays none


EXIT_WITHOUT_CLOSE_SCRIPT = r'''
import atexit, json, os, sys
import torch
import torch.distributed as dist
from stylenas.train.distributed import init_distributed

threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
# at-exit handlers run last-registered first: this one looks after the group's own handler
atexit.register(lambda: json.dump({"initialized": dist.is_initialized(), "before": before, "after": threads()},
                                  open(f"{sys.argv[1]}.{os.environ['RANK']}", "w")))
d = init_distributed("cpu")
started = threads()
d.all_reduce_mean(torch.ones(3))
assert started > before, "gloo runs worker threads"
sys.exit(0)  # as a command that fails on the way out: no d.close()
'''


@pytest.mark.slow
def test_a_gloo_group_left_open_is_destroyed_while_python_is_alive(tmp_path):
    """Its worker threads are joined at exit, before interpreter shutdown, where a late one aborts
    the process ("terminate called without an active exception", seen in CI under load)."""
    script = tmp_path / "exit.py"
    script.write_text(EXIT_WITHOUT_CLOSE_SCRIPT)
    env = one_thread_env()
    launch(script, tmp_path / "exit.json", processes=2, env=env, timeout=300)
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"exit.json.{rank}").read_text())
        assert not seen["initialized"] and seen["after"] == seen["before"], seen


TRAINER_SCRIPT = r'''
import sys
import torch
from stylenas.search.genotype import Genotype
from stylenas.train.config import resolve_config
from stylenas.train.distributed import init_distributed
from stylenas.train.stylegan2 import StyleGAN2Trainer, build_networks

d = init_distributed("cpu")
config = resolve_config("tiny", 8, batch=8, batch_gpu=int(sys.argv[2]), mbstd_group=2, channel_base=64, channel_max=8,
                        z_dim=8, w_dim=8, pl_weight=2.0, gamma=1.0)
torch.manual_seed(0)
trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, d)
initial = {k: v.clone() for k, v in trainer.G.state_dict().items()}
reals = torch.rand(5, 8, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
for step in range(5):  # path length at steps 0 and 4, R1 at step 0
    trainer.step(d.shard(reals[step]))
state = trainer.state_dict()
if d.is_main:
    torch.save({"initial": initial, **{k: state[k] for k in ("G", "D", "G_ema", "pl_mean")}}, sys.argv[1])
d.close()
'''


@pytest.mark.slow
def test_two_processes_train_what_one_trains_with_path_length_and_rounds(tmp_path):
    """StyleGAN2Trainer under torchrun with 2 gloo processes (batch 8, --batch-gpu 2: two rounds each)
    ends where 1 process with batch 8 and --batch-gpu 4 ends, path length and R1 on: the draws are
    made per global round, and the path-length mean is all-reduced with its gradient."""
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER_SCRIPT)
    env = one_thread_env()
    launch(script, tmp_path / "one.pt", 4, processes=1, env=env, timeout=300)
    launch(script, tmp_path / "two.pt", 2, processes=2, env=env, timeout=300)
    one, two = torch.load(tmp_path / "one.pt", weights_only=True), torch.load(tmp_path / "two.pt", weights_only=True)
    assert one["pl_mean"] > 0 and torch.allclose(one["pl_mean"], two["pl_mean"], rtol=1e-5)
    for net in ("G", "D", "G_ema"):
        for name, value in one[net].items():
            assert torch.allclose(value, two[net][name], atol=1e-5), (net, name, (value - two[net][name]).abs().max())
    # five steps move the weights by far more than the tolerance: the comparison has teeth
    assert max((one["G"][k] - v).abs().max() for k, v in one["initial"].items()) > 1e-3
