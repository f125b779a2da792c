"""The batched symmetric eigenvalue kernel (csrc/eigvalsh.cu) against torch.linalg.eigvalsh (LAPACK),
on a GPU and through the host emulation of the kernels."""
import importlib

import numpy as np
import pytest
import torch

from stylenas.metrics import frechet_distance, frechet_distance_batched
from stylenas.ops import eigvalsh
from stylenas.ops import extension


def lapack(a):
    return torch.linalg.eigvalsh(a.cpu(), UPLO="L")


def assert_eigenvalues(actual, a, tolerance=1e-12):
    expected = lapack(a)
    assert actual.shape == expected.shape and actual.dtype == torch.float64
    scale = expected.abs().max().clamp_min(1e-290)  # the zero matrix: bisection stops at ~1e-308
    error = float((actual.cpu() - expected).abs().max() / scale)
    assert error <= tolerance, error


def matrices(n, seed=0):
    """A batch of hard and easy symmetric matrices of size n."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn([n, n + 2], generator=gen, dtype=torch.float64)
    cases = {
        "positive definite": x @ x.T / n,
        "rank 2": x[:, :2] @ x[:, :2].T,
        "indefinite": x[:, :n] + x[:, :n].T,
        "diagonal": torch.diag(torch.linspace(-3, 5, n, dtype=torch.float64)),
        "zero": torch.zeros([n, n], dtype=torch.float64),
        "clustered": torch.eye(n, dtype=torch.float64) + 1e-9 * (x[:, :n] + x[:, :n].T),
        "large scale": 1e8 * (x @ x.T),
        "small scale": 1e-8 * (x @ x.T),
    }
    return torch.stack(list(cases.values())), list(cases)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 40, 65, 129])
def test_kernel_matches_lapack(kernel_device, n):
    a, names = matrices(n, seed=n)
    garbage = torch.randn(a.shape, dtype=torch.float64).triu(1) * 1e3  # only the lower triangle counts
    actual = eigvalsh((a.tril() + garbage).to(kernel_device), impl="cuda")
    for i, name in enumerate(names):
        try:
            assert_eigenvalues(actual[i], a[i])
        except AssertionError as error:
            raise AssertionError(f"{name}, n={n}: {error}")


def test_kernel_batch_shapes_and_order(kernel_device):
    a = matrices(9)[0][:6].reshape(2, 3, 9, 9).to(kernel_device)
    actual = eigvalsh(a, impl="cuda")
    assert actual.shape == (2, 3, 9)
    assert bool((actual.diff(dim=-1) >= 0).all())
    assert_eigenvalues(actual, a)
    assert eigvalsh(a[:0], impl="cuda").shape == (0, 3, 9)


def test_kernel_batches_above_the_grid_limit_go_in_slices(kernel_device, monkeypatch):
    module = importlib.import_module("stylenas.ops.eigvalsh")
    monkeypatch.setattr(module, "MAX_KERNEL_BATCH", 3)
    a = matrices(6)[0][:7].to(kernel_device)
    assert_eigenvalues(eigvalsh(a, impl="cuda"), a)


def test_kernel_larger_than_a_block(kernel_device):
    """n above the 256 threads and 64-row chunks of the kernel's tiles."""
    n = 300 if kernel_device.type == "cuda" else 270
    gen = torch.Generator().manual_seed(1)
    x = torch.randn([2, n, 50], generator=gen, dtype=torch.float64)
    a = torch.stack([x[0] @ x[0].T, x[1, :, :1] @ x[1, :, :1].T + torch.eye(n, dtype=torch.float64)])
    assert_eigenvalues(eigvalsh(a.to(kernel_device), impl="cuda"), a)


def test_self_check_and_auto_dispatch(kernel_device, recwarn):
    ok, error = extension.run_self_check("eigvalsh", kernel_device)
    assert ok, error
    a = matrices(6)[0].to(kernel_device)
    assert_eigenvalues(eigvalsh(a), a)
    assert extension._self_check_results[("eigvalsh", str(kernel_device))]
    assert not [w for w in recwarn if "stylenas" in str(w.message)]


@pytest.mark.parametrize("kernel_seconds,expected", [(0.1, "cuda"), (3.0, "ref")])
def test_auto_keeps_the_faster_implementation_per_shape(kernel_device, monkeypatch, kernel_seconds, expected):
    module = importlib.import_module("stylenas.ops.eigvalsh")
    a = matrices(7)[0].to(kernel_device)
    eigvalsh(a)  # the self-check runs on first use; out of the way before counting
    monkeypatch.setattr(module, "_faster", {})
    timings, kernel_calls = [], []
    real_kernel = module._eigvalsh_kernel
    monkeypatch.setattr(module, "_eigvalsh_kernel", lambda a: kernel_calls.append(1) or real_kernel(a))
    monkeypatch.setattr(module, "_seconds", lambda fn, a: timings.append(fn) or
                        (kernel_seconds if fn is module._eigvalsh_kernel else 1.0))
    for _ in range(3):
        assert_eigenvalues(eigvalsh(a), a)
    assert len(timings) == 2  # timed once for this (device, n, batch size)
    assert module._faster == {(str(kernel_device), 7, len(a)): expected}
    # one warm-up call of the kernel, then only the chosen implementation runs
    assert len(kernel_calls) == (1 + 3 if expected == "cuda" else 1)
    eigvalsh(a[:2])  # another batch size: timed again
    assert len(timings) == 4


def test_frechet_distance_batched_through_the_kernel(kernel_device):
    rng = np.random.default_rng(3)
    d = 24
    features = [rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) for n in (200, 60, 15, 400)]
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in features]  # the 15-sample one is singular
    mu = torch.tensor(np.stack([m for m, _ in stats[:3]]), device=kernel_device)
    sigma = torch.tensor(np.stack([s for _, s in stats[:3]]), device=kernel_device)
    mu_ref, sigma_ref = stats[3]
    kernel = frechet_distance_batched(mu, sigma, mu_ref, sigma_ref, impl="cuda")
    reference = [frechet_distance(m, s, mu_ref, sigma_ref) for m, s in stats[:3]]
    np.testing.assert_allclose(kernel.cpu().numpy(), reference, rtol=1e-9)


def test_interface_errors():
    with pytest.raises(ValueError, match="square"):
        eigvalsh(torch.zeros([3, 4], dtype=torch.float64))
    with pytest.raises(ValueError, match="float64"):
        eigvalsh(torch.zeros([3, 3]))
    a = torch.eye(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="gradients"):
        eigvalsh(a, impl="cuda")
    eigvalsh(a).sum().backward()  # auto: the reference, which has gradients
    assert torch.allclose(a.grad, torch.eye(3, dtype=torch.float64))


@pytest.mark.cuda
def test_kernel_fid_size_on_gpu(cuda_extension):
    """The FID case: 2048 x 2048 covariance products, a small batch."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 2048, 2500], generator=gen, dtype=torch.float64)
    a = (x @ x.mT / 2500).cuda()
    assert_eigenvalues(eigvalsh(a, impl="cuda"), a, tolerance=1e-11)


@pytest.mark.cuda
def test_fid_benchmark_reports_the_kernel_on_gpu(cuda_extension):
    from stylenas.metrics import bench

    result = bench.run(dims=64, samples=200, batch=3, repeats=1, slow_repeats=1, few_samples=0, device="cuda",
                       log=lambda line: None)
    for count in ("B=1", "B=3"):
        entry = result["eigvalsh_on_gpu"][count]
        assert "error" not in entry["kernel"] and "error" not in entry["cusolver"], entry
        assert entry["max_relative_difference"] < 1e-10
        kernel, cusolver = entry["kernel"]["seconds"], entry["cusolver"]["seconds"]
        assert 0 < kernel < 10 and 0 < cusolver < 10  # measured, and no build or self-check inside the timing
        assert entry["kernel_speedup_vs_cusolver"] == pytest.approx(cusolver / kernel)
