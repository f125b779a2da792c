"""The FID Inception network: pytorch-fid's port of the TF Inception v3 graph of 2015-12-05.

Everyone's FID numbers come from this network, so it must match pytorch-fid operation for
operation. It is torchvision's Inception v3 layout (same module and state-dict key names,
so pytorch-fid's weights file loads as is) with the differences of the TF graph:

* the average-pool branches of the A, C and first E blocks ignore the zero padding
  (TF's average pool divides by the number of real pixels: `count_include_pad=False`);
* the last E block (Mixed_7c) pools its branch with a 3x3 max pool, not an average pool;
* the classifier has 1008 outputs (1000 classes and 8 unused ones).

Input protocol (pytorch-fid's): uint8 RGB [N, 3, H, W] -> float / 255 -> bilinear resize
to 299 x 299 (align_corners=False, no antialiasing) -> 2x - 1.
"""
import contextlib
import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

__all__ = ["InceptionV3FID", "InceptionOutput", "InceptionWeightsError", "WEIGHTS_FILE", "WEIGHTS_URL",
           "find_weights", "load_weights", "no_tf32", "to_uint8"]

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
WEIGHTS_ENV = "STYLENAS_INCEPTION"


class InceptionWeightsError(FileNotFoundError):
    """The FID Inception weights cannot be found, downloaded or read."""


@contextlib.contextmanager
def no_tf32():
    """Turn TF32 off for CUDA matmuls and cuDNN convolutions, restoring the previous flags.

    With TF32 (Ampere and newer) Inception features drift at the 1e-3 level. torch >= 2.9
    has per-backend `fp32_precision` flags and refuses to mix them with the legacy
    `allow_tf32` ones, so use the new flags where they exist.
    """
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        flags = [(torch.backends.cuda.matmul, "fp32_precision", "ieee"),
                 (torch.backends.cudnn.conv, "fp32_precision", "ieee")]
    else:
        flags = [(torch.backends.cuda.matmul, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False)]
    saved = [getattr(obj, name) for obj, name, _ in flags]
    try:
        for obj, name, off in flags:
            setattr(obj, name, off)
        yield
    finally:
        for (obj, name, _), value in zip(flags, saved):
            setattr(obj, name, value)


def to_uint8(images, value_range=(-1, 1)):
    """Quantise generator output (float [N, 3, H, W] in `value_range`) to uint8 as saved PNGs are.

    FID is defined on 8-bit images; feeding floats (as some code does) shifts the score.
    """
    lo, hi = value_range
    x = (images.detach().float() - lo) * (255 / (hi - lo))
    return (x + 0.5).clamp(0, 255).to(torch.uint8)  # round to nearest like PIL


def _pool3(x, kind):
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    # TF's average pool divides by the real pixels under the window at the borders.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(InceptionA):
    """35x35 block (Mixed_5b/c/d); torchvision's sub-modules, TF's average pool."""

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_pool3(x, "avg"))], 1)


class _BlockC(InceptionC):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..e); TF's average pool."""

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            bd = conv(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_pool3(x, "avg"))], 1)


class _BlockE(InceptionE):
    """8x8 block with split 1x3/3x1 outputs (Mixed_7b: average pool, Mixed_7c: max pool)."""

    def __init__(self, in_channels, pool):
        super().__init__(in_channels)
        self.pool = pool

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(_pool3(x, self.pool))], 1)


class InceptionOutput(NamedTuple):
    features: torch.Tensor  # [N, 2048] global average pool (what FID and KID use)
    logits: torch.Tensor  # [N, 1008] fc output with bias
    logits_unbiased: torch.Tensor  # [N, 1008] features @ fc.weight.T: the original Inception Score's logits


def random_weights(seed=0, fc_scale=1.0):
    """Random weights in pytorch-fid's layout, for tests and the CPU proxy reward (never for a
    reported FID): He-scaled convs and batch norms near identity keep the activations O(1);
    ``fc_scale`` widens the logits (a larger one moves an Inception Score off 1)."""
    import math

    import torchvision

    layout = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    gen = torch.Generator().manual_seed(int(seed))
    state = {}
    for key, value in layout.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        shape = value.shape
        if key.endswith("conv.weight"):
            value = torch.randn(shape, generator=gen) * math.sqrt(2 / value[0].numel())
        elif key.endswith("bn.weight"):
            value = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith(("bn.bias", "running_mean", "fc.bias")):
            value = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif key == "fc.weight":
            value = torch.randn(shape, generator=gen) * (fc_scale / math.sqrt(shape[1]))
        else:
            raise KeyError(key)
        state[key] = value
    return state


def find_weights(weights=None, download=True):
    """Locate pytorch-fid's FID Inception state dict and load it (on the CPU).

    Order: `weights` (a path, or a state dict), then $STYLENAS_INCEPTION, then the file in
    the torch hub cache where pytorch-fid keeps it ($TORCH_HOME/hub/checkpoints/), then a
    download into that cache. Raises one InceptionWeightsError saying where the file may go.
    """
    if isinstance(weights, dict):
        return weights
    if weights is not None:
        return load_weights(weights, f"Inception weights {weights}")
    if os.environ.get(WEIGHTS_ENV):
        return load_weights(os.environ[WEIGHTS_ENV], f"${WEIGHTS_ENV}={os.environ[WEIGHTS_ENV]}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    if cached.is_file():
        return load_weights(cached, f"Inception weights {cached}")
    reason = "downloads disabled"
    if download:
        try:
            return torch.hub.load_state_dict_from_url(WEIGHTS_URL, map_location="cpu", progress=True,
                                                      weights_only=True)
        except Exception as e:  # offline, proxy, partial file: all end in the one error below
            reason = f"download failed: {type(e).__name__}: {e}".replace("\n", " ")
    raise InceptionWeightsError(
        f"FID Inception weights {WEIGHTS_FILE} not found ({reason}). Get it from {WEIGHTS_URL} and "
        f"put it in {cached.parent}/ (the torch hub cache pytorch-fid uses), or pass its path with "
        f"--inception PATH / InceptionV3FID(weights=PATH), or set ${WEIGHTS_ENV}=PATH.")


def load_weights(path, what=None):
    """torch.load a state dict safely (weights_only: no code runs from the file)."""
    what = what or f"Inception weights {path}"
    if not Path(path).is_file():
        raise InceptionWeightsError(f"{what}: file not found (expected pytorch-fid's {WEIGHTS_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InceptionWeightsError(f"{what}: cannot read it as a PyTorch state dict ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict):
        raise InceptionWeightsError(f"{what}: expected a state dict, found a {type(state).__name__}")
    return state


class InceptionV3FID(nn.Module):
    """pytorch-fid's FID Inception v3, loaded from `weights` (see `find_weights`).

    forward(images uint8 [N, 3, H, W], any H and W) -> InceptionOutput(features [N, 2048],
    logits [N, 1008], logits_unbiased [N, 1008]), float32 on the network's device. Runs in
    eval mode, without gradients and with TF32 off (restored afterwards).
    """

    input_size = 299  # pytorch-fid's resize; only the CPU proxy reward network changes it

    def __init__(self, weights=None, download=True):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = _BlockE(1280, pool="avg")
        self.Mixed_7c = _BlockE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)
        self._load(find_weights(weights, download=download), weights)
        self.requires_grad_(False)
        self.eval()

    def _load(self, state, source):
        # Files saved by older torch lack BatchNorm's num_batches_tracked, which eval ignores.
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        expected = {k for k in self.state_dict() if not k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        what = f"Inception weights {source}" if isinstance(source, (str, os.PathLike)) else "Inception weights"
        if missing or unexpected:
            raise InceptionWeightsError(
                f"{what}: not pytorch-fid's FID Inception state dict ({len(missing)} keys missing, e.g. "
                f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise InceptionWeightsError(f"{what}: tensor shapes do not match the FID Inception "
                                        f"({str(e).splitlines()[-1].strip()})") from None

    def forward(self, images):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"InceptionV3FID expects uint8 images [N, 3, H, W], got {images.dtype} "
                             f"{list(images.shape)} (quantise float images with to_uint8)")
        device = self.fc.weight.device
        with torch.no_grad(), no_tf32():
            x = images.to(device).float() / 255
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=False)
            x = 2 * x - 1
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                          self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
                x = block(x)
            features = F.adaptive_avg_pool2d(x, 1).flatten(1)
            logits = F.linear(features, self.fc.weight, self.fc.bias)
            return InceptionOutput(features, logits, F.linear(features, self.fc.weight))
