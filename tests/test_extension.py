"""The lazy build, the cache key, the one-warning fallback and the per-op self-check dispatch.

No GPU here: `_on_cuda` is patched so that CPU tensors take the CUDA dispatch path, and a
fake extension built from the kernels' PyTorch contracts stands in for the compiled one.
"""
import importlib
import shutil
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
    def modulate(weight, styles, demodulate, write_weight, eps):
        return modconv_module.modulate_weight_ref(weight, styles, demodulate), None

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


def test_broken_build_warns_once_falls_back_and_is_not_retried(clean_extension, monkeypatch, tmp_path):
    extension = clean_extension
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


def test_self_checks_pass_and_kernels_are_used(clean_extension, monkeypatch):
    extension = clean_extension
    expected = reference_results()
    calls = []
    fake = fake_extension()
    for name in ("upfirdn2d", "bias_act", "modulate"):
        kernel = getattr(fake, name)
        setattr(fake, name, lambda *a, _k=kernel, _n=name: (calls.append(_n), _k(*a))[1])
    monkeypatch.setattr(extension, "get_extension", lambda: fake)
    monkeypatch.setattr(extension, "_on_cuda", lambda t: True)
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

    monkeypatch.setattr(clean_extension, "_compile", lambda *a, **k: (_ for _ in ()).throw(OSError("nvcc: not found")))
    monkeypatch.setenv("STYLENAS_CSRC", str(ROOT / "csrc"))
    result = CliRunner().invoke(main, ["build"])
    assert result.exit_code != 0 and "CUDA extension build failed: nvcc: not found" in result.output


def test_check_command_on_the_host_emulation(emulated_extension):
    from click.testing import CliRunner

    from stylenas.ops import extension
    from stylenas.ops.__main__ import main

    try:
        result = CliRunner().invoke(main, ["check", "--emulated"])
    finally:
        extension.reset()
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[2:]}
    assert rows == {"bias_act": "ok", "eigvalsh": "ok", "modulated_conv2d": "ok", "upfirdn2d": "ok"}
