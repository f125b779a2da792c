"""What every import shares: the converted networks (``Converted``), building our checkpoint from
them, and the running means of W_1..W_n that the foreign code does not keep."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..checkpoint import CheckpointError, copy_matching

W_AVG_SAMPLES = 10_000  # latents behind the estimated means of every W_i but the last
W_AVG_SEED = 0


class ImportNetworkError(CheckpointError):
    """A network file that cannot be imported; the message names the file and the reason."""


@dataclass
class Converted:
    """Foreign networks as state dicts with our names, and the configuration they need."""
    format: str
    resolution: int
    z_dim: int
    w_dim: int
    channel_base: int
    channel_max: int
    conv_clamp: float | None
    mbstd_group: int
    G_ema: dict
    mapping_layers: int = 8  # their mapping depth: ours has the same (only W_last is read)
    G: dict | None = None
    D: dict | None = None
    w_avg_ema: torch.Tensor | None = None  # their running mean of the last W (NVlabs' w_avg)
    w_avg: torch.Tensor | None = None
    fp16_res: int = 0  # what the original ran in reduced precision (information only: we import float32)
    details: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)  # how far the original had trained, where it says


@torch.no_grad()
def estimate_w_avg(mapping, last=None, num=W_AVG_SAMPLES, seed=W_AVG_SEED):
    """Mean of every W_i over ``num`` latents of a fixed seed; the last W's is replaced by ``last`` when the
    original kept one (StyleGAN2 truncates toward the mean of the last W only; ours keeps one per
    W_i because a genotype may read any)."""
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(mapping.w_avg, dtype=torch.float64)
    for start in range(0, num, 1000):
        z = torch.randn([min(1000, num - start), mapping.z_dim], generator=generator)
        total += mapping(z.to(mapping.w_avg.device), update_w_avg=False).double().sum(0)
    mean = (total / num).to(mapping.w_avg.dtype)
    if last is not None:
        mean[-1] = last.to(mean)
    return mean


def imported_config(converted):
    """The TrainConfig that rebuilds the imported networks (float32 everywhere)."""
    from ..config import resolve_config

    config = resolve_config("auto", converted.resolution, z_dim=converted.z_dim, w_dim=converted.w_dim,
                            channel_base=converted.channel_base, channel_max=converted.channel_max,
                            mbstd_group=converted.mbstd_group, fp16_res=0,
                            mapping_layers=converted.mapping_layers)
    return dataclasses.replace(config, cfg="import", conv_clamp=converted.conv_clamp)


def build_checkpoint(converted, source, sha256):
    """Our "stylegan2" checkpoint dict (``checkpoint.py``'s contract) of ``converted``; every layer is
    checked against the networks the stylegan2 genotype builds (the first mismatch is named)."""
    from ...search.genotype import Genotype
    from ..stylegan2 import build_networks

    config = imported_config(converted)
    genotype = Genotype.original(converted.resolution, channels={
        "channel_base": converted.channel_base, "channel_max": converted.channel_max, "channel_mult": 1.0})
    G, D = build_networks(genotype, config)
    G.eval()
    states = {}
    for name, state, last in (("G_ema", converted.G_ema, converted.w_avg_ema), ("G", converted.G, converted.w_avg)):
        if state is None:
            continue
        state = {**state, "mapping.w_avg": G.mapping.w_avg}  # estimated below
        copy_matching(G, state, f"{source} ({name})", error=ImportNetworkError)
        G.mapping.w_avg.copy_(estimate_w_avg(G.mapping, last))
        states[name] = {key: value.detach().clone() for key, value in G.state_dict().items()}
    details = dict(converted.details)
    if "G" not in states:  # a generator-only file: training from it starts G at the EMA weights
        states["G"] = states["G_ema"]
        details["G"] = "copied from G_ema (the file has no training generator)"
    if converted.D is not None:
        copy_matching(D, converted.D, f"{source} (D)", error=ImportNetworkError)
        states["D"] = {key: value.detach().clone() for key, value in D.state_dict().items()}
    return {"kind": "stylegan2", **states, "genotype": genotype.to_dict(), "config": config.to_dict(),
            "counters": {"step": 0, "nimg": 0, "kimg": None, **converted.counters},
            "imported": {"format": converted.format, "source": str(source), "sha256": sha256,
                         "original_fp16_res": converted.fp16_res,
                         "w_avg": f"last W: the original's running mean where it kept one; the other W_i (and the last "
                                  f"otherwise): means over {W_AVG_SAMPLES} latents of seed {W_AVG_SEED}",
                         **details}}
