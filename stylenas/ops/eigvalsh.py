"""eigvalsh: eigenvalues of a batch of symmetric float64 matrices.

The Frechet distance needs the trace of a matrix square root, that is the square roots of the
eigenvalues of one symmetric matrix per candidate (see stylenas.metrics.frechet). The
reference is ``torch.linalg.eigvalsh`` (LAPACK on the CPU, cuSOLVER on a GPU, which solves
the matrices of a batch one after another above 32 x 32). The kernel (csrc/eigvalsh.cu)
reduces all matrices of the batch to tridiagonal form together, one Householder step per
column, then finds every eigenvalue by bisection in its own thread: the batch shares each
step's launches and fills the GPU, where one 2048 x 2048 problem alone cannot.

Which of the two is faster depends on the GPU, n and the batch size, so ``impl="auto"`` times
both once per (device, n, batch size) on the first call and keeps the faster (like
``cudnn.benchmark``); ``impl="cuda"`` / ``"ref"`` force one.

Only the lower triangle is read. No gradients: the kernel is for metrics; a tensor that
requires grad takes the reference under ``impl="auto"``.
"""

from __future__ import annotations

import time

import torch

from . import extension

MAX_KERNEL_BATCH = 65535  # the kernel's grid limit; larger batches go in slices
_faster: dict[tuple, str] = {}  # (device, n, batch size) -> "cuda" | "ref", from the first call


def _check(a: torch.Tensor) -> None:
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"eigvalsh: expected square matrices [..., n, n], got shape {tuple(a.shape)}")
    if a.dtype != torch.float64:
        raise ValueError(f"eigvalsh: expected float64 matrices, got {a.dtype}")


def eigvalsh_ref(a: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigvalsh(a, UPLO="L")


def eigvalsh(a: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """Eigenvalues, ascending, of symmetric float64 matrices ``a`` [..., n, n] -> [..., n]."""
    _check(a)
    if impl == "cuda" and a.requires_grad:
        raise ValueError("eigvalsh: the CUDA kernel computes no gradients; use impl='ref'")
    if a.requires_grad and impl == "auto":
        impl = "ref"
    if not extension.use_cuda("eigvalsh", a, impl):
        return eigvalsh_ref(a)
    if impl == "auto" and _faster_implementation(a) == "ref":
        return eigvalsh_ref(a)
    return _eigvalsh_kernel(a)


def _eigvalsh_kernel(a: torch.Tensor) -> torch.Tensor:
    n = a.shape[-1]
    flat = a.reshape(-1, n, n)
    kernel = extension.get_extension().eigvalsh
    pieces = [kernel(flat[i:i + MAX_KERNEL_BATCH]) for i in range(0, max(len(flat), 1), MAX_KERNEL_BATCH)]
    return torch.cat(pieces).reshape(a.shape[:-1])


def _seconds(fn, a: torch.Tensor) -> float:
    """Wall time of fn(a), the device drained before and after."""
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    fn(a)
    sync()
    return time.perf_counter() - start


def _faster_implementation(a: torch.Tensor) -> str:
    """"cuda" or "ref", whichever ran this shape faster on this device (timed on first sight:
    one warm-up and one timed call each)."""
    key = (str(a.device), a.shape[-1], a.shape[:-2].numel())
    if key not in _faster:
        seconds = {}
        for impl, fn in (("cuda", _eigvalsh_kernel), ("ref", eigvalsh_ref)):
            fn(a)
            seconds[impl] = _seconds(fn, a)
        _faster[key] = min(seconds, key=seconds.get)
    return _faster[key]


def _self_check(device: torch.device) -> float:
    """Kernel vs reference on a positive definite, a rank-3 and an indefinite matrix (n = 20),
    with garbage above the diagonal; the error is relative to the largest eigenvalue."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn([3, 20, 24], generator=gen, dtype=torch.float64)
    a = x @ x.mT / 24
    a[1] = x[1, :, :3] @ x[1, :, :3].T
    a[2] = x[2, :, :20] + x[2, :, :20].T
    expected = eigvalsh_ref(a)
    garbage = torch.randn([3, 20, 20], generator=gen, dtype=torch.float64).triu(1)
    actual = eigvalsh((a.tril() + garbage).to(device), impl="cuda").cpu()
    return extension.relative_error(actual, expected)


extension.register_self_check("eigvalsh", _self_check, tolerance=1e-10)
