"""Procedural demo images: shaded coloured shapes with shadows on textured backgrounds.

Image i depends only on (seed, i), so a smaller --num gives a prefix of a larger one, and the
whole set renders in about a millisecond per image at 64 px (numpy, no per-pixel Python).
"""
import time

import numpy as np
from PIL import Image

from stylenas import __version__

from .errors import DatasetError
from .images import FILTERS, encode_image, resize_center_crop
from .prepare import parse_sizes, progress_bar
from .store import LMDBWriter


def _hsv(h, s, v):
    """One HSV colour (components in [0, 1]) as an RGB array."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _value_noise(rng, y, x, cells):
    """Smooth random field: a cells x cells grid of random values, smoothstep-interpolated."""
    grid = rng.random((cells + 1, cells + 1))
    u, v = x * cells, y * cells
    i, j = np.minimum(u.astype(int), cells - 1), np.minimum(v.astype(int), cells - 1)
    fu, fv = u - i, v - j
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    top = grid[j, i] * (1 - fu) + grid[j, i + 1] * fu
    bottom = grid[j + 1, i] * (1 - fu) + grid[j + 1, i + 1] * fu
    return top * (1 - fv) + bottom * fv


def _background(rng, y, x):
    c1, c2 = _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.35, 0.9)), _hsv(
        rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.8))
    a = rng.uniform(0, 2 * np.pi)
    t = np.clip((x - 0.5) * np.cos(a) + (y - 0.5) * np.sin(a) + 0.5, 0, 1)[..., None]
    img = c1 * (1 - t) + c2 * t
    kind = rng.integers(4)
    if kind == 0:  # stripes
        b, f = rng.uniform(0, np.pi), rng.uniform(6, 20)
        tex = np.sin(2 * np.pi * f * (x * np.cos(b) + y * np.sin(b)))
    elif kind == 1:  # soft checkerboard
        f = rng.uniform(3, 9)
        tex = np.tanh(3 * np.sin(2 * np.pi * f * x) * np.sin(2 * np.pi * f * y))
    elif kind == 2:  # clouds: two octaves of value noise
        tex = 2 * (0.65 * _value_noise(rng, y, x, 4) + 0.35 * _value_noise(rng, y, x, 9)) - 1
    else:  # wood-like rings around a random point
        cx, cy = rng.random(2)
        tex = np.sin(2 * np.pi * rng.uniform(5, 12) * np.hypot(x - cx, y - cy) + 3 * _value_noise(rng, y, x, 3))
    return img * (1 + rng.uniform(0.08, 0.25) * tex[..., None])


def _shape(rng, kind):
    """A random shape: its signed distance function f(y, x) (positive inside, in image widths)
    and its (cy, cx, radius)."""
    cy, cx = rng.uniform(0.2, 0.8, 2)
    r = rng.uniform(0.12, 0.3)
    if kind == 0:  # disc
        return (lambda y, x: r - np.hypot(x - cx, y - cy)), (cy, cx, r)
    if kind == 1:  # rotated rectangle
        a = rng.uniform(0, np.pi)
        c, s = np.cos(a), np.sin(a)
        hw, hh = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.4, 1.0)
        return (lambda y, x: np.minimum(hw - np.abs((x - cx) * c + (y - cy) * s),
                                        hh - np.abs((y - cy) * c - (x - cx) * s))), (cy, cx, r)
    if kind == 2:  # triangle: distance to the nearest of three inward-facing edges
        a = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
        vx, vy = cx + r * np.cos(a), cy + r * np.sin(a)
        ex, ey = np.roll(vx, -1) - vx, np.roll(vy, -1) - vy
        n = np.hypot(ex, ey)
        return (lambda y, x: np.minimum.reduce(
            [((x - vx[k]) * -ey[k] + (y - vy[k]) * ex[k]) / n[k] for k in range(3)])), (cy, cx, r)
    ring = r * rng.uniform(0.15, 0.35)  # ring
    return (lambda y, x: ring - np.abs(np.hypot(x - cx, y - cy) - (r - ring))), (cy, cx, r)


def render(seed, index, size):
    """Demo image ``index`` of ``seed`` as a uint8 array [size, size, 3]."""
    rng = np.random.default_rng([seed, index])
    y, x = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
    img = _background(rng, y, x)
    light = rng.uniform(0, 2 * np.pi)
    lx, ly = np.cos(light), np.sin(light)  # image-plane direction towards the light
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(4)
        sdf, (cy, cx, r) = _shape(rng, kind)
        d, px = sdf(y, x), 1.0 / size
        # shadow: the same shape moved away from the light, with a soft edge, darkens the scene
        ds = sdf(y + 0.06 * ly, x + 0.06 * lx)
        img = img * (1 - 0.45 * np.clip(ds / (4 * px) + 0.5, 0, 1))[..., None]
        colour = _hsv(rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.6, 1.0))
        if kind == 0:  # sphere: Lambert + Blinn highlight from the normal of a hemisphere
            nx, ny = (x - cx) / r, (y - cy) / r
            nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
            ldir = np.array([lx * 0.6, ly * 0.6, 0.8])
            diffuse = np.clip(nx * ldir[0] + ny * ldir[1] + nz * ldir[2], 0, 1)
            half = ldir + np.array([0, 0, 1.0])
            half /= np.linalg.norm(half)
            spec = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0, 1) ** 30
            shade = (0.25 + 0.75 * diffuse)[..., None] * colour + 0.6 * spec[..., None]
        else:  # flat shapes: a gradient along the light and a bevelled rim
            grad = 1 + 0.35 * ((x - cx) * lx + (y - cy) * ly) / r
            bevel = 0.75 + 0.25 * np.clip(d / (0.04 + 2 * px), 0, 1)
            shade = (grad * bevel)[..., None] * colour
        cover = np.clip(d / px + 0.5, 0, 1)[..., None]  # one-pixel anti-aliased edge
        img = img * (1 - cover) + shade * cover
    img = img + rng.normal(0, 0.015, img.shape)  # sensor-like grain
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_demo_data(out, sizes, num, seed=0, image_format="jpeg", quality=95, force=False, progress=True):
    """Write ``num`` demo images at each size to the LMDB ``out``; rendered at the largest size,
    the smaller ones resized from it the way prepare_data does. Returns a summary dict."""
    sizes = parse_sizes(sizes)
    if num < 1:
        raise DatasetError(f"--num must be >= 1, got {num}")
    if not 1 <= quality <= 100:
        raise DatasetError(f"--quality must be in 1..100, got {quality}")
    start = time.perf_counter()
    with LMDBWriter(out, sizes, force=force) as writer:
        with progress_bar(progress, num, f"demo {out}") as bar:
            for i in range(num):
                img = Image.fromarray(render(seed, i, sizes[-1]))
                writer.add({s: encode_image(resize_center_crop(img, s, FILTERS["lanczos"]), image_format, quality)
                            for s in sizes})
                bar.update(1)
        writer.close({"format": image_format, "quality": quality if image_format == "jpeg" else None,
                      "filter": "lanczos", "source": f"demo (seed {seed})", "stylenas": __version__})
    seconds = time.perf_counter() - start
    return {"out": str(out), "count": num, "sizes": sizes, "seconds": seconds, "images_per_s": num / seconds}
