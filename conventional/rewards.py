"""Scores of generators for the searchers that rank architectures by their samples (AutoGAN's IS
reward and its FID variant, AGAN's shaped IS reward, DGGAN's FID).

A *reward network* maps uint8 images ``[N, 3, H, W]`` to ``(features [N, 2048], logits [N, 1008],
logits_unbiased [N, 1008])`` (``stylenas.metrics.InceptionOutput``). There are two:

- ``InceptionV3FID`` with pytorch-fid's weights (``reward_network("inception")``): its scores are
  the Inception Score and the FID, and are logged as ``is`` and ``fid``.
- ``ProxyInception`` (``reward_network("proxy")``): the same network with random weights drawn from
  a seed and its input resized to 75 px instead of 299 (16x cheaper), for CPU tests and the demo,
  where the real weights are not at hand. Its scores rank architectures by a fixed random feature
  map, not by image quality: they are logged as ``proxy_is`` and ``proxy_fid`` and must never be
  reported as IS or FID. ``score_names(net)`` gives the right names for a network.

API (``G`` maps latents ``[n, latent_dim]`` to images in [-1, 1]; latents are drawn from ``seed``
alone, so two processes scoring the same generator get the same number):

- ``sample_outputs(G, net, num, latent_dim, seed)`` -> ``(logits [num, 1008], FeatureStats)``
- ``inception_score_of(G, net, num, latent_dim, seed, splits)`` -> float
- ``reference_statistics(images, net)`` -> ``(mu, sigma)`` of real images (the training statistics
  of the FID reward; with the proxy network they must be computed by the same proxy)
- ``fid_rewards(generators, net, reference, num, latent_dim, seed)`` -> float64 numpy ``[B]``, all
  candidates against one reference in one ``stylenas.metrics.frechet_distance_batched`` call
- ``shaped_is_reward(is_value, is_min, is_max)``: AGAN's ``(IS - IS_min) / (IS_max - IS)``, the IS
  clamped below IS_max (``is_clamped``)
"""

from __future__ import annotations


import torch

from ..metrics import FeatureStats, InceptionV3FID, frechet_distance_batched, to_uint8
from ..metrics.inception import random_weights

__all__ = ["ProxyInception", "reward_network", "score_names", "is_proxy", "sample_outputs", "inception_score_of",
           "reference_statistics", "fid_rewards", "shaped_is_reward", "is_clamped", "AGAN_IS_MIN", "AGAN_IS_MAX",
           "AGAN_IS_MARGIN"]

PROXY_SIZE = 75  # the smallest input Inception v3's stem and reductions accept
PROXY_FC_SCALE = 30  # wide logits, so the proxy IS moves off 1
AGAN_IS_MIN, AGAN_IS_MAX = 1.0, 11.24  # AGAN section 4.2: IS_max is the IS of CIFAR-10's real images
AGAN_IS_MARGIN = 0.01  # StyleNAS: IS counted at most IS_max - 0.01, so the shaped reward stays finite


class ProxyInception(InceptionV3FID):
    """PROXY reward network: the FID Inception v3 with random weights drawn from ``seed`` and its
    input resized to ``size`` px. Not an Inception Score or FID (see the module docstring)."""

    is_proxy = True

    def __init__(self, seed=0, size=PROXY_SIZE):
        super().__init__(weights=random_weights(seed, fc_scale=PROXY_FC_SCALE))
        self.input_size = int(size)  # the forward pass of the FID network resizes to this



def reward_network(kind="inception", weights=None, device="cpu", seed=0):
    """``kind`` "inception": the FID Inception with pytorch-fid's weights (``weights``: a path, else
    the usual lookup of ``stylenas.metrics.find_weights``); "proxy": ``ProxyInception(seed)``."""
    if kind == "inception":
        return InceptionV3FID(weights=weights).to(device).eval()
    if kind == "proxy":
        return ProxyInception(seed).to(device).eval()
    raise ValueError(f"reward network must be 'inception' or 'proxy', got {kind!r}")


def is_proxy(net):
    return bool(getattr(net, "is_proxy", False))


def score_names(net):
    """(name of the IS-like score, name of the FID-like score) under which ``net``'s scores are logged."""
    return ("proxy_is", "proxy_fid") if is_proxy(net) else ("is", "fid")


def _latents(seed, start, n, dim):
    # one stream per (seed, first sample), so a batch size change does not move the samples
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(start)) % (2 ** 63 - 1))
    return torch.randn(n, dim, generator=gen)


@torch.no_grad()
def sample_outputs(G, net, num, latent_dim, seed, batch=50):
    """(logits_unbiased [num, 1008] on the CPU, FeatureStats of the features) of ``num`` samples of
    ``G`` (used as it is: put it in eval mode first). Latents depend on ``seed`` only."""
    device = next(net.parameters()).device
    g_device = next(G.parameters()).device
    stats, logits = FeatureStats(), []
    for start in range(0, num, batch):
        n = min(batch, num - start)
        images = G(_latents(seed, start, n, latent_dim).to(g_device))
        out = net(to_uint8(images).to(device))
        stats.update(out.features)
        logits.append(out.logits_unbiased.cpu())
    return torch.cat(logits), stats


def inception_score_of(G, net, num, latent_dim, seed, splits=10, batch=50):
    """Inception Score (improved-gan's definition, ``stylenas.metrics.inception_score``) of ``num``
    samples of ``G``; a proxy score when ``net`` is a ``ProxyInception``."""
    from ..metrics import inception_score

    logits, _ = sample_outputs(G, net, num, latent_dim, seed, batch)
    return inception_score(logits, splits=min(splits, num))[0]


@torch.no_grad()
def reference_statistics(images, net, batch=50):
    """(mu, sigma) float64 numpy of the ``net`` features of real images: an iterable of uint8
    ``[3, H, W]`` tensors (e.g. an ``LMDBImages``) or one uint8 tensor ``[N, 3, H, W]``."""
    device = next(net.parameters()).device
    stats, chunk = FeatureStats(), []

    def flush():
        stats.update(net(torch.stack(chunk).to(device)).features)
        chunk.clear()

    for image in images:
        chunk.append(torch.as_tensor(image))
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    return stats.stats()


def fid_rewards(generators, net, reference, num, latent_dim, seed, batch=50):
    """FID (a proxy FID with ``ProxyInception``) of ``num`` samples of each generator against
    ``reference`` = (mu, sigma) -> float64 numpy ``[len(generators)]``. The reference is factored
    once and all candidates are scored in one ``frechet_distance_batched`` call."""
    mus, sigmas = [], []
    for G in generators:
        _, stats = sample_outputs(G, net, num, latent_dim, seed, batch)
        mus.append(torch.as_tensor(stats.mu()))
        sigmas.append(torch.as_tensor(stats.sigma()))
    return fid_from_statistics(mus, sigmas, reference)


def fid_from_statistics(mus, sigmas, reference):
    """FIDs of candidate statistics (lists of [d] and [d, d]; e.g. gathered from other processes)
    against ``reference`` = (mu, sigma) -> float64 numpy [B]."""
    mu_ref, sigma_ref = reference
    distances = frechet_distance_batched(torch.stack([torch.as_tensor(m) for m in mus]),
                                         torch.stack([torch.as_tensor(s) for s in sigmas]), mu_ref, sigma_ref)
    return distances.cpu().numpy()


def shaped_is_reward(is_value, is_min=AGAN_IS_MIN, is_max=AGAN_IS_MAX, margin=AGAN_IS_MARGIN):
    """AGAN's reward shaping (section 3.3): (IS - IS_min) / (IS_max - IS), steeper as IS nears
    IS_max. The shaping has a pole at IS_max (the IS of the real data), so an IS above
    ``is_max - margin`` counts as ``is_max - margin`` (``is_clamped``): the reward stays finite,
    (IS_max - margin - IS_min) / margin, and one child scoring like the data does not end a search."""
    if is_max - margin <= is_min:
        raise ValueError(f"IS_max {is_max:.4g} must exceed IS_min {is_min:.4g} by more than {margin:g}")
    value = min(is_value, is_max - margin)
    return (value - is_min) / (is_max - value)


def is_clamped(is_value, is_max=AGAN_IS_MAX, margin=AGAN_IS_MARGIN):
    """Whether ``shaped_is_reward`` clamped this IS."""
    return is_value > is_max - margin
