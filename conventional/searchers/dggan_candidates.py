"""Training and scoring one DGGAN candidate: ProgGAN's training (WGAN-GP with the drift term, Adam,
one D step per G step, the fade-in of a doubled child) and the FID against the training statistics
at the candidate's resolution (``FIDScorer``)."""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from ...metrics import to_uint8
from ..losses import GP_WEIGHT, gradient_penalty
from ..rewards import fid_from_statistics, reference_statistics, sample_outputs, score_names

DRIFT = 1e-3  # ProgGAN's epsilon_drift on D(x)^2 beside WGAN-GP


def fade_alpha(iteration, fade_iters):
    """Weight of the new path after ``iteration`` training iterations (ProgGAN: linear 0 -> 1)."""
    return 1.0 if fade_iters <= 0 else min(1.0, iteration / fade_iters)


def real_batch(dataset, batch, resolution, alpha, device):
    """A batch of training images at ``resolution`` (average-pooled down), in [-1, 1]; during a
    fade-in blended with the up-sampled half-resolution images by ``alpha``, as ProgGAN."""
    index = torch.randint(len(dataset), (batch,))
    images = torch.stack([dataset[int(i)] for i in index]).to(device).float() / 127.5 - 1
    images = downsample(images, resolution)
    if alpha < 1:
        low = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")
        images = alpha * images + (1 - alpha) * low
    return images


def downsample(images, resolution):
    factor = images.shape[-1] // resolution
    return F.avg_pool2d(images, factor) if factor > 1 else images


def wgan_gp_d_loss(D, real, fake):
    """ProgGAN's WGAN-GP: E[D(G(z))] - E[D(x)] + 10 E[(||grad D(x_hat)|| - 1)^2] + 0.001 E[D(x)^2]."""
    real_out, fake_out = D(real), D(fake)
    return (fake_out.mean() - real_out.mean() + GP_WEIGHT * gradient_penalty(D, real, fake)
            + DRIFT * real_out.pow(2).mean())


def train_candidate(G, D, dataset, iters, batch, lr, betas, fade_iters, device):
    """ProgGAN training (Adam, one D step per G step, WGAN-GP + drift) of a candidate for ``iters``
    iterations from the global random state (seeded per job by ``spread_jobs``)."""
    G.to(device).train(), D.to(device).train()
    betas = tuple(float(b) for b in betas)
    g_opt = torch.optim.Adam(G.parameters(), lr=lr, betas=betas, eps=1e-8)
    d_opt = torch.optim.Adam(D.parameters(), lr=lr, betas=betas, eps=1e-8)
    fading = G.fading
    last = {}
    for it in range(iters):
        alpha = fade_alpha(it + 1, fade_iters) if fading else 1.0
        G.alpha = D.alpha = alpha
        real = real_batch(dataset, batch, G.resolution, alpha, device)
        z = torch.randn(batch, G.latent_dim, device=device)
        with torch.no_grad():
            fake = G(z)
        d_loss = wgan_gp_d_loss(D, real, fake)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        D.requires_grad_(False)
        g_loss = -D(G(torch.randn(batch, G.latent_dim, device=device))).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        D.requires_grad_(True)
        last = {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
    G.alpha = D.alpha = 1.0
    return last


def final_state(G, D):
    """The trained candidate as a parent sees it: fade-in layers dropped, on the CPU."""
    return {"G": {k: v.detach().cpu() for k, v in G.state_dict().items() if "_prev" not in k},
            "D": {k: v.detach().cpu() for k, v in D.state_dict().items() if "_prev" not in k}}


def weights_sha256(net):
    """SHA-256 of a network's tensors (names and values): the same scorer weights, the same digest."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FIDScorer:
    """FID of candidates against the training statistics at their resolution, through a reward
    network of ``conventional.rewards`` (the FID Inception, or the labelled ``ProxyInception``
    whose scores are logged as ``proxy_fid``): ``num`` samples a candidate, ``ref_num`` training
    images (all when None) average-pooled to the resolution, one ``frechet_distance_batched``
    call per resolution and process."""

    def __init__(self, net, num=10_000, ref_num=None, batch=50):
        self.net, self.num, self.ref_num, self.batch = net, num, ref_num, batch
        self.label = score_names(net)[1]
        self.weights_sha256 = weights_sha256(net)

    def candidate_stats(self, G, seed, device):
        _, stats = sample_outputs(G.eval(), self.net, self.num, G.latent_dim, seed, self.batch)
        return torch.as_tensor(stats.mu()), torch.as_tensor(stats.sigma())

    def reference_stats(self, dataset, resolution, device):
        count = len(dataset) if self.ref_num is None else min(self.ref_num, len(dataset))
        images = (to_uint8(downsample(dataset[i].float()[None] / 127.5 - 1, resolution))[0] for i in range(count))
        mu, sigma = reference_statistics(images, self.net, self.batch)
        return torch.as_tensor(mu), torch.as_tensor(sigma)

    @staticmethod
    def distances(stats, reference):
        if not stats:
            return []
        return [float(v) for v in fid_from_statistics([s[0] for s in stats], [s[1] for s in stats], reference)]
