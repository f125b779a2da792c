"""Small helpers shared by test modules (`from helpers import ...`; pytest puts tests/ on sys.path)."""
import torch


def images(n=24, size=16, seed=0):
    """n random uint8 [3, size, size] images, the same for the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen) for _ in range(n)]


def quiet(line):
    """A log callback that drops its line."""


def one_thread_env():
    """The environment for a test script run in a subprocess: this checkout first on PYTHONPATH,
    one OpenMP thread per process (two gloo processes share the CI machine's cores)."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def launch(script, *args, processes=1, env=None, timeout=600):
    """Run the Python ``script`` with ``args`` in a subprocess, under torchrun (standalone rendezvous,
    gloo on the CPU) when ``processes`` > 1; fails the test with the tail of stderr if it fails."""
    import subprocess
    import sys

    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    done = subprocess.run(launcher + [str(script)] + [str(a) for a in args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def write_weights(directory):
    """Random FID Inception weights saved under pytorch-fid's file name in ``directory`` (the real
    ones cannot be downloaded here); returns the path."""
    from stylenas.metrics.inception import WEIGHTS_FILE, random_weights

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS_FILE
    torch.save(random_weights(), path)
    return path
