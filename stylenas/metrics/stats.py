"""Feature statistics for FID: streaming float64 mean and covariance, and pytorch-fid's .npz files."""
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path

__all__ = ["FeatureStats", "StatsFileError", "check_stats_path", "load_stats", "save_stats", "stats_count"]


class StatsFileError(ValueError):
    """A statistics file is missing, unreadable, or not {mu [d], sigma [d, d]}."""


class FeatureStats:
    """Running mean and unbiased covariance of feature vectors, accumulated in float64.

    Chunks are merged with Chan et al.'s pairwise update (mean and centred scatter matrix
    per chunk, combined with a correction for the shift of the mean), so no N x d matrix is
    kept and there is no catastrophic cancellation of the E[x x^T] - mu mu^T form. The result
    equals np.mean / np.cov(rowvar=False) of all rows to float64 rounding. Accumulates on the
    device of the first chunk (a GPU does the d x d updates fast).
    """

    def __init__(self):
        self.n = 0
        self.mean = None
        self.scatter = None  # sum of outer products of centred rows

    def update(self, x):
        """Add the rows of x [n, d] (tensor or array, any float dtype)."""
        x = torch.as_tensor(x).detach().to(torch.float64)
        if x.dim() != 2:
            raise ValueError(f"expected features [n, d], got shape {tuple(x.shape)}")
        if len(x) == 0:
            return self
        if self.mean is not None and x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features have {x.shape[1]} dimensions, earlier chunks had {self.mean.shape[0]}")
        m = len(x)
        mean = x.mean(0)
        xc = x - mean
        scatter = xc.T @ xc
        if self.n == 0:
            self.n, self.mean, self.scatter = m, mean, scatter
            return self
        n = self.n + m
        delta = mean.to(self.mean.device) - self.mean
        self.scatter += scatter.to(self.mean.device) + torch.outer(delta, delta) * (self.n * m / n)
        self.mean += delta * (m / n)
        self.n = n
        return self

    def mu(self):
        """float64 numpy [d]."""
        if self.n == 0:
            raise ValueError("no features were accumulated")
        return self.mean.cpu().numpy()

    def sigma(self):
        """Unbiased covariance (divides by n - 1, like np.cov and pytorch-fid), float64 numpy [d, d]."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        return (self.scatter / (self.n - 1)).cpu().numpy()

    def stats(self):
        """(mu, sigma) as float64 numpy arrays."""
        return self.mu(), self.sigma()


def save_stats(path, mu, sigma, n=None):
    """Write {mu, sigma} as an .npz pytorch-fid reads, atomically (temp file + rename). ``n``, the
    number of images behind them, is stored as a third array when given (pytorch-fid ignores it)."""
    path = Path(path)
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    _check(mu, sigma, path)
    extra = {} if n is None else {"n": np.int64(n)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object stops numpy appending ".npz"
        np.savez(f, mu=mu, sigma=sigma, **extra)


def check_stats_path(path):
    """Raise StatsFileError unless ``path`` can be written as a statistics file: not a folder, and
    its folder exists and is writable or can be created (its nearest existing ancestor is a
    writable folder). Creates nothing; meant to run before hours of feature extraction."""
    path = Path(path)
    if path.is_dir():
        raise StatsFileError(f"{path}: is a folder; give a file name, e.g. {path / 'stats.npz'}")
    existing = path.parent
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StatsFileError(f"{path}: cannot create its folder {path.parent}: {existing} is not a folder")
    try:  # a real write: os.access judges by the real uid and misses NFS root squash and the like
        fd, probe = tempfile.mkstemp(prefix=".stylenas-write-check-", dir=existing)  # as save_stats will
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StatsFileError(f"{path}: cannot write in {existing} ({e.strerror or e})") from None


def stats_count(path):
    """The number of images behind a statistics file written by ``save_stats(..., n=)``; None for
    files without it (pytorch-fid's)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return int(f["n"]) if "n" in f.files and f["n"].shape == () else None
    except Exception:
        return None


def load_stats(path):
    """Read (mu [d], sigma [d, d]) as float64 from an .npz with keys mu and sigma (pytorch-fid's format)."""
    path = Path(path)
    if not path.is_file():
        raise StatsFileError(f"{path}: statistics file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if not {"mu", "sigma"} <= keys:
                raise StatsFileError(f"{path}: expected arrays 'mu' and 'sigma', found {sorted(keys) or 'none'}")
            mu, sigma = f["mu"], f["sigma"]
    except StatsFileError:
        raise
    except Exception as e:
        raise StatsFileError(f"{path}: cannot read it as an .npz file ({type(e).__name__}: {e})") from None
    real = (np.floating, np.integer)
    if not all(any(np.issubdtype(a.dtype, t) for t in real) for a in (mu, sigma)):
        raise StatsFileError(f"{path}: 'mu' and 'sigma' must be real numbers, got {mu.dtype} and {sigma.dtype}")
    mu, sigma = mu.astype(np.float64), sigma.astype(np.float64)
    _check(mu, sigma, path)
    return mu, sigma


def _check(mu, sigma, path):
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise StatsFileError(f"{path}: expected mu [d] and sigma [d, d], got mu {list(mu.shape)} and "
                             f"sigma {list(sigma.shape)}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise StatsFileError(f"{path}: the statistics contain NaN or infinite values")
