"""Exact Frechet distance between Gaussians, for one pair or a batch against one reference.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

pytorch-fid gets the last trace from `scipy.linalg.sqrtm(S1 @ S2)`, a Schur decomposition of
a non-symmetric matrix: slow, and it can return complex values. Only the trace is needed,
the sum of the square roots of the eigenvalues of S1 S2. For any R with S1 = R R^T, S1 S2
has the same non-zero eigenvalues as the symmetric matrix A = R^T S2 R, so they are real,
>= 0 up to rounding, and a symmetric eigensolver gives them in float64:

    tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(R^T S2 R))

R is the Cholesky factor when S1 is positive definite. When it is singular (fewer samples
than dimensions, constant features) R is d x k for its numerical rank k: a pivoted
Cholesky factor when k is small, else V_k diag(sqrt(w_k)) from `eigh(S1)`. Then A is k x k
and carries no null space of rounding noise (whose square roots, ~1e-8 each, would add up
to a visible bias).

A batch of candidates against one reference factors the reference once; each candidate
then costs two matrix products and one symmetric eigenvalue problem, done as batched calls.
The eigenvalue step is the single function `batched_eigvalsh`: on a GPU the batched CUDA
kernel of stylenas.ops.eigvalsh, elsewhere torch's eigvalsh.
"""
import numpy as np
import torch

from ..ops.eigvalsh import eigvalsh

__all__ = ["frechet_distance", "frechet_distance_batched", "batched_eigvalsh", "sqrt_factor",
           "cholesky_factor", "pivoted_cholesky", "trace_sqrt_product"]


def batched_eigvalsh(a, impl="auto"):
    """Eigenvalues, ascending, of symmetric float64 matrices `a` [..., k, k] -> [..., k].

    Reads only the lower triangle (the upper one may hold anything). `impl` follows the
    stylenas.ops convention: "ref" is torch.linalg.eigvalsh on the tensor's device (LAPACK on
    the CPU, cuSOLVER on a GPU); "auto" takes the batched CUDA kernel (csrc/eigvalsh.cu, see
    stylenas.ops.eigvalsh) for CUDA tensors once it has passed its self-check, else the same.
    """
    return eigvalsh(a, impl=impl)


def _noise_level(scale, size):
    """Values below this are float64 rounding noise for a matrix of this scale and size
    (numpy's matrix_rank tolerance)."""
    return scale * size * torch.finfo(torch.float64).eps


def cholesky_factor(sigma):
    """Lower Cholesky factor of sigma [d, d], or None when sigma is not numerically positive definite.

    A singular covariance can pass Cholesky with trailing pivots at the rounding level (1e-26
    of the diagonal); those are noise, so they count as a failure too.
    """
    factor, info = torch.linalg.cholesky_ex(sigma)
    if info != 0:
        return None
    pivots = factor.diagonal().square()
    if not bool(torch.isfinite(pivots).all()) or pivots.min() <= _noise_level(sigma.diagonal().max(), len(pivots)):
        return None
    return factor


def pivoted_cholesky(sigma, max_rank):
    """R [d, k] with R R^T = sigma for a PSD sigma of numerical rank k <= max_rank, else None.

    Cholesky with complete (diagonal) pivoting: each step takes the largest remaining
    variance, and it stops when what is left is rounding noise. For covariances of few
    samples (k << d) this costs O(d k^2) instead of the O(d^3) of `eigh`.
    """
    d = sigma.shape[-1]
    remaining = sigma.diagonal().clone()
    tol = _noise_level(remaining.max().clamp(min=0), d)
    factor = sigma.new_zeros(d, max_rank)
    for j in range(max_rank + 1):
        p = int(remaining.argmax())
        if remaining[p] <= tol:
            return factor[:, :j]
        if j == max_rank:
            return None
        column = (sigma[:, p] - factor[:, :j] @ factor[p, :j]) / remaining[p].sqrt()
        factor[:, j] = column
        remaining -= column.square()
        remaining[p] = 0  # exactly, not a rounding residue that could be picked again


def sqrt_factor(sigma):
    """(R, triangular): R [d, k] with R R^T = sigma [d, d] (float64), k its numerical rank.

    The lower Cholesky factor (k = d, triangular) when sigma is positive definite; else a
    pivoted Cholesky factor when the rank is at most d / 4 (few samples, fast); else
    V_k diag(sqrt(w_k)) from eigh over the eigenvalues above the rounding level.
    """
    factor = cholesky_factor(sigma)
    if factor is not None:
        return factor, True
    factor = pivoted_cholesky(sigma, sigma.shape[-1] // 4)
    if factor is not None:
        return factor, False
    return _eigh_factor(sigma), False


def _eigh_factor(sigma):
    w, v = torch.linalg.eigh(sigma)
    keep = w > _noise_level(w[-1].clamp(min=0), len(w))
    return v[:, keep] * w[keep].sqrt()


def _factor_either(sigma1, sigma2):
    """(factor, triangular, other): a factor of one covariance and the other one.

    The trace term is symmetric in S1 and S2, so factor whichever is cheaper to factor
    exactly; the O(d^3) eigh is only paid when both are singular and of high rank.
    """
    pairs = ((sigma1, sigma2), (sigma2, sigma1))
    for sigma, other in pairs:
        factor = cholesky_factor(sigma)
        if factor is not None:
            return factor, True, other
    for sigma, other in pairs:
        factor = pivoted_cholesky(sigma, sigma.shape[-1] // 4)
        if factor is not None:
            return factor, False, other
    return _eigh_factor(sigma1), False, sigma2


def _congruence(factor, sigma, triangular, block=256):
    """The lower triangle of factor^T @ sigma @ factor; sigma [..., d, d] broadcasts over batches.

    For a lower-triangular factor, column block j of sigma @ L only involves rows >= j of L,
    and of L^T (sigma L) only the lower triangle is needed (eigvalsh reads nothing else).
    Skipping the zero blocks cuts the work from 4 d^3 to about 1.6 d^3 flops while every
    piece stays a large matmul (plain torch, any device).
    """
    if not triangular:
        return factor.mT @ sigma @ factor
    d = factor.shape[-1]
    t = torch.empty_like(sigma)
    for j in range(0, d, block):
        e = min(j + block, d)
        t[..., :, j:e] = sigma[..., :, j:] @ factor[j:, j:e]
    a = torch.zeros_like(sigma)
    for i in range(0, d, block):
        e = min(i + block, d)
        a[..., i:e, :e] = factor[i:, i:e].mT @ t[..., i:, :e]
    return a


def trace_sqrt_product(factor, sigma, triangular=False, impl="auto"):
    """tr((S1 S2)^(1/2)) for S1 = factor @ factor^T and S2 = sigma [..., d, d] (batched over sigma)."""
    if factor.shape[-1] == 0:  # S1 = 0 (constant features)
        return sigma.new_zeros(sigma.shape[:-2])
    eig = batched_eigvalsh(_congruence(factor, sigma, triangular), impl=impl)
    # The eigenvalues of a PSD product are >= 0; those below the rounding level of the
    # largest (negative ones, a null space of sigma) are noise around 0, and the square
    # roots of a thousand of them would bias the trace.
    return torch.where(eig > _noise_level(eig[..., -1:].clamp(min=0), eig.shape[-1]), eig, 0).sqrt().sum(-1)


def _to_float64(x, name, device):
    """numpy array or tensor -> float64 tensor on `device`, refusing NaN and inf."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _check_pair(mu, sigma, name):
    d = mu.shape[-1]
    if sigma.shape[-2:] != (d, d):
        raise ValueError(f"{name}: the mean has {d} dimensions but the covariance has shape "
                         f"{tuple(sigma.shape)}")


def _device_of(x):
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), as a float.

    mu [d] and sigma [d, d] as numpy arrays or tensors; computed in float64 on the device of
    `sigma1` (the CPU for numpy). Agrees with pytorch-fid's `calculate_frechet_distance` to
    ~1e-12 relative on full-rank statistics; on singular ones (fewer samples than
    dimensions) it is exact to rounding where pytorch-fid's sqrtm is off by ~1e-7.
    """
    device = _device_of(sigma1)
    mu1, mu2 = (_to_float64(m, n, device).reshape(-1) for m, n in ((mu1, "mu1"), (mu2, "mu2")))
    sigma1, sigma2 = (torch.atleast_2d(_to_float64(s, n, device)) for s, n in ((sigma1, "sigma1"), (sigma2, "sigma2")))
    _check_pair(mu1, sigma1, "statistics 1")
    _check_pair(mu2, sigma2, "statistics 2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the statistics have different dimensions: {mu1.shape[0]} and {mu2.shape[0]}")
    factor, triangular, other = _factor_either(sigma1, sigma2)
    diff = mu1 - mu2
    tr_sqrt = trace_sqrt_product(factor, other, triangular)
    return float(diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt)


def frechet_distance_batched(mu, sigma, mu_ref, sigma_ref, impl="auto"):
    """Squared Frechet distances of B statistics to one reference -> float64 tensor [B].

    mu [B, d], sigma [B, d, d], mu_ref [d], sigma_ref [d, d], numpy arrays or tensors;
    computed in float64 on the device of `sigma`. The reference is factored once for the
    whole batch; `impl` picks the eigenvalue backend (see `batched_eigvalsh`). Equals a loop
    of `frechet_distance` to rounding.
    """
    device = _device_of(sigma)
    mu, sigma = _to_float64(mu, "mu", device), _to_float64(sigma, "sigma", device)
    mu_ref = _to_float64(mu_ref, "mu_ref", device).reshape(-1)
    sigma_ref = torch.atleast_2d(_to_float64(sigma_ref, "sigma_ref", device))
    if mu.dim() != 2 or sigma.dim() != 3 or sigma.shape[0] != mu.shape[0]:
        raise ValueError(f"expected mu [B, d] and sigma [B, d, d], got {tuple(mu.shape)} and {tuple(sigma.shape)}")
    _check_pair(mu, sigma, "batched statistics")
    _check_pair(mu_ref, sigma_ref, "reference statistics")
    if mu.shape[1] != mu_ref.shape[0]:
        raise ValueError(f"the statistics have {mu.shape[1]} dimensions but the reference has {mu_ref.shape[0]}")
    factor, triangular = sqrt_factor(sigma_ref)
    diff = mu - mu_ref
    tr_sqrt = trace_sqrt_product(factor, sigma, triangular, impl=impl)
    return (diff * diff).sum(-1) + sigma.diagonal(dim1=-2, dim2=-1).sum(-1) + sigma_ref.trace() - 2 * tr_sqrt
