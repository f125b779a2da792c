"""Timings of the ops: the reference against the CUDA kernel (and, when given, NVlabs'
stylegan2-ada-pytorch plugin) on StyleGAN2-sized shapes, forward + backward, in one run; and
the 1x1 fast path of conv2d_resample before and after (the discriminator's residual skip, alone
and in the whole discriminator), in the same run.

Used by ``scripts/bench_ops.py``; ratios matter, absolute times on a shared machine do not.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..devices import median_seconds, resolve_device, synchronize
from . import extension
from .bias_act import bias_act
from .conv2d_resample import conv2d_resample
from .modulated_conv2d import modulated_conv2d
from .upfirdn2d import _filter_size, setup_filter, upfirdn2d


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


def _conv2d_resample_before(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False,
                            impl="auto"):
    """conv2d_resample as it ran before its 1x1 fast path, for the before/after rows: a 1x1
    down-sampling blurred the full-resolution input, then ran a strided convolution."""
    if w.shape[2:] != (1, 1) or up != 1 or down == 1:
        return conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter, impl)
    fw, fh = _filter_size(f)
    pad = [padding + (fw - down + 1) // 2, padding + (fw - down) // 2,
           padding + (fh - down + 1) // 2, padding + (fh - down) // 2]
    x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, impl=impl)
    return F.conv2d(x, w, stride=down, groups=groups)


@contextlib.contextmanager
def _layers_use(conv2d_resample_fn):
    """Let stylenas.nn's layers call `conv2d_resample_fn` for a while (imported here, not at the
    top: stylenas.nn sits above ops; only this benchmark reaches up)."""
    from ..nn import layers

    saved = layers.conv2d_resample
    layers.conv2d_resample = conv2d_resample_fn
    try:
        yield
    finally:
        layers.conv2d_resample = saved


def fast_path_cases(quick: bool, device) -> list[tuple[str, list, Callable, Callable]]:
    """(name, inputs, after(*inputs), before(*inputs)) for what the 1x1 fast path changes; `before`
    runs with stylenas.nn's layers on the old path (see run_fast_paths)."""
    from ..nn import Discriminator

    f = setup_filter([1, 3, 3, 1], device=device)
    if quick:
        skip_shape, batch, resolution, channels = (2, 64, 32, 32), 2, 32, dict(channel_base=1024, channel_max=64)
    else:  # StyleGAN2's skip at 256 px (128 -> 256 channels) and its 256 px discriminator at batch 4
        skip_shape, batch, resolution, channels = (4, 128, 256, 256), 4, 256, {}
    torch.manual_seed(0)
    x = torch.randn(skip_shape, device=device)
    w = torch.randn([2 * skip_shape[1], skip_shape[1], 1, 1], device=device) / skip_shape[1] ** 0.5
    D = Discriminator(resolution, **channels).to(device)
    img = torch.randn([batch, 3, resolution, resolution], device=device)
    return [
        (f"conv2d_resample 1x1 down2 {list(skip_shape)}", [x, w],
         lambda x, w: conv2d_resample(x, w, f, down=2), lambda x, w: _conv2d_resample_before(x, w, f, down=2)),
        (f"Discriminator {resolution}px batch {batch}", [img], D, D),
    ]


def run_fast_paths(device, quick: bool, repeats: int, log=lambda line: None) -> list[dict]:
    """Forward+backward of each case on the old 1x1 path and on the new one, timed in turns
    (before, after, before, ...) so that a change of load on a shared machine hits both, and
    the fastest of the repeats kept (the median of a few ms on a busy CPU is mostly waiting)."""
    rows = []
    for name, inputs, after, before in fast_path_cases(quick, device):
        def run_before(*t):
            with _layers_use(_conv2d_resample_before):
                return before(*t)

        before_ms, after_ms = (1e3 * t for t in _time_in_turns([run_before, after], inputs, device, repeats))
        row = {"case": name, "before_ms": before_ms, "after_ms": after_ms, "speedup": before_ms / after_ms,
               "max_rel_error": _max_error(after, run_before, inputs)}
        rows.append(row)
        log(f"{name:<44} before {before_ms:9.2f} ms   after {after_ms:9.2f} ms   x{row['speedup']:.2f}"
            f"   err {row['max_rel_error']:.1e}")
    return rows


def _time_in_turns(fns, inputs, device, repeats, warmup=2):
    """Fastest seconds of forward + backward of each of `fns`, which take turns."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    times = [[] for _ in fns]
    for i in range(warmup + repeats):
        for fn, fn_times in zip(fns, times):
            synchronize(device)
            start = time.perf_counter()
            y = fn(*inputs)
            y.backward(torch.ones_like(y))
            synchronize(device)
            if i >= warmup:
                fn_times.append(time.perf_counter() - start)
    return [min(t) for t in times]


def _time(fn, inputs, device, repeats, warmup=2):
    """Median seconds of forward + backward."""
    inputs = [t.detach().requires_grad_() for t in inputs]

    def step():
        y = fn(*inputs)
        y.backward(torch.ones_like(y))

    return median_seconds(step, repeats, device, warmup)


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
    kernels = False
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        # a GPU without a usable toolkit times the references only (get_extension warned once why)
        kernels = extension.get_extension() is not None
        if not kernels:
            log("CUDA kernels unavailable: timing the PyTorch references only")
    torch.manual_seed(0)
    results = []
    for case in cases(quick):
        inputs, fn, nv = case.make(device, case.shape, nvlabs)
        row = {"op": case.name, "shape": list(case.shape),
               "ref_ms": 1e3 * _time(lambda *t: fn(*t, impl="ref"), inputs, device, repeats)}
        if kernels:
            row["cuda_ms"] = 1e3 * _time(lambda *t: fn(*t, impl="cuda"), inputs, device, repeats)
            row["speedup_vs_ref"] = row["ref_ms"] / row["cuda_ms"]
            row["max_rel_error_vs_ref"] = _max_error(lambda *t: fn(*t, impl="cuda"),
                                                     lambda *t: fn(*t, impl="ref"), inputs)
            if nv is not None:
                row["nvlabs_ms"] = 1e3 * _time(nv, inputs, device, repeats)
                row["speedup_vs_nvlabs"] = row["nvlabs_ms"] / row["cuda_ms"]
        results.append(row)
        log(_format_row(row))
    log("1x1 fast path (impl auto: the kernels on a GPU, else the reference), fastest forward+backward:")
    fast_paths = run_fast_paths(device, quick, repeats, log)
    return {
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "kernels": kernels,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "timing": "median forward+backward, ms",
        "results": results,
        "fast_paths": fast_paths,
        "fast_paths_timing": "fastest forward+backward of the repeats, old and new path in turns, ms",
    }


def _format_row(row):
    text = f"{row['op']:<34}{str(row['shape']):<22} ref {row['ref_ms']:9.2f} ms"
    if "cuda_ms" in row:
        text += f"   cuda {row['cuda_ms']:8.2f} ms  x{row['speedup_vs_ref']:.2f}  err {row['max_rel_error_vs_ref']:.1e}"
    if "nvlabs_ms" in row:
        text += f"   nvlabs {row['nvlabs_ms']:8.2f} ms  x{row['speedup_vs_nvlabs']:.2f}"
    return text
