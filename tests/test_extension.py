"""The lazy build, the cache key, the one-warning fallback and the per-op self-check dispatch.

No GPU here: `_on_cuda` is patched so that CPU tensors take the CUDA dispatch path, and a
fake extension built from the kernels' PyTorch contracts stands in for the compiled one.
"""
import importlib
import shutil
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from stylenas.ops import bias_act, modulated_conv2d, setup_filter, upfirdn2d

# the package exports functions under the modules' names
bias_act_module = importlib.import_module("stylenas.ops.bias_act")
modconv_module = importlib.import_module("stylenas.ops.modulated_conv2d")
upfirdn2d_module = importlib.import_module("stylenas.ops.upfirdn2d")

ROOT = Path(__file__).resolve().parents[1]


def run_all_ops():
    torch.manual_seed(0)
    x = torch.randn([2, 3, 8, 8])
    f = setup_filter([1, 3, 3, 1])
    weight, styles = torch.randn([4, 3, 3, 3]), torch.randn([2, 3])
    with torch.no_grad():  # the grouped form, which uses the modulation kernel
        modconv = modulated_conv2d(x, weight, styles, up=2, padding=1)
    return {
        "upfirdn2d": upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1]),
        "bias_act": bias_act(x, torch.randn(3), act="lrelu", clamp=0.5),
        "modulated_conv2d": modconv,
    }


def reference_results():
    from stylenas.ops import extension

    saved = extension._on_cuda
    extension._on_cuda = lambda t: False
    try:
        return run_all_ops()
    finally:
        extension._on_cuda = saved


def fake_extension(broken_op=None):
    def modulate(weight, styles, demodulate, eps):
        return modconv_module.modulate_weight_ref(weight, styles, demodulate, eps)

    ops = {"upfirdn2d": upfirdn2d_module.reference_kernel, "bias_act": bias_act_module.reference_kernel,
           "modulate": modulate}
    if broken_op:
        good = ops[broken_op]

        def wrong_by_one_percent(*args):
            out = good(*args)
            return (out[0] * 1.01, out[1]) if isinstance(out, tuple) else out * 1.01

        ops[broken_op] = wrong_by_one_percent
    return SimpleNamespace(**ops)


def broken_sources(tmp_path):
    src = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", src)
    bindings = src / "bindings.cpp"
    bindings.write_text("#error deliberately broken source\n" + bindings.read_text())
    return src


def copied_sources(tmp_path, note):
    """A private copy of csrc/ whose cache key differs from the real one's."""
    src = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", src)
    (src / "common.h").write_text((src / "common.h").read_text() + f"\n// {note}\n")
    return src


def test_cache_key_tracks_sources_headers_and_arch(tmp_path):
    from stylenas.ops import extension

    src = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", src)
    key = extension.cache_key(src, arch="8.0")
    assert key == extension.cache_key(src, arch="8.0")
    assert extension.cache_key(src, arch="9.0") != key
    header = src / "common.h"
    header.write_text(header.read_text() + "\n// a change in a header only\n")
    assert extension.cache_key(src, arch="8.0") != key


def test_cache_key_tracks_flags_compilers_and_the_build_code(monkeypatch, tmp_path):
    from stylenas.ops import extension

    src = copied_sources(tmp_path, "key test")
    key = extension.cache_key(src, arch="8.0")
    emulated = extension.cache_key(src, emulate=True)
    assert emulated.endswith("_emulated") and emulated[:16] != key
    changes = [
        ("CFLAGS", ["-O2"]),
        ("CUDA_CFLAGS", ["-O3", "--use_fast_math"]),
        ("compiler_versions", lambda emulate=False: "Cuda compilation tools, release 13.1"),
    ]
    for name, value in changes:
        with monkeypatch.context() as patch:
            patch.setattr(extension, name, value)
            assert extension.cache_key(src, arch="8.0") != key, name
    with monkeypatch.context() as patch:
        patch.setattr(extension, "EMULATED_CFLAGS", extension.EMULATED_CFLAGS + ["-DEXTRA"])
        assert extension.cache_key(src, emulate=True) != emulated
        assert extension.cache_key(src, arch="8.0") == key
    with monkeypatch.context() as patch:
        patch.setenv("NVCC_APPEND_FLAGS", "-lineinfo")
        assert extension.cache_key(src, arch="8.0") != key
    build_code = tmp_path / "extension.py"
    build_code.write_text(Path(extension.__file__).read_text() + "\n# an edit of the build code only\n")
    monkeypatch.setattr(extension, "__file__", str(build_code))
    assert extension.cache_key(src, arch="8.0") != key


def fake_toolkit(folder, release="13.0", headers=True):
    (folder / "bin").mkdir(parents=True)
    nvcc = folder / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(0o755)
    if headers:
        (folder / "include").mkdir()
        for name in ("cuda_runtime.h", "cuda_fp16.h"):
            (folder / "include" / name).write_text("")
    return folder


def test_toolkit_problem_names_what_is_missing(monkeypatch, tmp_path):
    from stylenas.ops import extension

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CUDA_HOME", str(empty))
    problem = extension.toolkit_problem()
    assert f"CUDA_HOME={empty} is not a CUDA toolkit" in problem
    assert "include/cuda_runtime.h" in problem and "bin/nvcc" in problem
    assert "bin/nvcc" not in extension.toolkit_problem(emulate=True)  # the emulation needs headers only

    monkeypatch.setenv("CUDA_HOME", str(fake_toolkit(tmp_path / "headers-only", headers=True)))
    (tmp_path / "headers-only" / "bin" / "nvcc").unlink()
    assert "bin/nvcc missing" in extension.toolkit_problem()
    assert extension.toolkit_problem(emulate=True) is None

    other_major = "11.8" if not str(torch.version.cuda).startswith("11.") else "12.4"
    monkeypatch.setenv("CUDA_HOME", str(fake_toolkit(tmp_path / "old", release=other_major)))
    if torch.version.cuda is None:
        assert "built without CUDA" in extension.toolkit_problem()
    else:
        assert f"nvcc {other_major}" in extension.toolkit_problem()
        assert f"uses CUDA {torch.version.cuda}" in extension.toolkit_problem()
    monkeypatch.setenv("CXX", "no-such-c++")
    assert "no C++ compiler (no-such-c++ is not on PATH)" in extension.toolkit_problem(emulate=True)


def test_broken_build_warns_once_falls_back_and_is_not_retried(clean_extension, monkeypatch, tmp_path):
    extension = clean_extension
    if extension.toolkit_problem():
        pytest.skip(f"needs nvcc to fail on a broken source: {extension.toolkit_problem()}")
    monkeypatch.setenv("STYLENAS_CSRC", str(broken_sources(tmp_path)))
    monkeypatch.setenv("MAX_JOBS", "1")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    compiles = []
    real_compile = extension._compile
    monkeypatch.setattr(extension, "_compile", lambda *a, **k: (compiles.append(1), real_compile(*a, **k))[1])
    expected = reference_results()
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = run_all_ops()
        second = run_all_ops()
    messages = [str(w.message) for w in caught if "stylenas" in str(w.message)]
    assert len(messages) == 1, messages
    assert "failed to build" in messages[0] and "STYLENAS_OPS=ref" in messages[0]
    assert compiles == [1]
    for name in expected:
        assert torch.equal(first[name], expected[name]) and torch.equal(second[name], expected[name])
    # nothing half-built is left in the cache, only the log of the failure
    cache = Path(extension.cache_root())
    leftovers = [p.name for p in cache.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].endswith(".build.log")
    assert "deliberately broken" in (cache / leftovers[0]).read_text()

    # STYLENAS_OPS=cuda turns the failed build into an error
    monkeypatch.setenv("STYLENAS_OPS", "cuda")
    with pytest.raises(extension.BuildError, match="STYLENAS_OPS=cuda"):
        run_all_ops()
    assert compiles == [1]


def test_stylenas_ops_ref_never_builds(clean_extension, monkeypatch):
    extension = clean_extension
    monkeypatch.setenv("STYLENAS_OPS", "ref")
    monkeypatch.setattr(extension, "_compile", lambda *a, **k: pytest.fail("built under STYLENAS_OPS=ref"))
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    expected = reference_results()
    got = run_all_ops()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    monkeypatch.setenv("STYLENAS_OPS", "fastest")
    with pytest.raises(ValueError, match="STYLENAS_OPS"):
        run_all_ops()


def use_counting_fake(extension, monkeypatch):
    """Make every op take the fake extension's kernels (CPU tensors counted as CUDA ones); returns
    the list each kernel call appends its name to."""
    calls = []
    fake = fake_extension()
    for name in ("upfirdn2d", "bias_act", "modulate"):
        kernel = getattr(fake, name)
        setattr(fake, name, lambda *a, _k=kernel, _n=name: (calls.append(_n), _k(*a))[1])
    monkeypatch.setattr(extension, "get_extension", lambda: fake)
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    return calls


def test_self_checks_pass_and_kernels_are_used(clean_extension, monkeypatch):
    extension = clean_extension
    expected = reference_results()
    calls = use_counting_fake(extension, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = run_all_ops()
    assert set(calls) == {"upfirdn2d", "bias_act", "modulate"}
    assert set(k[0] for k in extension._self_check_results) == {"upfirdn2d", "bias_act", "modulated_conv2d"}
    assert all(extension._self_check_results.values())
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5), name


@pytest.mark.parametrize("broken", ["upfirdn2d", "bias_act", "modulate"])
def test_a_wrong_kernel_disables_itself_with_one_warning(clean_extension, monkeypatch, broken):
    extension = clean_extension
    op = "modulated_conv2d" if broken == "modulate" else broken
    expected = reference_results()
    monkeypatch.setattr(extension, "get_extension", lambda: fake_extension(broken_op=broken))
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run_all_ops()
        run_all_ops()
    messages = [str(w.message) for w in caught if "self-check" in str(w.message)]
    assert len(messages) == 1 and f"CUDA {op} " in messages[0], messages
    assert extension._self_check_results[(op, "cpu")] is False
    assert torch.allclose(got[op], expected[op], atol=1e-5)  # fell back to the reference

    extension.reset()
    monkeypatch.setenv("STYLENAS_OPS", "cuda")
    with pytest.raises(RuntimeError, match=f"CUDA {op} disagrees"):
        run_all_ops()


def test_impl_cuda_needs_cuda_tensors():
    with pytest.raises(ValueError, match="impl='cuda' needs CUDA tensors"):
        upfirdn2d(torch.randn(1, 1, 4, 4), setup_filter([1, 3, 3, 1]), impl="cuda")


def test_find_cuda_home_sees_through_a_wrapper_script(monkeypatch, tmp_path):
    from stylenas.ops import extension

    toolkit = tmp_path / "toolkit-13"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "include").mkdir()
    (toolkit / "bin" / "nvcc").write_text("")
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    wrapper_dir = tmp_path / "wrapper-bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(wrapper_dir))
    assert extension.find_cuda_home() == toolkit
    monkeypatch.setenv("CUDA_HOME", "/somewhere/else")
    assert extension.find_cuda_home() == Path("/somewhere/else")


def test_check_command_without_gpu_says_so(monkeypatch):
    from click.testing import CliRunner

    from stylenas.ops.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code != 0 and "no CUDA GPU visible" in result.output


def test_build_command_reports_a_failed_build(clean_extension, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from stylenas.ops.__main__ import main

    monkeypatch.setattr(clean_extension, "toolkit_problem", lambda emulate=False: None)
    monkeypatch.setattr(clean_extension, "_compile", lambda *a, **k: (_ for _ in ()).throw(OSError("nvcc: not found")))
    monkeypatch.setenv("STYLENAS_CSRC", str(ROOT / "csrc"))
    result = CliRunner().invoke(main, ["build"])
    assert result.exit_code != 0 and "CUDA extension build failed: nvcc: not found" in result.output
    # without a toolkit nothing is compiled, and the error names what is missing
    monkeypatch.setattr(clean_extension, "toolkit_problem", lambda emulate=False: "no CUDA toolkit (nvcc ...)")
    monkeypatch.setattr(clean_extension, "_compile", lambda *a, **k: pytest.fail("compiled without a toolkit"))
    result = CliRunner().invoke(main, ["build"])
    assert result.exit_code != 0 and "CUDA extension build failed: no CUDA toolkit (nvcc ...)" in result.output


@pytest.mark.parametrize("option", ["--emulated", "--auto"])
def test_check_command_on_the_host_emulation(emulated_extension, monkeypatch, option):
    from click.testing import CliRunner

    from stylenas.ops import extension
    from stylenas.ops.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # --auto: no GPU, so the emulation
    try:
        result = CliRunner().invoke(main, ["check", option])
    finally:
        extension.reset()
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "device: host emulation of the kernels on the CPU"
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[2:]}
    assert rows == {"bias_act": "ok", "eigvalsh": "ok", "modulated_conv2d": "ok", "upfirdn2d": "ok"}


@pytest.mark.parametrize("gpu", [False, True])
def test_check_auto_without_a_toolkit_prints_one_line(clean_extension, monkeypatch, tmp_path, gpu):
    from click.testing import CliRunner

    from stylenas.ops.__main__ import main

    empty = tmp_path / "no-toolkit"
    empty.mkdir()
    monkeypatch.setenv("CUDA_HOME", str(empty))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(clean_extension, "build", lambda *a, **k: pytest.fail("tried to build"))
    result = CliRunner().invoke(main, ["check", "--auto"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kernels not checked: "), lines
    assert f"CUDA_HOME={empty} is not a CUDA toolkit" in lines[0] and "PyTorch references" in lines[0]
    assert ("the CUDA extension cannot be built" if gpu else "no CUDA GPU, and the host emulation") in lines[0]
    assert ("bin/nvcc" in lines[0]) == gpu  # the emulation needs only the headers


def test_check_auto_fails_when_a_present_toolkit_fails_to_build(clean_extension, monkeypatch):
    from click.testing import CliRunner

    from stylenas.ops.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(clean_extension, "toolkit_problem", lambda emulate=False: None)
    monkeypatch.setattr(clean_extension, "_compile_emulated", lambda *a: (_ for _ in ()).throw(
        RuntimeError("error: expected ';' before '}' token")))
    monkeypatch.setenv("STYLENAS_CSRC", str(ROOT / "csrc"))
    result = CliRunner().invoke(main, ["check", "--auto"])
    assert result.exit_code == 1 and "CUDA extension build failed: error: expected ';'" in result.output


def cached_library_fails(extension, monkeypatch, tmp_path):
    """A published cache folder whose library does not load, and a rebuild that fails too."""
    monkeypatch.setenv("STYLENAS_CSRC", str(copied_sources(tmp_path, "damaged cache")))
    key = extension.cache_key(emulate=False)
    folder = extension.cache_root() / key
    folder.mkdir(parents=True)
    (folder / f"{extension._module_name(key)}.so").write_bytes(b"damaged")
    monkeypatch.setattr(extension, "_load_library", lambda path, name: (_ for _ in ()).throw(
        ImportError(f"{path}: invalid ELF header")))
    monkeypatch.setattr(extension, "_compile", lambda *a: (_ for _ in ()).throw(RuntimeError("nvcc: killed")))
    return "nvcc: killed"


def read_only_cache(extension, monkeypatch, tmp_path):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(extension.cache_root())):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    return "PermissionError: [Errno 13] Permission denied"


def mkdtemp_fails(extension, monkeypatch, tmp_path):
    monkeypatch.setattr(extension.tempfile, "mkdtemp", lambda **k: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    return "No space left on device"


def unreadable_source(extension, monkeypatch, tmp_path):
    monkeypatch.setattr(extension, "cache_key", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", "csrc/common.h")))
    return "PermissionError: [Errno 13] Permission denied: 'csrc/common.h'"


@pytest.mark.parametrize("failure", [read_only_cache, mkdtemp_fails, cached_library_fails, unreadable_source])
def test_any_failure_of_the_lazy_build_warns_once_and_falls_back(clean_extension, monkeypatch, tmp_path, failure):
    extension = clean_extension
    monkeypatch.setattr(extension, "toolkit_problem", lambda emulate=False: None)
    expected = reference_results()
    reason = failure(extension, monkeypatch, tmp_path)
    builds = []
    real_build = extension.build
    monkeypatch.setattr(extension, "build", lambda *a, **k: (builds.append(1), real_build(*a, **k))[1])
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = run_all_ops()
        second = run_all_ops()
    messages = [str(w.message) for w in caught if "stylenas" in str(w.message)]
    assert len(messages) == 1 and "failed to build" in messages[0] and reason in messages[0], messages
    assert builds == [1]  # later calls neither rebuild nor warn again
    for name in expected:
        assert torch.equal(first[name], expected[name]) and torch.equal(second[name], expected[name])

    extension.reset()
    monkeypatch.setenv("STYLENAS_OPS", "cuda")
    with pytest.raises(extension.BuildError, match="STYLENAS_OPS=cuda") as error:
        run_all_ops()
    assert reason in str(error.value)


def test_missing_toolkit_warns_once_naming_it(clean_extension, monkeypatch, tmp_path):
    extension = clean_extension
    empty = tmp_path / "no-toolkit"
    empty.mkdir()
    monkeypatch.setenv("CUDA_HOME", str(empty))
    monkeypatch.setattr(extension, "_compile", lambda *a, **k: pytest.fail("compiled without a toolkit"))
    expected = reference_results()
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run_all_ops()
        run_all_ops()
    messages = [str(w.message) for w in caught if "stylenas" in str(w.message)]
    assert len(messages) == 1, messages
    assert "cannot be built here" in messages[0] and f"CUDA_HOME={empty} is not a CUDA toolkit" in messages[0]
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not extension.cache_root().exists()  # nothing was attempted


@pytest.mark.parametrize("content", [b"damaged", None])
def test_a_cache_folder_without_a_loadable_library_is_rebuilt_once(clean_extension, monkeypatch, tmp_path, content):
    """The broken folder is replaced by the rebuild, so the next process loads the new library."""
    extension = clean_extension
    monkeypatch.setattr(extension, "toolkit_problem", lambda emulate=False: None)
    monkeypatch.setenv("STYLENAS_CSRC", str(copied_sources(tmp_path, f"rebuild once {content}")))
    key = extension.cache_key()
    name = extension._module_name(key)
    folder = extension.cache_root() / key
    folder.mkdir(parents=True)
    if content is not None:
        (folder / f"{name}.so").write_bytes(content)
    loaded = SimpleNamespace(marker="the rebuilt library")

    def load_library(path, module_name):
        if Path(path).read_bytes() != b"good":
            raise ImportError(f"{path}: invalid ELF header")
        return loaded

    def compile_library(module_name, sources, build_dir, include_dir, verbose):
        compiles.append(module_name)
        (build_dir / f"{module_name}.so").write_bytes(b"good")
        return loaded

    compiles = []
    monkeypatch.setattr(extension, "_load_library", load_library)
    monkeypatch.setattr(extension, "_compile", compile_library)
    monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        assert extension.build() is loaded and compiles == [name]
        assert sorted(p.name for p in extension.cache_root().iterdir()) == [key]  # nothing set aside or left over
        assert (folder / f"{name}.so").read_bytes() == b"good"
        del sys.modules[name]  # a new process
        assert extension.build() is loaded and compiles == [name]
    finally:
        sys.modules.pop(name, None)


def test_self_checks_wait_for_the_end_of_a_cuda_graph_capture(clean_extension, monkeypatch):
    extension = clean_extension
    expected = reference_results()
    calls = use_counting_fake(extension, monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    capturing = [True]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = run_all_ops()  # inside the capture: no check (it would synchronise), the reference
        assert calls == [] and extension._self_check_results == {}
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        capturing[0] = False
        got = run_all_ops()  # outside: checked once, then the kernels
    assert set(calls) == {"upfirdn2d", "bias_act", "modulate"}
    assert len(extension._self_check_results) == 3 and all(extension._self_check_results.values())
    assert all(torch.allclose(got[k], expected[k], atol=1e-5) for k in expected)

    extension.reset()
    calls.clear()
    capturing[0] = True
    monkeypatch.setenv("STYLENAS_OPS", "cuda")  # insists on the kernels, checked later
    run_all_ops()
    assert set(calls) == {"upfirdn2d", "bias_act", "modulate"} and extension._self_check_results == {}
