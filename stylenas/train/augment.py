"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"), written after NVlabs stylegan2-ada-pytorch (``training/augment.py``,
``loss.py``, ``training_loop.py``, ``train.py``).

``AugmentPipe(**AUGPIPES["bgc"])`` transforms a batch of images in [-1, 1] before the discriminator
sees it; every transform is applied to an image with probability ``multiplier * p``, ``p`` being the
pipe's overall strength (a buffer, adjusted by ``AdaController``). In order:

- pixel blitting: x-flip, rotation by a multiple of 90 degrees, integer translation (up to 1/8 of
  the size);
- general geometry: isotropic scaling (log2 std 0.2), rotation before and after anisotropic
  scaling (each with probability 1 - sqrt(1 - rotate * p), so either happens with rotate * p),
  anisotropic scaling (log2 std 0.2), fractional translation (std 1/8 of the size);
- colour: brightness (std 0.2), contrast (log2 std 0.5), luma flip, hue rotation about the luma
  axis, saturation (log2 std 1);
- image-space filtering (4 frequency bands, log2 std 1 each), additive RGB noise (std 0.1),
  cutout (half the size).

The geometric transforms are composed into one 3x3 matrix per image that maps output pixel
coordinates (origin at the image centre, x right, y down) to input coordinates. The image is
reflect-padded as far as the transformed corners reach, upsampled 2x with the sym6 wavelet filter
(``stylenas.ops.upsample2d``), resampled bilinearly at the mapped positions (``grid_sample``) and
downsampled with the same filter (``stylenas.ops.downsample2d``), as NVlabs does: sym6 is
orthonormal, so up- then down-sampling is the identity and the 2x grid halves bilinear blurring. The
colour transforms are one 4x4 matrix per image on homogeneous RGB. Every step is differentiable in
the images (to any order: R1 takes the gradient through the pipe), so G's gradient flows through
augmented fakes.

Randomness: ``sample(batch, ...)`` draws every parameter for a whole global batch from one explicit
generator (the trainer seeds it from (seed, step, phase)), and ``apply(images, params, rows)``
transforms this process's ``rows`` of it; the padding is computed over the global batch. So N
processes augment exactly what 1 process does. Parameters are drawn for every enabled transform
whatever ``p`` is, so ``p`` never shifts the stream. Differences from NVlabs: a stage whose matrices
are all the identity (p = 0, or no image of the batch selected) is skipped, so p = 0 returns the
images untouched, where NVlabs resamples them (the identity to float rounding); the draws come from
the given generator in our own order. Inherited from NVlabs: sym6 is not symmetric, so x-flips and
90-degree turns, resampled like every geometric transform, move content by up to ~0.1 px.

``AdaController`` is NVlabs' heuristic: the sign of D's real logits is averaged over ``interval``
steps (the Dmain and the R1 phases both report it, as NVlabs' ``Loss/signs/real``), and p moves by
``sign(mean - target) * batch * interval / (ada_kimg * 1000)``, clamped at 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..ops import downsample2d, setup_filter, upsample2d

# Low-pass decomposition filters of the orthonormal Daubechies symlets (standard wavelet tables).
SYM2 = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]

# the parameters of the geometric and of the colour stage (``sample``'s keys)
GEOMETRIC_PARAMS = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac")
COLOUR_PARAMS = ("brightness", "contrast", "lumaflip", "hue", "saturation")

# NVlabs train.py's --augpipe choices: probability multipliers of the transforms.
_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
AUGPIPES = {
    "blit": _BLIT, "geom": _GEOM, "color": _COLOR, "filter": dict(imgfilter=1), "noise": dict(noise=1),
    "cutout": dict(cutout=1), "bg": {**_BLIT, **_GEOM}, "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1, "cutout": 1},
}
FILTER_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)  # expected power per band (a 1/f spectrum)


# ------------------------------------------------------------------------------------ matrices
# Batched homogeneous matrices from per-image parameters [N] (x right, y down).

def _matrices(rows, like):
    """[N, k, k] from k rows of k entries, each a tensor [N] or a number."""
    n = like.shape[0]
    entries = [e if torch.is_tensor(e) else torch.full([n], float(e), dtype=like.dtype, device=like.device)
               for row in rows for e in row]
    k = len(rows)
    return torch.stack(entries, dim=-1).reshape(n, k, k)


def translation(tx, ty):
    return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scaling(sx, sy):
    return _matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotation(theta):
    """Rotation by ``theta`` (from +x toward +y)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrices([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _colour_matrices(block, offset=None):
    """[N, 4, 4] homogeneous colour matrices from a 3x3 ``block`` [N, 3, 3] and an ``offset`` [N, 3]."""
    n = block.shape[0]
    out = torch.eye(4, dtype=block.dtype, device=block.device).repeat(n, 1, 1)
    out[:, :3, :3] = block
    if offset is not None:
        out[:, :3, 3] = offset
    return out


LUMA_AXIS = (1 / math.sqrt(3),) * 3


def _luma_projection(device):
    v = torch.tensor(LUMA_AXIS, device=device)
    return torch.outer(v, v)


# ------------------------------------------------------------------------------------ the pipe

class AugmentPipe(torch.nn.Module):
    """Probability multipliers per transform (0 = off, 1 = with probability p) and the ranges of
    NVlabs' AugmentPipe; ``p`` (a buffer) is the overall strength. ``forward(images, generator,
    batch, rows)`` = ``apply(images, sample(...), rows)``."""

    def __init__(self, xflip=0, rotate90=0, xint=0, xint_max=0.125, scale=0, rotate=0, aniso=0, xfrac=0,
                 scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness=0, contrast=0,
                 lumaflip=0, hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, hue_max=1,
                 saturation_std=1, imgfilter=0, imgfilter_bands=(1, 1, 1, 1), imgfilter_std=1, noise=0,
                 cutout=0, noise_std=0.1, cutout_size=0.5, p=0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))
        self.multipliers = {name: float(value) for name, value in dict(
            xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso, xfrac=xfrac,
            brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue, saturation=saturation,
            imgfilter=imgfilter, noise=noise, cutout=cutout).items()}
        if any(v < 0 for v in self.multipliers.values()):
            raise ValueError(f"augmentation probability multipliers must be >= 0, got {self.multipliers}")
        self.xint_max, self.scale_std, self.rotate_max, self.aniso_std = xint_max, scale_std, rotate_max, aniso_std
        self.xfrac_std, self.brightness_std, self.contrast_std = xfrac_std, brightness_std, contrast_std
        self.hue_max, self.saturation_std, self.imgfilter_std = hue_max, saturation_std, imgfilter_std
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        self.noise_std, self.cutout_size = noise_std, cutout_size
        self.register_buffer("geom_filter", setup_filter(SYM6), persistent=False)
        self.register_buffer("filter_bank", torch.as_tensor(filter_bank(SYM2), dtype=torch.float32),
                             persistent=False)
        if len(self.imgfilter_bands) != self.filter_bank.shape[0]:
            raise ValueError(f"imgfilter_bands needs {self.filter_bank.shape[0]} entries")

    @classmethod
    def from_name(cls, name, p=0.0):
        if name not in AUGPIPES:
            raise ValueError(f"--augpipe must be one of {', '.join(AUGPIPES)}, got {name!r}")
        return cls(**AUGPIPES[name], p=p)

    def enabled(self, name):
        return self.multipliers[name] > 0

    # ---------------------------------------------------------------------------- sampling

    def sample(self, batch, shape, generator=None, device=None):
        """Parameters of every enabled transform for ``batch`` images of ``shape`` (C, H, W), drawn
        from ``generator`` (on ``device``); a transform not selected for an image gets its identity
        value. Returns a dict of tensors whose first dimension is the image."""
        device = torch.device(device) if device is not None else self.p.device
        p = self.p.to(device)
        on = self.enabled
        params = {}

        def uniform(*size):
            return torch.rand([batch, *size], generator=generator, device=device)

        def normal(*size):
            return torch.randn([batch, *size], generator=generator, device=device)

        def chosen(name, value, identity, prob=None):
            """``value`` where a uniform draw falls below the transform's probability, else ``identity``."""
            prob = self.multipliers[name] * p if prob is None else prob
            keep = uniform(*[1] * (value.ndim - 1)) < prob
            return torch.where(keep, value, torch.full_like(value, identity))

        channels, height, width = shape
        if on("xflip"):
            params["xflip"] = chosen("xflip", torch.floor(uniform() * 2), 0)
        if on("rotate90"):
            params["rotate90"] = chosen("rotate90", torch.floor(uniform() * 4), 0)
        if on("xint"):
            shift = (uniform(2) * 2 - 1) * self.xint_max * torch.tensor([width, height], device=device)
            params["xint"] = chosen("xint", torch.round(shift), 0)
        if on("scale"):
            params["scale"] = chosen("scale", torch.exp2(normal() * self.scale_std), 1)
        # pre- and post-rotation each with 1 - sqrt(1 - q): one or both happen with probability q
        p_rot = 1 - torch.sqrt((1 - self.multipliers["rotate"] * p).clamp(0, 1))
        if on("rotate"):
            params["rotate_pre"] = chosen("rotate", (uniform() * 2 - 1) * math.pi * self.rotate_max, 0, p_rot)
        if on("aniso"):
            params["aniso"] = chosen("aniso", torch.exp2(normal() * self.aniso_std), 1)
        if on("rotate"):
            params["rotate_post"] = chosen("rotate", (uniform() * 2 - 1) * math.pi * self.rotate_max, 0, p_rot)
        if on("xfrac"):
            params["xfrac"] = chosen("xfrac", normal(2) * self.xfrac_std * torch.tensor([width, height],
                                                                                         device=device), 0)
        if on("brightness"):
            params["brightness"] = chosen("brightness", normal() * self.brightness_std, 0)
        if on("contrast"):
            params["contrast"] = chosen("contrast", torch.exp2(normal() * self.contrast_std), 1)
        if on("lumaflip"):
            params["lumaflip"] = chosen("lumaflip", torch.floor(uniform() * 2), 0)
        if on("hue") and channels > 1:
            params["hue"] = chosen("hue", (uniform() * 2 - 1) * math.pi * self.hue_max, 0)
        if on("saturation") and channels > 1:
            params["saturation"] = chosen("saturation", torch.exp2(normal() * self.saturation_std), 1)
        if on("imgfilter"):
            gains = []
            for band_strength in self.imgfilter_bands:
                prob = self.multipliers["imgfilter"] * p * band_strength
                gains.append(chosen("imgfilter", torch.exp2(normal() * self.imgfilter_std), 1, prob))
            params["imgfilter"] = torch.stack(gains, dim=1)
        if on("noise"):
            params["noise_std"] = chosen("noise", normal().abs() * self.noise_std, 0)
            params["noise"] = normal(channels, height, width)
        if on("cutout"):
            params["cutout_size"] = chosen("cutout", torch.full([batch], self.cutout_size, device=device), 0)
            params["cutout_centre"] = uniform(2)
        return params

    # ---------------------------------------------------------------------------- matrices

    def geometric_matrix(self, params):
        """[N, 3, 3]: output pixel coordinates (origin at the centre) -> input coordinates, the
        inverses of the transforms composed in their order (x-flip applied first)."""
        some = next(iter(params.values()))
        n, device = some.shape[0], some.device
        eye = torch.eye(3, device=device).repeat(n, 1, 1)
        inverse = eye
        if "xflip" in params:
            inverse = inverse @ scaling(1 - 2 * params["xflip"], torch.ones_like(params["xflip"]))
        if "rotate90" in params:
            inverse = inverse @ rotation(math.pi / 2 * params["rotate90"])  # inverse of -90 degrees * k
        if "xint" in params:
            inverse = inverse @ translation(-params["xint"][:, 0], -params["xint"][:, 1])
        if "scale" in params:
            inverse = inverse @ scaling(1 / params["scale"], 1 / params["scale"])
        if "rotate_pre" in params:
            inverse = inverse @ rotation(params["rotate_pre"])  # inverse of -theta
        if "aniso" in params:
            inverse = inverse @ scaling(1 / params["aniso"], params["aniso"])
        if "rotate_post" in params:
            inverse = inverse @ rotation(params["rotate_post"])
        if "xfrac" in params:
            inverse = inverse @ translation(-params["xfrac"][:, 0], -params["xfrac"][:, 1])
        return inverse

    def colour_matrix(self, params):
        """[N, 4, 4] on homogeneous RGB, the transforms applied in their order (brightness first)."""
        some = next(iter(params.values()))
        n, device = some.shape[0], some.device
        eye3 = torch.eye(3, device=device).expand(n, 3, 3)
        vv = _luma_projection(device)
        C = torch.eye(4, device=device).repeat(n, 1, 1)
        if "brightness" in params:
            C = _colour_matrices(eye3, params["brightness"][:, None].expand(n, 3)) @ C
        if "contrast" in params:
            C = _colour_matrices(eye3 * params["contrast"][:, None, None]) @ C
        if "lumaflip" in params:  # Householder reflection through the plane normal to the luma axis
            C = _colour_matrices(eye3 - 2 * vv * params["lumaflip"][:, None, None]) @ C
        if "hue" in params:  # Rodrigues: rotation by theta about the luma axis
            theta = params["hue"][:, None, None]
            v = torch.tensor(LUMA_AXIS, device=device)
            cross = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], device=device)
            C = _colour_matrices(torch.cos(theta) * eye3 + torch.sin(theta) * cross
                                 + (1 - torch.cos(theta)) * vv) @ C
        if "saturation" in params:  # keep the luma component, scale the chroma
            C = _colour_matrices(vv + (eye3 - vv) * params["saturation"][:, None, None]) @ C
        return C

    # ---------------------------------------------------------------------------- applying

    def forward(self, images, generator=None, batch=None, rows=None):
        """Augment ``images`` [n, C, H, W], which are ``rows`` (default: all) of a global batch of
        ``batch`` (default n) images whose parameters are drawn from ``generator``."""
        batch = images.shape[0] if batch is None else batch
        params = self.sample(batch, images.shape[1:], generator, images.device)
        return self.apply(images, params, rows)

    def apply(self, images, params, rows=None):
        """Transform ``images``, the ``rows`` of the global batch that ``params`` describe."""
        if not torch.is_tensor(images) or images.ndim != 4:
            raise ValueError(f"AugmentPipe: images must be [N, C, H, W], got {getattr(images, 'shape', images)}")
        if not params:
            return images
        rows = slice(None) if rows is None else rows
        _, channels, height, width = images.shape
        if any(name in params for name in GEOMETRIC_PARAMS):
            inverse = self.geometric_matrix(params)
            if not torch.equal(inverse, torch.eye(3, device=inverse.device).expand_as(inverse)):
                images = self._resample(images, inverse[rows], self._margins(inverse, width, height))
        if any(name in params for name in COLOUR_PARAMS):
            C = self.colour_matrix(params)
            if not torch.equal(C, torch.eye(4, device=C.device).expand_as(C)):
                images = self._recolour(images, C[rows].to(images.dtype))
        if "imgfilter" in params and not bool((params["imgfilter"] == 1).all()):
            images = self._filter(images, params["imgfilter"][rows])
        if "noise" in params:
            images = images + params["noise"][rows].to(images.dtype) * params["noise_std"][rows, None, None, None]
        if "cutout_size" in params:
            images = images * self._cutout_mask(params["cutout_size"][rows], params["cutout_centre"][rows],
                                                width, height).to(images.dtype)
        return images

    def _margins(self, inverse, width, height):
        """Reflect padding (x0, y0, x1, y1) that covers, for the whole global batch, the input area
        the output corners map to plus the filter's reach; at most the image size - 1."""
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=inverse.device)
        mapped = (inverse @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, batch * corner]
        reach = torch.cat([-mapped, mapped]).max(dim=1).values  # [-min x, -min y, max x, max y]
        taps = self.geom_filter.shape[0] // 4
        reach = reach + torch.tensor([taps * 2 - cx, taps * 2 - cy] * 2, device=inverse.device)
        upper = torch.tensor([width - 1, height - 1] * 2, device=inverse.device)
        return [int(v) for v in reach.clamp(min=0).minimum(upper).ceil().tolist()]

    def _resample(self, images, inverse, margins):
        n, channels, height, width = images.shape
        mx0, my0, mx1, my1 = margins
        f = self.geom_filter
        taps = f.shape[0] // 4
        one = torch.ones(n, device=inverse.device)
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        inverse = translation(one * (mx0 - mx1) / 2, one * (my0 - my1) / 2) @ inverse  # origin of the padded image
        images = upsample2d(images, f, up=2)
        # the same map on the 2x grid: pixel centres of the upsampled image sit at 2x + 0.5
        inverse = scaling(one * 2, one * 2) @ inverse @ scaling(one / 2, one / 2)
        inverse = translation(-one / 2, -one / 2) @ inverse @ translation(one / 2, one / 2)
        out_h, out_w = (height + taps * 2) * 2, (width + taps * 2) * 2
        # grid_sample's normalised coordinates: [-1, 1] spans each image's full extent
        inverse = (scaling(one * 2 / images.shape[3], one * 2 / images.shape[2]) @ inverse
                   @ scaling(one * out_w / 2, one * out_h / 2))
        grid = F.affine_grid(inverse[:, :2, :].to(images.dtype), [n, channels, out_h, out_w], align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return downsample2d(images, f, down=2, padding=-taps * 2, flip_filter=True)

    @staticmethod
    def _recolour(images, C):
        n, channels, height, width = images.shape
        flat = images.reshape(n, channels, height * width)
        if channels == 3:
            flat = C[:, :3, :3] @ flat + C[:, :3, 3:]
        elif channels == 1:  # the mean of the RGB outputs of a grey input
            C = C[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
        else:
            raise ValueError(f"colour augmentation needs RGB or grey images, got {channels} channels")
        return flat.reshape(n, channels, height, width)

    def _filter(self, images, band_gains):
        """Amplify each frequency band by its gain, keeping the expected power (NVlabs' imgfilter)."""
        n, channels, height, width = images.shape
        power = torch.tensor(FILTER_BAND_POWER, device=band_gains.device)
        gain = torch.ones_like(band_gains)
        for i in range(band_gains.shape[1]):
            t = torch.ones_like(band_gains)
            t[:, i] = band_gains[:, i]
            gain = gain * t / (power * t.square()).sum(dim=1, keepdim=True).sqrt()
        taps = (gain @ self.filter_bank.to(gain.device)).to(images.dtype)  # [n, taps]
        taps = taps[:, None, :].expand(n, channels, -1).reshape(n * channels, 1, -1)
        pad = self.filter_bank.shape[1] // 2
        if min(height, width) <= pad:
            raise ValueError(f"the imgfilter augmentation needs images of at least {pad + 1} px (its "
                             f"{self.filter_bank.shape[1]}-tap filters are reflect-padded), got {height}x{width}")
        x = F.pad(images.reshape(1, n * channels, height, width), [pad] * 4, mode="reflect")
        x = F.conv2d(x, taps[:, :, None, :], groups=n * channels)
        x = F.conv2d(x, taps[:, :, :, None], groups=n * channels)
        return x.reshape(n, channels, height, width)

    @staticmethod
    def _cutout_mask(size, centre, width, height):
        """[n, 1, H, W]: 0 inside a square of side ``size`` (fraction of the image) at ``centre``."""
        x = ((torch.arange(width, device=size.device) + 0.5) / width).reshape(1, 1, 1, -1)
        y = ((torch.arange(height, device=size.device) + 0.5) / height).reshape(1, 1, -1, 1)
        outside_x = (x - centre[:, 0, None, None, None]).abs() >= size[:, None, None, None] / 2
        outside_y = (y - centre[:, 1, None, None, None]).abs() >= size[:, None, None, None] / 2
        return (outside_x | outside_y).float()


def filter_bank(lowpass):
    """[bands, taps]: 4 octave bands of a 1-D signal built from an orthonormal wavelet's low-pass
    filter H(z): band 0 the lowest, band 3 the highest. The rows sum to a unit impulse (the bands
    partition the spectrum), so gains of 1 leave an image unchanged."""
    lo = np.asarray(lowpass, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)  # H(-z)
    lo2 = np.convolve(lo, lo[::-1]) / 2  # H(z) H(1/z) / 2: half-band low-pass, zero phase
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bands = np.zeros([4, 1])
    bands[0, 0] = 1
    for i in range(1, 4):
        up = np.zeros([4, bands.shape[1] * 2 - 1])
        up[:, ::2] = bands  # dilate by 2 (the next octave down)
        bands = np.stack([np.convolve(row, lo2) for row in up])
        start = (bands.shape[1] - hi2.size) // 2
        bands[i, start:start + hi2.size] += hi2
    return bands


# ------------------------------------------------------------------------------------ ADA

class AdaController:
    """NVlabs' p heuristic. ``observe(real_logits)`` after every D evaluation on reals, ``end_step(pipe,
    steps_done, dist)`` after every step: the step's sign sum and count are summed over the processes
    (so every process holds the same totals, and a checkpoint written by one process resumes any
    process count exactly), and every ``interval`` steps p moves by
    sign(mean sign - target) * batch * interval / (ada_kimg * 1000), floored at 0."""

    def __init__(self, target=0.6, interval=4, ada_kimg=500, batch=32):
        if not 0 <= target <= 1:
            raise ValueError(f"--target must be in [0, 1], got {target}")
        if ada_kimg <= 0:
            raise ValueError(f"--ada-kimg must be positive, got {ada_kimg}")
        self.target, self.interval, self.ada_kimg, self.batch = target, interval, ada_kimg, batch
        self.pending = None  # this process's [sign sum, count] of the current step
        self.totals = None  # all processes' [sign sum, count] since the last adjustment

    @property
    def step_size(self):
        return self.batch * self.interval / (self.ada_kimg * 1000)

    def observe(self, real_logits):
        signs = real_logits.detach().float().sign()
        moments = torch.stack([signs.sum(), signs.new_tensor(float(signs.numel()))])
        self.pending = moments if self.pending is None else self.pending + moments

    def end_step(self, pipe, steps_done, dist=None):
        """Fold the step's signs into the totals; adjust ``pipe.p`` when ``steps_done`` is a multiple of
        the interval. Returns the mean sign used for an adjustment (a tensor), else None."""
        if self.pending is not None:
            if dist is not None and dist.active:
                torch.distributed.all_reduce(self.pending)  # a sum: exact for these integers
            self.totals = self.pending if self.totals is None else self.totals + self.pending
            self.pending = None
        if steps_done % self.interval or self.totals is None:
            return None
        mean_sign = self.totals[0] / self.totals[1]
        adjust = torch.sign(mean_sign - self.target) * self.step_size
        pipe.p.copy_((pipe.p + adjust.to(pipe.p.device)).clamp(min=0))
        self.totals = None
        return mean_sign

    def state_dict(self):
        return {"totals": None if self.totals is None else self.totals.cpu()}

    def load_state_dict(self, state, device="cpu"):
        self.totals = None if state.get("totals") is None else state["totals"].to(device)
        self.pending = None
