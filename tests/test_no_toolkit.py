"""A machine without a CUDA toolkit (torch from a wheel, no nvcc, no CUDA headers): the demo's
kernel-check step says in one line that the kernels were not checked and why, and the ops give
the references' results. The toolkit is hidden in a subprocess: CUDA_HOME names an empty folder,
no folder on PATH holds nvcc, and the extension cache is new."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_toolkit_env(tmp_path):
    empty = tmp_path / "no-cuda"
    empty.mkdir()
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvcc").exists()]
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_PATH", "STYLENAS_OPS", "STYLENAS_CSRC")}
    env.update(CUDA_HOME=str(empty), PATH=os.pathsep.join(path), STYLENAS_CACHE=str(tmp_path / "cache"),
               PYTHONWARNINGS="default")
    return env


def demo_check_command():
    """The demo's kernel-check step, as the Makefile runs it, with this Python for $(PY)."""
    lines = [line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if "stylenas.ops check" in line]
    assert len(lines) == 1, lines
    return [sys.executable if word == "$(PY)" else word for word in shlex.split(lines[0])]


@pytest.mark.slow
def test_demo_check_step_says_in_one_line_why_the_kernels_were_not_checked(no_toolkit_env):
    command = demo_check_command()
    assert command[1:] == ["-m", "stylenas.ops", "check", "--auto"]
    run = subprocess.run(command, cwd=ROOT, env=no_toolkit_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("kernels not checked: ") and "PyTorch references" in lines[0]
    assert f"CUDA_HOME={no_toolkit_env['CUDA_HOME']} is not a CUDA toolkit" in lines[0]
    assert "include/cuda_runtime.h" in lines[0]
    assert not Path(no_toolkit_env["STYLENAS_CACHE"]).exists()  # no build was tried


OP_SCRIPT = r"""
import json, warnings
import torch
from stylenas.ops import extension, setup_filter, upfirdn2d

if torch.cuda.is_available():
    device = torch.device("cuda")
else:  # no GPU either: let the CPU tensor ask for the kernel, as a CUDA tensor would
    device = torch.device("cpu")
    extension._on_cuda = lambda tensor: True
x = torch.randn([2, 3, 8, 8], generator=torch.Generator().manual_seed(0)).to(device)
f = setup_filter([1, 3, 3, 1], device=device)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    auto = [upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl="auto") for _ in range(2)]
ref = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl="ref")
print(json.dumps({"equal": all(torch.equal(a, ref) for a in auto), "shape": list(ref.shape),
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.slow
def test_an_op_with_impl_auto_gives_the_reference_result(no_toolkit_env):
    run = subprocess.run([sys.executable, "-c", OP_SCRIPT], cwd=ROOT, env=no_toolkit_env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["equal"] and result["shape"] == [2, 3, 16, 16]
    messages = [m for m in result["warnings"] if "stylenas" in m]
    assert len(messages) == 1, messages  # once, not per call
    assert re.search(r"cannot be built here: .*CUDA_HOME=.* is not a CUDA toolkit", messages[0])
    assert "STYLENAS_OPS=ref" in messages[0]
    assert not Path(no_toolkit_env["STYLENAS_CACHE"]).exists()
