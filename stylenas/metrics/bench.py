"""Benchmark of the Frechet distance: ours vs pytorch-fid's scipy sqrtm route vs torchmetrics, and batched vs looped.

All routes get the same statistics in one process. pytorch-fid and torchmetrics are timed
only when importable (benchmark-only dependencies); without pytorch-fid its formula is
restated here with scipy, which is what it runs.
"""
import platform
import statistics
import time
import warnings

import numpy as np
import scipy
import scipy.linalg
import torch

from ..ops.eigvalsh import eigvalsh
from .frechet import _congruence, frechet_distance, frechet_distance_batched, sqrt_factor


def scipy_sqrtm_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance: trace of scipy.linalg.sqrtm(S1 S2), with its offset retry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(np.real(covmean)))


def _pytorch_fid():
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
        import pytorch_fid
    except ImportError:
        return "scipy_sqrtm", scipy_sqrtm_fid, None

    def run(*stats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm(disp=...)
            return float(calculate_frechet_distance(*stats))
    return "pytorch_fid", run, pytorch_fid.__version__


def _torchmetrics():
    try:
        import torchmetrics
        from torchmetrics.image.fid import _compute_fid
    except ImportError:
        return None, None

    def run(mu1, sigma1, mu2, sigma2):
        # FrechetInceptionDistance.compute() ends in this call, on float64 tensors.
        return float(_compute_fid(mu1, sigma1, mu2, sigma2))
    return run, torchmetrics.__version__


def make_statistics(count, dims=2048, samples=4096, seed=0):
    """`count` float64 (mu, sigma) pairs of correlated, non-negative features (like pooled
    Inception activations), full rank (samples > dims), from shifted versions of one mixing."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dims, dims, generator=g, dtype=torch.float64) / dims ** 0.5
    out = []
    for k in range(count):
        x = (torch.randn(samples, dims, generator=g, dtype=torch.float64) @ mix + 0.05 * k).clamp(min=0)
        out.append((x.mean(0).numpy(), torch.cov(x.T).numpy()))
    return out


def _time(fn, repeats, sync=None):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(dims=2048, samples=4096, batch=16, repeats=3, slow_repeats=1, device="cpu", seed=0, few_samples=500,
        log=print):
    """Time every route on the same statistics and return a JSON-ready dict.

    `repeats` for the fast routes (median), `slow_repeats` for the scipy sqrtm route (~10 s
    per pair on a 2-core CPU). The single pair is (candidate 0, reference), so its values
    are comparable with batched[0]. `few_samples` (0: skip) adds a pair of singular
    statistics from that many samples each, the case of rewards computed on small samples.
    """
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    log(f"making {batch + 1} statistics of {dims} dimensions from {samples} samples each")
    stats = make_statistics(batch + 1, dims, samples, seed)
    (mu_ref, sigma_ref), cands = stats[0], stats[1:]
    pair = (*cands[0], mu_ref, sigma_ref)
    on_device = [torch.from_numpy(v).to(device) for v in pair]

    result = {
        "machine": {"cpu": _cpu_name(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "numpy": np.__version__, "scipy": scipy.__version__, "device": str(device)},
        "dims": dims, "samples_per_set": samples, "single": {},
    }
    if device.type == "cuda":
        result["machine"]["gpu"] = torch.cuda.get_device_name(device)
    single = result["single"]

    log("ours: Cholesky + symmetric eigenvalues, float64")
    frechet_distance(*on_device)  # warm-up: LAPACK/cuSOLVER workspaces, first-call costs
    seconds, value = _time(lambda: frechet_distance(*on_device), repeats, sync)
    single["ours"] = {"seconds": seconds, "value": value}

    name, ref_fn, version = _pytorch_fid()
    log(f"{name}: scipy.linalg.sqrtm of S1 S2 (slow)")
    seconds, value = _time(lambda: ref_fn(*pair), slow_repeats)
    single[name] = {"seconds": seconds, "value": value, **({"version": version} if version else {})}

    tm_fn, tm_version = _torchmetrics()
    if tm_fn is not None:
        log("torchmetrics: eigvals of S1 S2 (general eigenproblem), float64")
        cpu_pair = [torch.from_numpy(v) for v in pair]
        tm_fn(*cpu_pair)
        seconds, value = _time(lambda: tm_fn(*cpu_pair), repeats)
        single["torchmetrics"] = {"seconds": seconds, "value": value, "version": tm_version}

    ours = single["ours"]
    result["speedup"] = {f"vs_{k}": single[k]["seconds"] / ours["seconds"] for k in single if k != "ours"}
    result["relative_difference"] = {f"ours_vs_{k}": abs(ours["value"] - single[k]["value"]) / abs(single[k]["value"])
                                     for k in single if k != "ours"}

    if few_samples:
        log(f"singular statistics from {few_samples} samples each")
        few = [torch.from_numpy(v) for s_ in make_statistics(2, dims, few_samples, seed + 1) for v in s_]
        few_np = [v.numpy() for v in few]
        entry = {"samples_per_set": few_samples}
        entry["ours"] = dict(zip(("seconds", "value"), _time(lambda: frechet_distance(*few), repeats)))
        entry[name] = dict(zip(("seconds", "value"), _time(lambda: ref_fn(*few_np), slow_repeats)))
        if tm_fn is not None:
            entry["torchmetrics"] = dict(zip(("seconds", "value"), _time(lambda: tm_fn(*few), repeats)))
        entry["speedup"] = {f"vs_{k}": entry[k]["seconds"] / entry["ours"]["seconds"]
                            for k in (name, "torchmetrics") if k in entry}
        result["singular"] = entry

    log(f"batched: {batch} candidates against one reference")
    mus = torch.from_numpy(np.stack([c[0] for c in cands])).to(device)
    sigmas = torch.from_numpy(np.stack([c[1] for c in cands])).to(device)
    ref = [torch.from_numpy(v).to(device) for v in (mu_ref, sigma_ref)]
    batched_seconds, batched = _time(lambda: frechet_distance_batched(mus, sigmas, *ref), 1, sync)
    looped_seconds, looped = _time(lambda: [frechet_distance(mus[k], sigmas[k], *ref) for k in range(batch)], 1, sync)
    per_pair = batched_seconds / batch
    result["batched"] = {
        "B": batch,
        "seconds": batched_seconds,
        "per_pair_seconds": per_pair,
        "looped_seconds": looped_seconds,
        "speedup_vs_looped": looped_seconds / batched_seconds,
        f"speedup_vs_{name}_per_pair": single[name]["seconds"] / per_pair,
        "max_relative_difference_vs_looped": float(max(abs(b - l) / abs(l) for b, l in zip(batched.tolist(), looped))),
        "relative_difference_first_vs_single": abs(float(batched[0]) - ours["value"]) / abs(ours["value"]),
    }
    if device.type == "cuda":
        result["eigvalsh_on_gpu"] = _gpu_eigvalsh(sigmas, ref[1], repeats, log)
    return result


def _gpu_eigvalsh(sigmas, sigma_ref, repeats, log):
    """The eigenvalue step alone on the GPU: the batched kernel vs cuSOLVER (torch.linalg.eigvalsh),
    on the FID's own matrices R^T S R, for one matrix and for the whole batch."""
    factor, triangular = sqrt_factor(sigma_ref)
    matrices = _congruence(factor, sigmas, triangular)
    out = {}
    for count in sorted({1, len(matrices)}):
        a = matrices[:count]
        entry = {}
        for impl, label in (("cuda", "kernel"), ("ref", "cusolver")):
            try:
                eigvalsh(a, impl=impl)  # warm-up (and the build / self-check for the kernel)
                seconds, values = _time(lambda: eigvalsh(a, impl=impl), repeats, torch.cuda.synchronize)
            except Exception as error:  # no extension: report it, keep the rest of the benchmark
                entry[label] = {"error": f"{type(error).__name__}: {error}"}
                continue
            entry[label] = {"seconds": seconds}
            entry.setdefault("values", {})[label] = values
        values = entry.pop("values", {})
        if len(values) == 2:
            scale = values["cusolver"].abs().max()
            entry["max_relative_difference"] = float((values["kernel"] - values["cusolver"]).abs().max() / scale)
            entry["kernel_speedup_vs_cusolver"] = entry["cusolver"]["seconds"] / entry["kernel"]["seconds"]
        log(f"eigvalsh on the GPU, B={count}: {entry}")
        out[f"B={count}"] = entry
    return out
