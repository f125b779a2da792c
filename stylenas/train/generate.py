"""Using a trained generator: images from seeds, grids, style-mixing grids, and FID.

- ``parse_seeds("0-63,100")`` -> [0, ..., 63, 100].
- ``latent_from_seed(seed, z_dim)``: z of one seed, drawn on the CPU, so a seed gives the same image
  on every device and batch size.
- ``generate(G, seeds, trunc=1.0, device, batch=16, noise_mode="const")``: uint8 [N, 3, R, R].
- ``style_mixing(G, row_seeds, col_seeds, cutoff, trunc)``: rows take the latent slots from
  ``cutoff`` on from the row seed (each layer its own W_i of that seed's mapping outputs);
  returns a grid tensor with the column images on top and the row images on the left.
- ``checkpoint_images(path, num, device, trunc)``: the same for a checkpoint file (``scripts/fid.py``
  input A).
- ``GeneratedImages(G, num, trunc, device)``: a Dataset of ``num`` uint8 images (seeds 0..num-1),
  made in batches on demand, for the FID code (``stylenas.metrics``); use it with num_workers=0.
- ``fid_of_generator(G, ref_stats, num, device, inception=None, trunc=1.0, dist=None)``: pytorch-fid's
  FID of ``num`` quantised G images against ``(mu, sigma)``, shared between processes with ``dist``
  (``generator_feature_stats`` per process, ``merge_feature_stats``).
- ``reference_stats(data, resolution, inception, cache_dir, device)``: FID statistics of an LMDB
  at one resolution, computed once and cached (keyed by path, size, mtime, resolution).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .runlog import to_uint8


MAX_SEEDS = 1_000_000  # a longer list is a typo more often than a plan (and a million images is terabytes)


def parse_seeds(text):
    """'0-63,100' -> [0, ..., 63, 100]: each seed once (a seed given twice would be one file counted
    twice), non-negative and below 2**63 (torch.manual_seed's range), at most MAX_SEEDS of them."""
    seeds, count = [], 0
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, _, hi = part.partition("-")
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise ValueError
                span = range(lo, hi + 1)
            else:
                span = [int(part)]
        except (TypeError, ValueError):
            raise ValueError(f"--seeds: expected numbers and ranges like 0-63,100, got {part!r}") from None
        count += len(span)
        if count > MAX_SEEDS:
            raise ValueError(f"--seeds: {text!r} asks for more than {MAX_SEEDS:,} images; split it into several runs")
        seeds.extend(span)
    if not seeds or min(seeds) < 0 or max(seeds) >= 2 ** 63:
        raise ValueError(f"--seeds: expected seeds in 0..2**63-1 like 0-63,100, got {text!r}")
    if len(set(seeds)) != len(seeds):
        seen, twice = set(), []
        for seed in seeds:
            if seed in seen and seed not in twice:
                twice.append(seed)
            seen.add(seed)
        raise ValueError(f"--seeds: {', '.join(map(str, twice[:5]))}{' ...' if len(twice) > 5 else ''} given more "
                         f"than once in {text!r}; each seed is one image file, give each once")
    return seeds


def latent_from_seed(seed, z_dim):
    return torch.randn([z_dim], generator=torch.Generator().manual_seed(int(seed)))


@torch.no_grad()
def generate(G, seeds, trunc=1.0, device="cpu", batch=16, noise_mode="const"):
    """uint8 images of a StyleGAN2 generator (``G.mapping`` / ``G.synthesis``) or, for any other
    generator, of ``G(z)`` with z of ``G.z_dim`` (``load_generator`` sets it; truncation must be 1)."""
    return torch.cat([images for _, images in generate_batches(G, seeds, trunc, device, batch, noise_mode)])


@torch.no_grad()
def generate_batches(G, seeds, trunc=1.0, device="cpu", batch=16, noise_mode="const"):
    """(seeds, uint8 images) of ``generate``, ``batch`` seeds at a time: a long list is written as
    it is made, not held in memory."""
    stylegan2 = hasattr(G, "synthesis")
    if not stylegan2 and trunc != 1.0:
        raise ValueError("truncation needs a StyleGAN2 generator (its mapping network's running means)")
    for i in range(0, len(seeds), batch):
        z = torch.stack([latent_from_seed(s, G.z_dim) for s in seeds[i:i + batch]]).to(device)
        images = G(z, truncation_psi=trunc, noise_mode=noise_mode) if stylegan2 else G(z)
        yield seeds[i:i + batch], to_uint8(images).cpu()


@torch.no_grad()
def style_mixing(G, row_seeds, col_seeds, cutoff, trunc=1.0, device="cpu", noise_mode="const"):
    """A (rows + 1) x (cols + 1) grid [(R+1)(C+1), 3, H, W]: top row the column seeds, left column
    the row seeds, cell (r, c) = column seed's latents before slot ``cutoff``, row seed's after."""
    synthesis = G.synthesis
    num_ws = synthesis.num_ws
    if not 1 <= cutoff < num_ws:
        raise ValueError(f"--mix-cutoff must be in 1..{num_ws - 1} (the network has {num_ws} latent slots)")

    def mapped(seeds):
        z = torch.stack([latent_from_seed(s, G.z_dim) for s in seeds]).to(device)
        return G.mapping(z, truncation_psi=trunc, update_w_avg=False)  # [n, 8, w]

    rows, cols = mapped(row_seeds), mapped(col_seeds)
    blank = torch.full([1, G.synthesis.img_channels, G.resolution, G.resolution], 255, dtype=torch.uint8)
    images = [blank] + [to_uint8(synthesis(cols[j:j + 1], noise_mode=noise_mode)).cpu() for j in range(len(cols))]
    for i in range(len(rows)):
        images.append(to_uint8(synthesis(rows[i:i + 1], noise_mode=noise_mode)).cpu())
        for j in range(len(cols)):
            slots = torch.stack([cols[j] if s < cutoff else rows[i] for s in range(num_ws)]).unsqueeze(0)
            images.append(to_uint8(synthesis(slots, noise_mode=noise_mode)).cpu())
    return torch.cat(images)


class GeneratedImages(torch.utils.data.Dataset):
    """``num`` generator images (seeds offset .. offset + num - 1) as uint8 [3, R, R], in batches."""

    def __init__(self, G, num, trunc=1.0, device="cpu", batch=32, seed_offset=0, noise_mode="random"):
        self.G, self.num, self.trunc, self.device = G, num, trunc, torch.device(device)
        self.batch, self.seed_offset, self.noise_mode = batch, seed_offset, noise_mode
        self._start, self._images = None, None

    def __len__(self):
        return self.num

    def __getitem__(self, index):
        if not 0 <= index < self.num:
            raise IndexError(index)
        start = index - index % self.batch
        if start != self._start:
            seeds = range(self.seed_offset + start, self.seed_offset + min(start + self.batch, self.num))
            cuda = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # the caller's generators stay untouched
                torch.manual_seed(self.seed_offset + start)  # noise inputs: the same images every time
                self._images = generate(self.G, list(seeds), self.trunc, self.device, self.batch, self.noise_mode)
            self._start = start
        return self._images[index - start]


def checkpoint_images(path, num, device="auto", trunc=1.0, num_option="--num"):
    """The ``num`` images (seeds 0..num-1, quantised) of a training checkpoint's G_ema, as a Dataset
    for ``stylenas.metrics`` (read it with num_workers=0). Raises ValueError naming the file (and
    ``num_option``, the command-line option that gives ``num``, when it is missing)."""
    from ..devices import resolve_device
    from .checkpoint import load_generator

    if num is None:
        raise ValueError(f"{path} is a generator checkpoint: say how many images to generate with {num_option} "
                         f"(50000 is the usual protocol)")
    device = resolve_device(device)
    G, info = load_generator(path, device)  # CheckpointError is a ValueError naming the file
    if trunc != 1.0 and info["kind"] != "stylegan2":
        raise ValueError(f"{path}: --trunc needs a StyleGAN2 checkpoint, this one is {info['kind']}")
    return GeneratedImages(G, num, trunc=trunc, device=device)


def generator_feature_stats(G, num, net, device, trunc=1.0, batch=32, rank=0, world_size=1):
    """FID features of this process's share of ``num`` G images: the batches of seeds
    start .. start + batch - 1 with start = batch * (rank + k * world_size). An image depends on
    its seed only, so the union over processes is the same images for any process count."""
    from ..metrics import FeatureStats

    images = GeneratedImages(G, num, trunc=trunc, device=device, batch=batch)
    stats = FeatureStats()
    for start in range(batch * rank, num, batch * world_size):
        stats.update(net(torch.stack([images[i] for i in range(start, min(start + batch, num))])).features)
    return stats


def merge_feature_stats(parts):
    """One FeatureStats from several (n, mean, scatter) parts, by Chan et al.'s pairwise update."""
    from ..metrics import FeatureStats

    merged = FeatureStats()
    for n, mean, scatter in parts:
        if n == 0:
            continue
        mean, scatter = mean.to(torch.float64), scatter.to(torch.float64)
        if merged.n == 0:
            merged.n, merged.mean, merged.scatter = n, mean.clone(), scatter.clone()
            continue
        total = merged.n + n
        delta = mean - merged.mean
        merged.scatter += scatter + torch.outer(delta, delta) * (merged.n * n / total)
        merged.mean += delta * (n / total)
        merged.n = total
    return merged


def fid_of_generator(G, ref_stats, num, device, inception=None, trunc=1.0, batch=32, dist=None):
    """FID of ``num`` G images against ``ref_stats``; with ``dist`` (a ``distributed.Dist``) every
    process scores its share and the statistics are merged (call it on every process)."""
    from ..metrics import InceptionV3FID, frechet_distance

    net = inception if isinstance(inception, torch.nn.Module) else InceptionV3FID(weights=inception).to(device)
    rank, world_size = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    local = generator_feature_stats(G, num, net, device, trunc, batch, rank, world_size)
    part = (local.n, local.mean.cpu() if local.n else None, local.scatter.cpu() if local.n else None)
    parts = dist.gather_objects(part) if dist is not None else [part]
    return frechet_distance(*merge_feature_stats(parts).stats(), *ref_stats)


def stats_cache_path(data, resolution, cache_dir=None):
    path = Path(data).resolve()
    stat = path.stat() if path.exists() else None
    mdb = path / "data.mdb"
    if mdb.is_file():
        stat = mdb.stat()
    key = f"{path}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}|{resolution}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir or os.environ.get("STYLENAS_CACHE", Path.home() / ".cache" / "stylenas")) / "fid-stats"
    return cache_dir / f"{path.stem}-{resolution}px-{digest}.npz"


def reference_stats(data, resolution, device, inception=None, cache_dir=None, workers=0, log=None):
    """(mu, sigma) of every image of ``data`` at ``resolution``; cached on disk after the first time."""
    from ..datasets import LMDBImages
    from ..metrics import InceptionV3FID, extract_features, load_stats, save_stats

    cache = stats_cache_path(data, resolution, cache_dir)
    if cache.is_file():
        return load_stats(cache)
    net = inception if isinstance(inception, torch.nn.Module) else InceptionV3FID(weights=inception).to(device)
    images = LMDBImages(data, resolution=resolution)
    if log:
        log(f"FID reference statistics of {data} at {resolution} px ({len(images)} images), cached in {cache}")
    stats, _, _ = extract_features(net, images, batch_size=50, num_workers=workers)
    mu, sigma = stats.stats()
    save_stats(cache, mu, sigma)
    return mu, sigma
