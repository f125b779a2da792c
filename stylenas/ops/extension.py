"""Lazy build, cache and loading of the StyleNAS CUDA extension, and the per-op self-checks.

The extension (``csrc/``) is compiled with ``torch.utils.cpp_extension.load`` (ninja) the
first time a CUDA op is needed, once per process. Builds go to a private temporary folder
and are published by an atomic rename into a cache folder named after a hash of every
source and header, the torch and CUDA versions and the GPU architectures, so concurrent
processes never wait on a lock and a stale half-build is never picked up. The key also covers
the compiler flags, the compilers' versions and this file (the build code itself). A machine
without what the build needs (`toolkit_problem` names it) gets the references, with one warning
when a CUDA tensor first asks for a kernel.

``STYLENAS_OPS`` selects the implementation: ``auto`` (default: the kernels on CUDA tensors
when the extension builds and passes its self-check, else the PyTorch reference), ``ref``
(always the reference; nothing is built) or ``cuda`` (a failed build or self-check is an
error instead of a warning). ``STYLENAS_CACHE`` overrides the cache folder
(default ``~/.cache/stylenas/extensions``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
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
CFLAGS = ["-O3"]
CUDA_CFLAGS = ["-O3"]
EMULATED_CFLAGS = ["-O1", "-std=c++20", "-DSTYLENAS_EMULATE"]
# Read by nvcc or torch's build besides our flags, so they change the library too.
_BUILD_ENVIRONMENT = ("CXX", "NVCC_APPEND_FLAGS", "NVCC_PREPEND_FLAGS")


class BuildError(RuntimeError):
    """The CUDA extension could not be compiled or loaded."""


class ToolkitMissing(BuildError):
    """This machine lacks something the build needs (nvcc, the CUDA headers, a C++ compiler, ninja):
    the extension cannot be built here, as opposed to a build that was tried and failed."""


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


def cache_key(src: Path | None = None, arch: str | None = None, emulate: bool = False) -> str:
    """Hash of the sources and headers, the build code and flags, the compilers' versions, torch,
    CUDA, the Python ABI and the GPU architectures (`emulate`: of the host-emulated build)."""
    src = source_dir() if src is None else src
    digest = hashlib.sha256()
    for path in source_files(src) + [Path(__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    flags = EMULATED_CFLAGS if emulate else CFLAGS + ["cuda:"] + CUDA_CFLAGS
    items = [torch.__version__, str(torch.version.cuda), sys.implementation.cache_tag, sys.platform,
             " ".join(flags), compiler_versions(emulate)]
    items += [f"{var}={os.environ.get(var, '')}" for var in _BUILD_ENVIRONMENT]
    if not emulate:
        items.append(arch_list() if arch is None else arch)
    for item in items:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:16] + ("_emulated" if emulate else "")


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


def _host_compiler() -> str:
    return os.environ.get("CXX", "c++")  # the one torch's cpp_extension runs


@functools.lru_cache(maxsize=None)
def _version_output(command: str) -> str:
    """`command --version` (empty when it cannot run)."""
    try:
        run = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return run.stdout.strip() if run.returncode == 0 else ""


def nvcc_release(home: Path) -> str | None:
    """The toolkit's CUDA release ("13.0") as nvcc reports it, or None when nvcc does not run."""
    match = re.search(r"release (\d+\.\d+)", _version_output(str(home / "bin" / "nvcc")))
    return match.group(1) if match else None


def compiler_versions(emulate: bool = False) -> str:
    """The compilers the build would run, as they describe themselves (part of the cache key)."""
    host = shutil.which(_host_compiler())
    items = [_version_output(host).split("\n")[0] if host else "no host compiler"]
    if not emulate:
        home = find_cuda_home()
        items.append(_version_output(str(home / "bin" / "nvcc")) if home else "no nvcc")
    return "\n".join(items)


def toolkit_problem(emulate: bool = False) -> str | None:
    """What this machine lacks to compile the extension (`emulate`: its host-emulated variant,
    which needs the CUDA headers but not nvcc), in words for the user; None when nothing is missing."""
    if not emulate and torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) was built without CUDA"
    home = find_cuda_home()
    if home is None:
        return "no CUDA toolkit (nvcc is not on PATH, CUDA_HOME is not set)"
    where = next((f"{var}={home}" for var in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(var) == str(home)),
                 f"the CUDA toolkit at {home}")
    needed = ["include/cuda_runtime.h", "include/cuda_fp16.h"] + ([] if emulate else ["bin/nvcc"])
    missing = [name for name in needed if not (home / name).exists()]
    if missing:
        return f"{where} is not a CUDA toolkit ({', '.join(missing)} missing)"
    if not emulate:
        release = nvcc_release(home)
        if release is None:
            return f"{home / 'bin' / 'nvcc'} does not run"
        if release.split(".")[0] != torch.version.cuda.split(".")[0]:
            return f"nvcc {release} ({home}) cannot build for this PyTorch, which uses CUDA {torch.version.cuda}"
    if shutil.which(_host_compiler()) is None:
        return f"no C++ compiler ({_host_compiler()} is not on PATH)"
    if _ninja_folder() is None:
        return "ninja is not installed (pip install ninja)"
    return None


def _ninja_folder() -> str | None:
    """Where the ninja that torch's build runs lives: on PATH, or beside this Python (a venv that
    was not activated, as `make` runs it)."""
    found = shutil.which("ninja") or shutil.which("ninja", path=str(Path(sys.executable).parent))
    return str(Path(found).parent) if found else None


def _prepare_toolkit() -> list[str]:
    """Point torch's cpp_extension at the toolkit; returns extra linker flags."""
    home = find_cuda_home()  # build() has checked that it is a toolkit
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


def _load_library(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_built(folder: Path, name: str):
    """The library published in `folder`, None when it holds none; raises when it does not load."""
    libraries = sorted(folder.glob(f"{name}*.so")) + sorted(folder.glob(f"{name}*.pyd"))
    if not libraries:
        return None
    if name not in sys.modules:
        sys.modules[name] = _load_library(libraries[0], name)
    return sys.modules[name]


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
            extra_cflags=CFLAGS,
            extra_cuda_cflags=CUDA_CFLAGS,
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
    home = find_cuda_home()  # build() has checked that its headers are there
    from torch.utils import cpp_extension

    # The .cu files are compiled as C++: one translation unit that includes them all.
    kernels = build_dir / "kernels_emulated.cpp"
    kernels.write_text("".join(f'#include "{s}"\n' for s in sources if s.suffix == ".cu"))
    return cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources if s.suffix != ".cu"] + [str(kernels)],
        extra_include_paths=[str(include_dir), str(home / "include")],
        extra_cflags=EMULATED_CFLAGS,
        build_directory=str(build_dir),
        with_cuda=False,
        verbose=verbose,
    )


def build(verbose: bool = False, emulate: bool = False):
    """Compile (or load from the cache) the extension now; returns the loaded module.

    `emulate=True` builds the host-emulated variant instead (kernels on CPU tensors, for tests).
    Raises ToolkitMissing when this machine cannot compile it, BuildError with the compiler's
    message when the build fails (the log stays in the cache folder) or the cache is not writable.
    """
    problem = toolkit_problem(emulate)
    if problem:
        raise ToolkitMissing(problem)
    if shutil.which("ninja") is None:  # torch runs plain `ninja`
        os.environ["PATH"] = _ninja_folder() + os.pathsep + os.environ.get("PATH", "")
    src = source_dir()
    key = cache_key(src, emulate=emulate)
    name = _module_name(key)
    root = cache_root()
    final = root / key
    broken = None  # why the published build in `final` is unusable
    if final.is_dir():
        try:
            module = _import_built(final, name)
        except Exception as error:  # damaged or deleted library, a dependency gone: dlopen's errors vary
            module, broken = None, f"{type(error).__name__}: {error}"
        if module is not None:
            return module
        broken = broken or "no library in it"
    what = "host-emulated kernels" if emulate else "CUDA extension"
    why = "first use" if broken is None else f"the cached build does not load ({broken})"
    print(f"stylenas.ops: building the {what} into {final} ({why}; a few minutes)", file=sys.stderr, flush=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
    except OSError as error:
        raise BuildError(f"cannot write to the extension cache {root} ({type(error).__name__}: {error}); "
                         "set STYLENAS_CACHE to a writable folder") from error
    log = root / f"{key}.build.log"
    try:
        module = (_compile_emulated if emulate else _compile)(name, compiled_sources(src), tmp, src, verbose)
    except Exception as error:  # compiler errors arrive as RuntimeError, OSError, CalledProcessError
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            log.write_text(str(error))
            where = f"full log: {log}"
        except OSError:
            where = f"the log could not be written to {log}"
        raise BuildError(f"{_first_error_line(str(error))} ({where})") from error
    _publish(tmp, final, replace=broken is not None)
    sys.modules[name] = module  # later calls in this process take it, not a second load of the same library
    return module


def _publish(tmp: Path, final: Path, replace: bool) -> None:
    """Atomic rename of a finished build into the cache. A broken build there (`replace`) is moved
    aside first, so that it is rebuilt once and not by every later process; otherwise a folder
    already there is another process's equal build, which won the race, and ours is dropped."""
    aside = final.with_name(f"{final.name}.broken-{os.getpid()}")
    if replace:
        try:
            os.rename(final, aside)
        except OSError:
            pass  # another process replaced it already
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)


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
            try:
                module, error = build(), None
            except Exception as exc:  # whatever went wrong (compiler, cache folder, loading), the references work
                module, error = None, exc
            if error is not None and not isinstance(error, BuildError):
                error_text = f"{type(error).__name__}: {error}"
            else:
                error_text = None if error is None else str(error)
            _state.update(tried=True, module=module, error=error_text)
            if error is not None and mode() == "auto":
                what = "cannot be built here" if isinstance(error, ToolkitMissing) else "failed to build"
                warnings.warn(f"stylenas.ops: the CUDA extension {what}: {error_text}. Using the slower "
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


def _stream_capturing() -> bool:
    """Whether a CUDA graph capture is under way on the current stream (never under emulation)."""
    return not _state["emulated"] and torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


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
        if _stream_capturing():
            # The check reads its result back to the host, which a CUDA graph capture forbids: it
            # runs at the first call outside a capture, and the captured graph keeps the reference
            # (the kernel only when STYLENAS_OPS=cuda insists on it).
            return mode() == "cuda"
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
