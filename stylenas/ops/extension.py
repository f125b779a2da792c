"""Lazy build, cache and loading of the StyleNAS CUDA extension, and the per-op self-checks.

The extension (``csrc/``) is compiled with ``torch.utils.cpp_extension.load`` (ninja) the
first time a CUDA op is needed, once per process. Builds go to a private temporary folder
and are published by an atomic rename into a cache folder named after a hash of every
source and header, the torch and CUDA versions and the GPU architectures, so concurrent
processes never wait on a lock and a stale half-build is never picked up.

``STYLENAS_OPS`` selects the implementation: ``auto`` (default: the kernels on CUDA tensors
when the extension builds and passes its self-check, else the PyTorch reference), ``ref``
(always the reference; nothing is built) or ``cuda`` (a failed build or self-check is an
error instead of a warning). ``STYLENAS_CACHE`` overrides the cache folder
(default ``~/.cache/stylenas/extensions``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable

import torch

MODES = ("auto", "ref", "cuda")
DEFAULT_ARCH_LIST = "8.0;9.0"  # used only when no GPU is visible and TORCH_CUDA_ARCH_LIST is unset
_SOURCE_SUFFIXES = (".cpp", ".cu", ".cuh", ".h")


class BuildError(RuntimeError):
    """The CUDA extension could not be compiled or loaded."""


def mode() -> str:
    value = os.environ.get("STYLENAS_OPS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"STYLENAS_OPS={value!r}: expected one of {', '.join(MODES)}")
    return value


# --------------------------------------------------------------------------- sources and key


def source_dir() -> Path:
    """The csrc folder: ``$STYLENAS_CSRC``, inside the installed package, or beside it in a checkout."""
    if os.environ.get("STYLENAS_CSRC"):
        return Path(os.environ["STYLENAS_CSRC"])
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "csrc", package.parent / "csrc"):
        if (candidate / "bindings.cpp").is_file():
            return candidate
    raise BuildError(f"CUDA sources not found: expected csrc/bindings.cpp in or beside {package}")


def source_files(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.suffix in _SOURCE_SUFFIXES and p.is_file())


def compiled_sources(src: Path) -> list[Path]:
    # bindings.cpp first: it is the slow one and fails first when torch headers are the problem.
    return [src / "bindings.cpp"] + sorted(src.glob("*.cu"))


def arch_list() -> str:
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env:
        return env
    if torch.cuda.is_available():
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return ";".join(f"{major}.{minor}" for major, minor in sorted(caps))
    return DEFAULT_ARCH_LIST


def cache_key(src: Path | None = None, arch: str | None = None) -> str:
    """Hash of the sources and headers, torch, CUDA, Python ABI and GPU architectures."""
    src = source_dir() if src is None else src
    digest = hashlib.sha256()
    for path in source_files(src):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for item in (torch.__version__, str(torch.version.cuda), sys.implementation.cache_tag,
                 sys.platform, arch_list() if arch is None else arch):
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    root = os.environ.get("STYLENAS_CACHE") or Path.home() / ".cache" / "stylenas" / "extensions"
    return Path(root)


# --------------------------------------------------------------------------- CUDA toolkit


def _is_toolkit(path: Path) -> bool:
    return (path / "bin" / "nvcc").exists() and (path / "include" / "cuda_runtime.h").exists()


def find_cuda_home() -> Path | None:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH, else where nvcc on PATH really lives.

    Some machines put a small wrapper script called nvcc on PATH that execs the real one;
    torch would then guess the wrapper's folder, which has no headers.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return Path(os.environ[var])
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        candidates.append(real.parent.parent)
        if real.stat().st_size < 16384:
            match = re.search(rb"(/\S+)/bin/nvcc", real.read_bytes())
            if match:
                candidates.append(Path(match.group(1).decode(errors="ignore")))
    candidates.append(Path("/usr/local/cuda"))
    candidates.extend(sorted(Path("/usr/local").glob("cuda-*"), reverse=True))
    return next((c for c in candidates if _is_toolkit(c)), None)


def _prepare_toolkit() -> list[str]:
    """Point torch's cpp_extension at the toolkit; returns extra linker flags."""
    home = find_cuda_home()
    if home is None:
        raise BuildError("no CUDA toolkit found (nvcc not on PATH and CUDA_HOME not set)")
    os.environ.setdefault("CUDA_HOME", str(home))
    from torch.utils import cpp_extension

    if not cpp_extension.CUDA_HOME or not _is_toolkit(Path(cpp_extension.CUDA_HOME)):
        cpp_extension.CUDA_HOME = str(home)  # torch guessed it at import time, before us
    # Some toolkits ship libcudart in lib/ only; torch links against lib64/.
    if not (home / "lib64" / "libcudart.so").exists() and (home / "lib" / "libcudart.so").exists():
        return [f"-L{home / 'lib'}"]
    return []


# --------------------------------------------------------------------------- build and load


def _module_name(key: str) -> str:
    return f"stylenas_ops_{key}"


def _import_built(folder: Path, name: str):
    so_files = sorted(folder.glob(f"{name}*.so")) + sorted(folder.glob(f"{name}*.pyd"))
    if not so_files:
        return None
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, so_files[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def _compile(name: str, sources: list[Path], build_dir: Path, include_dir: Path, verbose: bool):
    ldflags = _prepare_toolkit()
    from torch.utils import cpp_extension

    saved_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list()  # the list the cache key was computed for
    try:
        return cpp_extension.load(
            name=name,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(include_dir)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            extra_ldflags=ldflags,
            build_directory=str(build_dir),
            with_cuda=True,
            verbose=verbose,
        )
    finally:
        if saved_arch is None:
            del os.environ["TORCH_CUDA_ARCH_LIST"]
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch


def _compile_emulated(name: str, sources: list[Path], build_dir: Path, include_dir: Path, verbose: bool):
    """The same sources built by the host compiler with -DSTYLENAS_EMULATE (csrc/emulation.h):
    the kernels then run on CPU tensors, each CUDA thread a fiber on the calling thread. For tests only."""
    home = find_cuda_home()
    if home is None:
        raise BuildError("no CUDA toolkit found: the emulated build still needs its headers (cuda_fp16.h)")
    from torch.utils import cpp_extension

    # The .cu files are compiled as C++: one translation unit that includes them all.
    kernels = build_dir / "kernels_emulated.cpp"
    kernels.write_text("".join(f'#include "{s}"\n' for s in sources if s.suffix == ".cu"))
    return cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources if s.suffix != ".cu"] + [str(kernels)],
        extra_include_paths=[str(include_dir), str(home / "include")],
        extra_cflags=["-O1", "-std=c++20", "-DSTYLENAS_EMULATE"],
        build_directory=str(build_dir),
        with_cuda=False,
        verbose=verbose,
    )


def build(verbose: bool = False, emulate: bool = False):
    """Compile (or load from the cache) the extension now; returns the loaded module.

    `emulate=True` builds the host-emulated variant instead (kernels on CPU tensors, for tests).
    Raises BuildError with the compiler's message on failure; the log stays in the cache folder.
    """
    src = source_dir()
    key = cache_key(src) + ("_emulated" if emulate else "")
    name = _module_name(key)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    if final.is_dir():
        module = _import_built(final, name)
        if module is not None:
            return module
    what = "host-emulated kernels" if emulate else "CUDA extension"
    print(f"stylenas.ops: building the {what} into {final} (first use; a few minutes)",
          file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
    log = root / f"{key}.build.log"
    try:
        module = (_compile_emulated if emulate else _compile)(name, compiled_sources(src), tmp, src, verbose)
    except Exception as error:  # compiler errors arrive as RuntimeError, OSError, CalledProcessError
        shutil.rmtree(tmp, ignore_errors=True)
        log.write_text(str(error))
        raise BuildError(f"{_first_error_line(str(error))} (full log: {log})") from error
    try:
        os.rename(tmp, final)  # atomic publish; fails harmlessly if another process won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return module


def _first_error_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() and not line.lower().startswith("error building extension"):
            return line[:300]
    return lines[0][:300] if lines else "unknown error"


# --------------------------------------------------------------------------- process-wide state

_lock = threading.Lock()
_state: dict = {"tried": False, "module": None, "error": None, "emulated": False}
_self_checks: dict[str, tuple[Callable[[torch.device], float], float]] = {}
_self_check_results: dict[tuple[str, str], bool] = {}


def reset() -> None:
    """Forget the build outcome and the self-check results (for tests and after editing csrc/)."""
    with _lock:
        _state.update(tried=False, module=None, error=None, emulated=False)
        _self_check_results.clear()


def activate_emulation(verbose: bool = False):
    """Use the host-emulated build of the kernels (csrc/emulation.h) for the rest of the process
    (until `reset()`): the ops then send CPU tensors to the kernels, whose CUDA threads take turns
    on the calling thread. Slow; for tests and `python -m stylenas.ops check --emulated` on machines without a GPU."""
    module = build(verbose=verbose, emulate=True)
    with _lock:
        _state.update(tried=True, module=module, error=None, emulated=True)
        _self_check_results.clear()
    return module


def get_extension():
    """The loaded extension module, or None when it cannot be built (warned once per process)."""
    if mode() == "ref":
        return None
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                _state["module"] = build()
            except BuildError as error:
                _state["error"] = str(error)
                if mode() == "auto":
                    warnings.warn(
                        f"stylenas.ops: the CUDA extension failed to build: {error}. Using the slower "
                        "PyTorch reference ops; set STYLENAS_OPS=ref to skip the build.",
                        RuntimeWarning, stacklevel=3)
    if _state["module"] is None and mode() == "cuda":
        raise BuildError(f"STYLENAS_OPS=cuda but the CUDA extension is unavailable: {_state['error']}")
    return _state["module"]


def register_self_check(op: str, check: Callable[[torch.device], float], tolerance: float) -> None:
    """`check(device)` runs the kernel and the reference on a small input and returns the largest
    relative error over the forward result and the gradients."""
    _self_checks[op] = (check, tolerance)


def run_self_check(op: str, device: torch.device) -> tuple[bool, float | str]:
    check, tolerance = _self_checks[op]
    try:
        # The first call may come from inside no_grad, inference_mode or autocast; the check
        # needs autograd, and both sides in the dtypes it chose.
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            error = float(check(device))
    except Exception as exc:  # a kernel that crashes fails its check like one that is wrong
        return False, f"{type(exc).__name__}: {exc}"
    return error <= tolerance, error


def _on_cuda(tensor: torch.Tensor) -> bool:
    """Whether `tensor` lives where the loaded kernels run (the CPU under emulation)."""
    return tensor.is_cpu if _state["emulated"] else tensor.is_cuda


def use_cuda(op: str, tensor: torch.Tensor, impl: str) -> bool:
    """Decide between the kernel and the reference for one call of `op` on `tensor`."""
    if impl not in MODES:
        raise ValueError(f"{op}: impl={impl!r}, expected one of {', '.join(MODES)}")
    if impl == "ref":
        return False
    if impl == "cuda":
        if not _on_cuda(tensor):
            raise ValueError(f"{op}: impl='cuda' needs CUDA tensors, got a tensor on {tensor.device}")
        if get_extension() is None:
            raise BuildError(f"{op}: impl='cuda' but the CUDA extension is unavailable: {_state['error']}")
        return True
    if mode() == "ref" or not _on_cuda(tensor) or get_extension() is None:
        return False
    key = (op, str(tensor.device))
    if key not in _self_check_results:
        ok, error = run_self_check(op, tensor.device)
        _self_check_results[key] = ok
        if not ok:
            message = (f"stylenas.ops: the CUDA {op} disagrees with its reference on {tensor.device} "
                       f"(self-check error {error}); using the reference for {op}")
            if mode() == "cuda":
                raise RuntimeError(message)
            warnings.warn(message + ".", RuntimeWarning, stacklevel=3)
    return _self_check_results[key]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(max |expected|, 1e-6): scale-free, robust to tiny values."""
    scale = expected.detach().abs().max().clamp_min(1e-6)
    return float((actual.detach().double() - expected.detach().double()).abs().max() / scale)
