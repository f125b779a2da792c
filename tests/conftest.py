import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def emulated_extension():
    """The kernels built by the host compiler over csrc/emulation.h (once per session, cached like
    the real extension): they run on CPU tensors, so the CUDA code paths are exercised without a GPU."""
    from stylenas.ops import extension

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler for the host-emulated kernels")
    if extension.find_cuda_home() is None:
        pytest.skip("no CUDA toolkit headers for the host-emulated kernels")
    return extension.build(emulate=True)


@pytest.fixture(params=[pytest.param("cuda", marks=pytest.mark.cuda), "emulated"])
def kernel_device(request, monkeypatch):
    """Where the kernel tests run: a GPU with the real extension, or the CPU with the emulated one
    (the ops then send CPU tensors to the kernels)."""
    from stylenas.ops import extension

    monkeypatch.delenv("STYLENAS_OPS", raising=False)
    extension.reset()
    if request.param == "cuda":
        yield torch.device("cuda")
    else:
        request.getfixturevalue("emulated_extension")  # built once per session
        extension.activate_emulation()
        yield torch.device("cpu")
    extension.reset()


@pytest.fixture
def clean_extension(monkeypatch, tmp_path):
    """A private extension cache and a fresh build/self-check state, restored afterwards."""
    from stylenas.ops import extension

    monkeypatch.setenv("STYLENAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("STYLENAS_OPS", raising=False)
    extension.reset()
    yield extension
    extension.reset()


class KernelHarness:
    """The per-element math of csrc/*.cuh compiled for the CPU (tests/csrc_harness.cpp)."""

    def __init__(self, library_path):
        self.lib = ctypes.CDLL(str(library_path))

    @staticmethod
    def _ptr(array):
        return array.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def upfirdn2d(self, x, h, up, down, pad):
        """x [N, C, H, W] float64 array, h the 2-D correlation filter; up/down (x, y); pad (x0, x1, y0, y1)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        h = np.ascontiguousarray(h, dtype=np.float64)
        n, c, in_h, in_w = x.shape
        f_h, f_w = h.shape
        out_h = (in_h * up[1] + pad[2] + pad[3] - f_h) // down[1] + 1
        out_w = (in_w * up[0] + pad[0] + pad[1] - f_w) // down[0] + 1
        y = np.zeros([n, c, out_h, out_w])
        i = ctypes.c_int
        self.lib.harness_upfirdn2d(self._ptr(x), self._ptr(h), self._ptr(y), ctypes.c_int64(n * c), i(in_h),
                                   i(in_w), i(out_h), i(out_w), i(up[0]), i(up[1]), i(down[0]), i(down[1]),
                                   i(pad[0]), i(pad[2]), i(f_h), i(f_w))
        return y

    def bias_act(self, z, dy, act, order, alpha, gain, clamp):
        z = np.ascontiguousarray(z, dtype=np.float64)
        dy = np.ascontiguousarray(dy, dtype=np.float64)
        out = np.zeros_like(z)
        self.lib.harness_bias_act(self._ptr(z), self._ptr(dy), self._ptr(out), ctypes.c_int64(z.size),
                                  ctypes.c_int(act), ctypes.c_int(order), ctypes.c_double(alpha),
                                  ctypes.c_double(gain), ctypes.c_double(clamp))
        return out


@pytest.fixture(scope="session")
def kernel_harness(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel harness")
    library = tmp_path_factory.mktemp("harness") / "harness.so"
    subprocess.run([compiler, "-O1", "-std=c++17", "-shared", "-fPIC", f"-I{ROOT / 'csrc'}",
                    str(ROOT / "tests" / "csrc_harness.cpp"), "-o", str(library)], check=True)
    return KernelHarness(library)
