"""Timings of the ops: the reference against the CUDA kernel (and, when given, NVlabs'
stylegan2-ada-pytorch plugin) on StyleGAN2-sized shapes, forward + backward, in one run.

Used by ``scripts/bench_ops.py``; ratios matter, absolute times on a shared machine do not.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..devices import resolve_device
from . import extension
from .bias_act import bias_act
from .modulated_conv2d import modulated_conv2d
from .upfirdn2d import setup_filter, upfirdn2d


@dataclass
class Case:
    name: str
    shape: tuple  # [N, C, H, W]
    make: Callable  # (device, shape, nvlabs ops) -> (inputs, fn(*inputs, impl=...), nvlabs fn or None)


def _upsample(device, shape, nvlabs):
    f = setup_filter([1, 3, 3, 1], device=device)
    fn = lambda x, impl: upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4, impl=impl)  # noqa: E731
    nv = nvlabs and (lambda x: nvlabs["upfirdn2d"].upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4))
    return [torch.randn(shape, device=device)], fn, nv


def _downsample(device, shape, nvlabs):
    f = setup_filter([1, 3, 3, 1], device=device)
    fn = lambda x, impl: upfirdn2d(x, f, down=2, padding=[1, 1, 1, 1], impl=impl)  # noqa: E731
    nv = nvlabs and (lambda x: nvlabs["upfirdn2d"].upfirdn2d(x, f, down=2, padding=[1, 1, 1, 1]))
    return [torch.randn(shape, device=device)], fn, nv


def _bias_lrelu(device, shape, nvlabs):
    inputs = [torch.randn(shape, device=device), torch.randn(shape[1], device=device)]
    fn = lambda x, b, impl: bias_act(x, b, act="lrelu", clamp=256, impl=impl)  # noqa: E731
    nv = nvlabs and (lambda x, b: nvlabs["bias_act"].bias_act(x, b, act="lrelu", clamp=256))
    return inputs, fn, nv


def _modconv(up, fused):
    def make(device, shape, nvlabs):
        n, c, h, w = shape
        inputs = [torch.randn(shape, device=device), torch.randn([c, c, 3, 3], device=device),
                  torch.randn([n, c], device=device) + 1]
        fn = lambda x, wt, s, impl: modulated_conv2d(x, wt, s, up=up, padding=1, fused=fused,  # noqa: E731
                                                     impl=impl)
        nv = None
        if nvlabs:
            f = setup_filter([1, 3, 3, 1], device=device)
            nv = lambda x, wt, s: nvlabs["modulated_conv2d"](x, wt, s, up=up, padding=1, resample_filter=f,  # noqa
                                                             flip_weight=(up == 1), fused_modconv=fused)
        return inputs, fn, nv
    return make


def cases(quick: bool) -> list[Case]:
    if quick:  # small enough for the CPU demo
        big, small = (2, 64, 32, 32), (2, 32, 64, 64)
    else:  # StyleGAN2-sized, as in the issue: batch 4, 512 ch at 64x64; 128 ch at 256x256
        big, small = (4, 512, 64, 64), (4, 128, 256, 256)
    return [
        Case("upfirdn2d up2 [1,3,3,1]", big, _upsample),
        Case("upfirdn2d up2 [1,3,3,1]", small, _upsample),
        Case("upfirdn2d down2 [1,3,3,1]", small, _downsample),
        Case("bias_act lrelu+clamp", big, _bias_lrelu),
        Case("bias_act lrelu+clamp", small, _bias_lrelu),
        Case("modulated_conv2d 3x3 grouped", big, _modconv(1, True)),
        Case("modulated_conv2d 3x3 non-fused", big, _modconv(1, False)),
        Case("modulated_conv2d 3x3 up2 grouped", big, _modconv(2, True)),
    ]


def _time(fn, inputs, device, repeats, warmup=2):
    """Median seconds of forward + backward."""
    inputs = [t.detach().requires_grad_() for t in inputs]

    def step():
        y = fn(*inputs)
        y.backward(torch.ones_like(y))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _max_error(fn_a, fn_b, inputs):
    with torch.no_grad():
        return extension.relative_error(fn_a(*inputs), fn_b(*inputs))


def load_nvlabs(path: str):
    """NVlabs stylegan2-ada-pytorch's ops from a checkout at `path` (a peer for comparison)."""
    sys.path.insert(0, path)
    from torch_utils.ops import bias_act as nv_bias_act  # noqa: E402
    from torch_utils.ops import upfirdn2d as nv_upfirdn2d  # noqa: E402
    from training.networks import modulated_conv2d as nv_modulated_conv2d  # noqa: E402

    return {"upfirdn2d": nv_upfirdn2d, "bias_act": nv_bias_act, "modulated_conv2d": nv_modulated_conv2d}


def run(device: str = "auto", quick: bool | None = None, repeats: int = 5, nvlabs_path: str | None = None,
        log=lambda line: None) -> dict:
    device = resolve_device(device)
    quick = device.type == "cpu" if quick is None else quick
    on_gpu = device.type == "cuda"
    nvlabs = load_nvlabs(nvlabs_path) if (nvlabs_path and on_gpu) else None
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        extension.get_extension()
    torch.manual_seed(0)
    results = []
    for case in cases(quick):
        inputs, fn, nv = case.make(device, case.shape, nvlabs)
        row = {"op": case.name, "shape": list(case.shape),
               "ref_ms": 1e3 * _time(lambda *t: fn(*t, impl="ref"), inputs, device, repeats)}
        if on_gpu:
            row["cuda_ms"] = 1e3 * _time(lambda *t: fn(*t, impl="cuda"), inputs, device, repeats)
            row["speedup_vs_ref"] = row["ref_ms"] / row["cuda_ms"]
            row["max_rel_error_vs_ref"] = _max_error(lambda *t: fn(*t, impl="cuda"),
                                                     lambda *t: fn(*t, impl="ref"), inputs)
            if nv is not None:
                row["nvlabs_ms"] = 1e3 * _time(nv, inputs, device, repeats)
                row["speedup_vs_nvlabs"] = row["nvlabs_ms"] / row["cuda_ms"]
        results.append(row)
        log(_format_row(row))
    return {
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "timing": "median forward+backward, ms",
        "results": results,
    }


def _format_row(row):
    text = f"{row['op']:<34}{str(row['shape']):<22} ref {row['ref_ms']:9.2f} ms"
    if "cuda_ms" in row:
        text += f"   cuda {row['cuda_ms']:8.2f} ms  x{row['speedup_vs_ref']:.2f}  err {row['max_rel_error_vs_ref']:.1e}"
    if "nvlabs_ms" in row:
        text += f"   nvlabs {row['nvlabs_ms']:8.2f} ms  x{row['speedup_vs_nvlabs']:.2f}"
    return text
