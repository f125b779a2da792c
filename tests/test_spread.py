"""conventional.spread: job i's result depends on (seed, i) only, so 2 processes give 1 process's list."""
import json

import numpy as np
import torch

from stylenas.conventional.spread import job_seed, seeded, spread_jobs
from helpers import launch

SCRIPT = r"""
import json, sys, torch, numpy as np
from stylenas.train.distributed import init_distributed
from stylenas.conventional.spread import spread_jobs
dist = init_distributed("cpu")
def evaluate(job, index):   # a tiny "child model": random init + a few steps, scored
    layer = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(job):
        x = torch.randn(8, 4)
        loss = (layer(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return [float(loss), float(np.random.rand())]
results = spread_jobs([1, 2, 3, 4, 5], evaluate, seed=7, dist=dist)
if dist.is_main:
    json.dump(results, open(sys.argv[1], "w"))
dist.close()
"""


def run_script(tmp_path, processes):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"out{processes}.json"
    launch(script, out, processes=processes, timeout=300)
    return json.loads(out.read_text())


def test_two_processes_give_the_one_process_results(tmp_path):
    one = run_script(tmp_path, 1)
    two = run_script(tmp_path, 2)
    assert len(one) == 5 and one == two


def test_results_depend_on_seed_and_index_only():
    def evaluate(job, index):
        return (job, index, torch.rand(()).item())
    first = spread_jobs(["a", "b", "c"], evaluate, seed=3)
    again = spread_jobs(["a", "b", "c"], evaluate, seed=3)
    other = spread_jobs(["a", "b", "c"], evaluate, seed=4)
    assert first == again and [r[:2] for r in first] == [("a", 0), ("b", 1), ("c", 2)]
    assert len({r[2] for r in first}) == 3 and [r[2] for r in other] != [r[2] for r in first]
    assert first[1][2] == spread_jobs(["x", "b"], evaluate, seed=3)[1][2]  # the same index, the same stream


def test_seeded_restores_the_callers_streams():
    torch.manual_seed(0)
    np.random.seed(0)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(0)
    np.random.seed(0)
    with seeded(job_seed(1, 2)):
        torch.rand(100), np.random.rand(100)
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert job_seed(1, 2) != job_seed(2, 1) and 0 <= job_seed(10**9, 10**9) < 2**63
