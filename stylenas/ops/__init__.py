"""Custom ops of StyleNAS: each a plain-PyTorch reference beside a CUDA kernel.

Every op takes ``impl="auto" | "ref" | "cuda"``. ``"ref"`` is plain PyTorch (the oracle in
tests); ``"auto"`` runs the kernel on CUDA tensors once the extension (csrc/) has built
and the op has passed its self-check against the reference, else the reference;
``"cuda"`` insists on the kernel. ``STYLENAS_OPS=ref|cuda`` overrides ``"auto"`` process-wide
(see :mod:`stylenas.ops.extension`). ``python -m stylenas.ops build|check`` builds the
extension now or runs the self-checks.
"""

from .bias_act import ACTIVATIONS, bias_act
from .conv2d_resample import conv2d_resample
from .eigvalsh import eigvalsh
from .modulated_conv2d import demodulation_coefficients, modulated_conv2d
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "demodulation_coefficients",
    "downsample2d",
    "eigvalsh",
    "filter2d",
    "modulated_conv2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
