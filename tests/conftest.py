import shutil

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def emulation_compiler():
    """(g++, CUDA include folder) for builds over csrc/emulation.h; skips the test, naming what is
    missing, without them."""
    from stylenas.ops import extension

    problem = extension.toolkit_problem(emulate=True)
    if problem:
        pytest.skip(f"the host emulation of the kernels cannot be built: {problem}")
    if shutil.which("g++") is None:
        pytest.skip("the host emulation of the kernels needs g++ (not on PATH)")
    return shutil.which("g++"), extension.find_cuda_home() / "include"


@pytest.fixture(scope="session")
def cuda_extension():
    """The real extension for the GPU tests; they skip where this machine cannot build it (no nvcc,
    no CUDA headers, ...), but a build that fails where it can is an error."""
    from stylenas.ops import extension

    problem = extension.toolkit_problem()
    if problem:
        pytest.skip(f"the CUDA extension cannot be built here: {problem}")
    return extension.build()


@pytest.fixture(scope="session")
def emulated_extension(emulation_compiler):
    """The kernels built by the host compiler over csrc/emulation.h (once per session, cached like
    the real extension): they run on CPU tensors, so the CUDA code paths are exercised without a GPU."""
    from stylenas.ops import extension

    return extension.build(emulate=True)


@pytest.fixture(params=[pytest.param("cuda", marks=pytest.mark.cuda), "emulated"])
def kernel_device(request, monkeypatch):
    """Where the kernel tests run: a GPU with the real extension, or the CPU with the emulated one
    (the ops then send CPU tensors to the kernels)."""
    from stylenas.ops import extension

    monkeypatch.delenv("STYLENAS_OPS", raising=False)
    extension.reset()
    if request.param == "cuda":
        request.getfixturevalue("cuda_extension")
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


@pytest.fixture
def one_thread():
    """Tiny networks run several times faster on one thread on a shared CPU (no spinning OpenMP
    workers); modules of such tests say `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
