"""Frechet distance, statistics, npz files, Inception Score and KID against independent oracles."""
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from stylenas.metrics import (FeatureStats, StatsFileError, batched_eigvalsh, frechet_distance,
                              frechet_distance_batched, inception_score, kernel_inception_distance, load_stats,
                              save_stats)
from stylenas.metrics import frechet


# --- oracles -------------------------------------------------------------------------------

def scipy_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, restated: trace of scipy's sqrtm of S1 S2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def exact_fid(x1, x2):
    """FID of two sample sets through the n1 x n2 cross product (exact also when N < d):
    the non-zero eigenvalues of S1 S2 are the squared singular values of C1 C2^T / sqrt((n1-1)(n2-1))."""
    c1, c2 = x1 - x1.mean(0), x2 - x2.mean(0)
    n1, n2 = len(x1), len(x2)
    tr_sqrt = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    diff = x1.mean(0) - x2.mean(0)
    return diff @ diff + (c1 ** 2).sum() / (n1 - 1) + (c2 ** 2).sum() / (n2 - 1) - 2 * tr_sqrt


def features(rng, n, d, shift=0.0, mix=None):
    """Non-negative, correlated features, like post-ReLU Inception activations."""
    mix = rng.standard_normal((d, d)) / math.sqrt(d) if mix is None else mix
    return np.maximum(rng.standard_normal((n, d)) @ mix + shift, 0)


def stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


# --- Frechet distance ----------------------------------------------------------------------

# Full rank (Cholesky), one or both singular of low rank (pivoted Cholesky) or of high rank
# (eigh), and small dimensions.
@pytest.mark.parametrize("n1,n2,d", [(600, 800, 128), (300, 300, 256), (40, 30, 128), (30, 500, 128),
                                     (500, 20, 128), (60, 70, 128), (12, 10, 256), (50, 60, 16), (20, 20, 3),
                                     (10, 12, 2)])
def test_frechet_matches_pytorch_fid_formula(n1, n2, d):
    rng = np.random.default_rng(n1 + n2 + d)
    mix = rng.standard_normal((d, d)) / math.sqrt(d)
    x1, x2 = features(rng, n1, d, mix=mix), features(rng, n2, d, shift=0.2, mix=mix)
    ours = frechet_distance(*stats(x1), *stats(x2))
    assert isinstance(ours, float)
    assert ours == pytest.approx(scipy_fid(*stats(x1), *stats(x2)), rel=1e-6)
    # Against the exact cross-product value the eigenvalue route is far tighter than sqrtm.
    assert ours == pytest.approx(exact_fid(x1, x2), rel=1e-10)


def test_frechet_one_dimension():
    # d = 1: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2), in closed form.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 4 + 9 - 12)
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == \
        pytest.approx(5.0)


@pytest.mark.parametrize("n,d", [(400, 64), (30, 128)])
def test_frechet_nearly_identical_is_zero_not_negative(n, d):
    rng = np.random.default_rng(n)
    x = features(rng, n, d)
    mu, sigma = stats(x)
    scale = np.trace(sigma)
    same = frechet_distance(mu, sigma, mu, sigma)
    assert -1e-9 <= same < 1e-10 * scale
    # pytorch-fid's sqrtm lands ~1e-4 below zero on the singular case; ours stays >= -1e-9.
    x2 = x + 1e-6 * rng.standard_normal(x.shape)
    near = frechet_distance(*stats(x), *stats(x2))
    assert near >= -1e-9
    assert near == pytest.approx(exact_fid(x, x2), abs=1e-10 * scale)
    if n > d:  # full rank: sqrtm is accurate here too
        assert near == pytest.approx(scipy_fid(*stats(x), *stats(x2)), abs=1e-9 * scale)


def test_frechet_symmetric_and_accepts_tensors_and_float32():
    rng = np.random.default_rng(1)
    a, b = stats(features(rng, 300, 32)), stats(features(rng, 200, 32, shift=0.5))
    value = frechet_distance(*a, *b)
    assert frechet_distance(*b, *a) == pytest.approx(value, rel=1e-12)
    as_tensors = [torch.from_numpy(v) for v in (*a, *b)]
    assert frechet_distance(*as_tensors) == pytest.approx(value, rel=1e-12)
    as_f32 = [v.astype(np.float32) for v in (*a, *b)]
    assert frechet_distance(*as_f32) == pytest.approx(value, rel=1e-5)


@pytest.mark.parametrize("n,route", [(300, "cholesky"), (10, "pivoted"), (50, "eigh")])
def test_sqrt_factor_routes(n, route, monkeypatch):
    d = 64  # pivoted Cholesky up to rank d / 4 = 16
    sigma = torch.from_numpy(np.cov(features(np.random.default_rng(n), n, d), rowvar=False))
    eigh_calls = []
    real = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda a, **kw: eigh_calls.append(1) or real(a, **kw))
    factor, triangular = frechet.sqrt_factor(sigma)
    assert factor.shape == (d, min(n - 1, d))
    assert triangular == (route == "cholesky") and bool(eigh_calls) == (route == "eigh")
    torch.testing.assert_close(factor @ factor.T, sigma, rtol=0, atol=1e-12 * float(sigma.diagonal().max()))


def test_frechet_constant_features():
    # Zero covariances (every sample the same): only the means count.
    assert frechet_distance(np.ones(3), np.zeros((3, 3)), np.zeros(3), np.eye(3)) == pytest.approx(3 + 3)
    assert frechet_distance(np.ones(3), np.zeros((3, 3)), np.zeros(3), np.zeros((3, 3))) == pytest.approx(3)
    batched = frechet_distance_batched(np.ones((2, 3)), np.stack([np.zeros((3, 3)), np.eye(3)]), np.zeros(3),
                                       np.zeros((3, 3)))
    np.testing.assert_allclose(batched.numpy(), [3, 6])


def test_frechet_rejects_bad_input():
    mu, sigma = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(mu, sigma, np.zeros(5), np.eye(5))
    with pytest.raises(ValueError, match="covariance has shape"):
        frechet_distance(mu, np.eye(3), mu, sigma)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu, np.full((4, 4), np.nan), mu, sigma)


def test_blocked_triangular_congruence_equals_full_product():
    rng = np.random.default_rng(0)
    d = 70  # not a multiple of the block
    sigma = torch.from_numpy(np.cov(features(rng, 200, d), rowvar=False))
    factor = torch.linalg.cholesky(torch.from_numpy(np.cov(features(rng, 300, d, shift=0.3), rowvar=False)))
    full = factor.T @ sigma @ factor
    blocked = frechet._congruence(factor, torch.stack([sigma, 2 * sigma]), True, block=16)
    for k, scale in enumerate((1, 2)):
        assert torch.allclose(blocked[k].tril(), scale * full.tril(), rtol=1e-12, atol=1e-12)


def _batch(rng, d, sizes):
    mix = rng.standard_normal((d, d)) / math.sqrt(d)
    pairs = [stats(features(rng, n, d, shift=0.1 * k, mix=mix)) for k, n in enumerate(sizes)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.mark.parametrize("ref_n", [500, 40, 15])  # full-rank reference, singular of high and of low rank
def test_batched_equals_looped(ref_n):
    rng = np.random.default_rng(ref_n)
    d = 96
    mu, sigma = _batch(rng, d, [300, 50, 1000, 20, 400])  # a mix of full-rank and singular candidates
    mu_ref, sigma_ref = stats(features(rng, ref_n, d, shift=0.05))
    batched = frechet_distance_batched(mu, sigma, mu_ref, sigma_ref)
    assert batched.shape == (5,) and batched.dtype == torch.float64
    looped = [frechet_distance(mu[k], sigma[k], mu_ref, sigma_ref) for k in range(5)]
    np.testing.assert_allclose(batched.numpy(), looped, rtol=1e-10)
    np.testing.assert_allclose(batched.numpy(), [scipy_fid(mu[k], sigma[k], mu_ref, sigma_ref) for k in range(5)],
                               rtol=1e-6)
    tensors = frechet_distance_batched(torch.from_numpy(mu), torch.from_numpy(sigma), torch.from_numpy(mu_ref),
                                       torch.from_numpy(sigma_ref))
    np.testing.assert_allclose(tensors.numpy(), batched.numpy(), rtol=1e-12)


def test_batched_factors_the_reference_once(monkeypatch):
    rng = np.random.default_rng(3)
    mu, sigma = _batch(rng, 32, [200] * 6)
    mu_ref, sigma_ref = stats(features(rng, 300, 32))
    calls = []
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda a, **kw: calls.append(tuple(a.shape)) or real(a, **kw))
    frechet_distance_batched(mu, sigma, mu_ref, sigma_ref)
    assert calls == [(32, 32)]


def test_batched_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected mu"):
        frechet_distance_batched(np.zeros((2, 3)), np.zeros((3, 3, 3)), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="reference has"):
        frechet_distance_batched(np.zeros((2, 3)), np.stack([np.eye(3)] * 2), np.zeros(4), np.eye(4))


def test_batched_eigvalsh_interface():
    a = torch.tensor([[[2.0, 0.0], [1.0, 3.0]]], dtype=torch.float64)  # only the lower triangle counts
    np.testing.assert_allclose(batched_eigvalsh(a).numpy(), [np.linalg.eigvalsh([[2, 1], [1, 3]])], rtol=1e-14)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        batched_eigvalsh(a, impl="cuda")
    with pytest.raises(ValueError):
        batched_eigvalsh(a, impl="fast")


@pytest.mark.cuda
def test_batched_on_gpu_matches_cpu():
    rng = np.random.default_rng(5)
    mu, sigma = _batch(rng, 256, [400, 100, 600])
    mu_ref, sigma_ref = stats(features(rng, 500, 256))
    cpu = frechet_distance_batched(mu, sigma, mu_ref, sigma_ref)
    gpu = frechet_distance_batched(*(torch.from_numpy(v).cuda() for v in (mu, sigma, mu_ref, sigma_ref)))
    assert gpu.is_cuda
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=1e-9)


def test_pytorch_fid_oracle():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(7)
    for n1, n2, d in [(500, 400, 128), (40, 50, 128), (30, 40, 4)]:
        a, b = stats(features(rng, n1, d)), stats(features(rng, n2, d, shift=0.3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = fid_score.calculate_frechet_distance(*a, *b)
        assert frechet_distance(*a, *b) == pytest.approx(expected, rel=1e-6)


# --- statistics and npz files ---------------------------------------------------------------

def test_feature_stats_equal_numpy_in_chunks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((257, 20)) * 3 + 1e4  # a large offset: no E[xx^T] - mu mu^T cancellation
    x[8:58] = x[8:58].astype(np.float32)  # this chunk goes in as a float32 tensor
    acc = FeatureStats()
    for start, stop in [(0, 1), (1, 8), (8, 58), (58, 59), (59, 159), (159, 257)]:
        chunk = x[start:stop]
        acc.update(torch.from_numpy(chunk).float() if start == 8 else chunk)
    mu, sigma = acc.stats()
    assert acc.n == 257 and mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-10)


def test_feature_stats_needs_two_samples():
    acc = FeatureStats().update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        acc.sigma()
    with pytest.raises(ValueError, match="dimensions"):
        acc.update(np.ones((2, 4)))


def test_npz_round_trip_and_atomic_write(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = stats(rng.standard_normal((50, 8)))
    path = tmp_path / "sub" / "stats.npz"
    save_stats(path, mu, sigma)
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.npz"]  # no temp file left
    mu2, sigma2 = load_stats(path)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    with np.load(path) as f:  # what pytorch-fid does with a statistics file
        assert set(f.files) == {"mu", "sigma"}
        np.testing.assert_array_equal(f["sigma"][:], sigma)
    # A bad save raises before touching an existing file.
    with pytest.raises(StatsFileError):
        save_stats(path, mu, sigma[:3])
    np.testing.assert_array_equal(load_stats(path)[1], sigma)


def test_npz_written_like_pytorch_fid_loads(tmp_path):
    # pytorch-fid saves np.mean of float32 activations (float32 mu) and a float64 np.cov.
    path = tmp_path / "theirs.npz"
    np.savez(path, mu=np.arange(3, dtype=np.float32), sigma=np.eye(3))
    mu, sigma = load_stats(path)
    assert mu.dtype == np.float64 and mu.tolist() == [0, 1, 2]


@pytest.mark.parametrize("content,match", [
    ("missing", "not found"),
    ("garbage", "cannot read"),
    ("keys", "expected arrays 'mu' and 'sigma'"),
    ("dims", "expected mu \\[d\\] and sigma \\[d, d\\]"),
    ("nan", "NaN"),
    ("object", "cannot read"),
])
def test_npz_errors(tmp_path, content, match):
    path = tmp_path / "bad.npz"
    if content == "garbage":
        path.write_bytes(b"not a zip file")
    elif content == "keys":
        np.savez(path, mean=np.zeros(3), cov=np.eye(3))
    elif content == "dims":
        np.savez(path, mu=np.zeros(4), sigma=np.eye(3))
    elif content == "nan":
        np.savez(path, mu=np.full(3, np.nan), sigma=np.eye(3))
    elif content == "object":  # a pickled object array must not be unpickled
        np.savez(path, mu=np.array([object()], dtype=object), sigma=np.eye(1))
    with pytest.raises(StatsFileError, match=match):
        load_stats(path)


def test_npz_readable_by_pytorch_fid(tmp_path):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(0)
    mu, sigma = stats(rng.standard_normal((40, 6)))
    save_stats(tmp_path / "ours.npz", mu, sigma)
    m, s = fid_score.compute_statistics_of_path(str(tmp_path / "ours.npz"), None, 1, 6, "cpu")
    np.testing.assert_array_equal(m, mu)
    np.testing.assert_array_equal(s, sigma)


# --- Inception Score -------------------------------------------------------------------------

def test_inception_score_by_hand():
    # Two samples with p(y|x) = (a, 1 - a) and (1 - a, a): p(y) = (1/2, 1/2) and each KL is
    # a ln 2a + (1 - a) ln 2(1 - a).
    a = 0.9
    logits = torch.tensor([[math.log(a), math.log(1 - a)], [math.log(1 - a), math.log(a)]], dtype=torch.float64)
    kl = a * math.log(2 * a) + (1 - a) * math.log(2 * (1 - a))
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(math.exp(kl), rel=1e-12) and std == 0
    # Uniform predictions score 1; confident predictions over k distinct classes score k.
    assert inception_score(torch.zeros(8, 1008), splits=2) == (pytest.approx(1.0), pytest.approx(0.0))
    onehot = torch.eye(4) * 1000.0
    assert inception_score(onehot, splits=1)[0] == pytest.approx(4.0, rel=1e-12)


def test_inception_score_splits_like_improved_gan():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((23, 10)) * 3
    # improved-gan, restated: parts k*N//splits .. (k+1)*N//splits, exp(mean KL), mean and np.std.
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for k in range(4):
        part = p[k * 23 // 4:(k + 1) * 23 // 4]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    mean, std = inception_score(logits, splits=4)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-10)
    with pytest.raises(ValueError, match="at least as many samples"):
        inception_score(logits[:3], splits=4)


# --- KID ---------------------------------------------------------------------------------------

def mmd2_by_hand(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, by explicit loops."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def kid_oracle(x, y, num_subsets=100, subset_size=1000, seed=0):
    """KID in plain numpy: the subsets kernel_inception_distance documents (np.random.default_rng(seed);
    for each subset rng.choice(len(x), m, replace=False), then the same for y), each scored by the
    unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 written out as sums; mean and population std."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    m, d = min(subset_size, len(x), len(y)), x.shape[1]
    values = []
    for _ in range(num_subsets):
        xs, ys = x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = (xs @ xs.T / d + 1) ** 3, (ys @ ys.T / d + 1) ** 3, (xs @ ys.T / d + 1) ** 3
        off_diagonal = lambda k: k.sum() - np.trace(k)  # noqa: E731
        values.append((off_diagonal(kxx) + off_diagonal(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m ** 2)
    return float(np.mean(values)), float(np.std(values))


def test_kid_oracle_is_the_loop_formula():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((7, 4)) + 0.3
    sub = np.random.default_rng(5)
    xs, ys = x[sub.choice(9, 6, replace=False)], y[sub.choice(7, 6, replace=False)]
    assert kid_oracle(x, y, num_subsets=1, subset_size=6, seed=5)[0] == pytest.approx(mmd2_by_hand(xs, ys), rel=1e-12)


@pytest.mark.parametrize("na,nb,m,subsets,seed", [(40, 30, 10, 7, 0), (25, 60, 1000, 3, 4), (50, 50, 2, 20, 1)])
def test_kid_matches_numpy_oracle_on_subsets(na, nb, m, subsets, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((na, 12)) * 2, rng.standard_normal((nb, 12)) + 0.4
    mean, std = kernel_inception_distance(torch.from_numpy(a).float(), b, num_subsets=subsets, subset_size=m, seed=seed)
    want = kid_oracle(torch.from_numpy(a).float().double().numpy(), b, subsets, m, seed)
    assert mean == pytest.approx(want[0], rel=1e-10) and std == pytest.approx(want[1], rel=1e-8)
    assert std > 0 or min(na, nb) <= m


def test_kid_matches_hand_computation():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.5
    # With subsets as large as the sets every subset is a permutation: one value, std 0.
    mean, std = kernel_inception_distance(x, y, num_subsets=3, subset_size=50)
    assert mean == pytest.approx(mmd2_by_hand(x, y), rel=1e-12)
    assert std == pytest.approx(0, abs=1e-12)


def test_kid_subsets_separate_distributions():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 16)), rng.standard_normal((300, 16))
    same, _ = kernel_inception_distance(a, b, num_subsets=20, subset_size=100)
    shifted, std = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=100)
    assert abs(same) < 0.1 * shifted and std > 0
    assert kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3) == \
        kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3)
