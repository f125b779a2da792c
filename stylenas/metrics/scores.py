"""Inception Score (improved-gan's definition) and Kernel Inception Distance (Binkowski et al. 2018)."""
import numpy as np
import torch

__all__ = ["inception_score", "kernel_inception_distance"]


def inception_score(logits, splits=10):
    """Inception Score of logits [N, 1008] -> (mean, std) over `splits` consecutive parts.

    As in the original improved-gan code: p(y|x) = softmax of the 1008 logits computed
    without the fc bias (InceptionOutput.logits_unbiased), the samples cut into `splits`
    consecutive parts (rows k*N//splits up to (k+1)*N//splits), each scored as
    exp(mean_x KL(p(y|x) || p(y))) with p(y) the mean over that part; reported as the mean
    and the population standard deviation (np.std) of the per-part scores. Computed in float64.
    """
    logits = torch.as_tensor(logits).detach().to("cpu", torch.float64)
    if logits.dim() != 2:
        raise ValueError(f"expected logits [N, classes], got shape {tuple(logits.shape)}")
    n = len(logits)
    if splits < 1 or n < splits:
        raise ValueError(f"the Inception Score needs at least as many samples as splits ({splits}), got {n}")
    p = logits.softmax(dim=1)
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        p_y = part.mean(0, keepdim=True)
        # xlogy makes 0 log 0 = 0 for classes with (numerically) zero probability.
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, p_y)).sum(1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def kernel_inception_distance(features_a, features_b, num_subsets=100, subset_size=1000, seed=0, device=None):
    """KID between two feature sets [n, d] -> (mean, std) over random subsets.

    The unbiased estimator of the squared MMD with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, computed on `num_subsets` pairs of random subsets of
    m = min(subset_size, n_a, n_b) samples each (drawn without replacement), as in the KID
    paper and NVlabs' stylegan2-ada metric. Reported as the mean and the population std of
    the per-subset estimates. Computed in float64 on `device` (default: where features_a
    lives; 100 subsets of 1000 are ~1.2 TFLOP, quick on a GPU). The subsets: with
    rng = np.random.default_rng(seed), subset k takes rows rng.choice(n_a, m, replace=False)
    of A and then rng.choice(n_b, m, replace=False) of B (the tests rebuild them this way).
    """
    a = torch.as_tensor(features_a).detach()
    device = a.device if device is None else torch.device(device)
    a = a.to(device, torch.float64)
    b = torch.as_tensor(features_b).detach().to(device, torch.float64)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features [n, d] of equal d, got {tuple(a.shape)} and {tuple(b.shape)}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(num_subsets):
        x = a[torch.from_numpy(rng.choice(len(a), m, replace=False)).to(device)]
        y = b[torch.from_numpy(rng.choice(len(b), m, replace=False)).to(device)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        # Unbiased: the within-set sums leave out the diagonal k(x_i, x_i).
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        estimates.append(float(within - 2 * k_xy.mean()))
    return float(np.mean(estimates)), float(np.std(estimates))
