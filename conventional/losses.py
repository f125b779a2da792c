"""Adversarial losses of the conventional-GAN recipes.

- ``hinge`` (SNGAN, AutoGAN, alphaGAN eq. 5): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))],
  G minimises -E[D(G(z))].
- ``wgan-gp`` (Gulrajani et al. 2017): D minimises E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x_hat)|| - 1)^2]
  with x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample, lambda = 10; G minimises -E[D(G(z))].
- ``ctgan`` (Wei et al. 2018, DEGAS' retraining): WGAN-GP plus lambda2 * CT with
  CT = E[max(0, d(D(x'), D(x'')) + 0.1 d(D_(x'), D_(x'')) - M')], where x', x'' are two passes of
  the same real batch through D with dropout, D_ the second-to-last layer, d the Euclidean
  distance, lambda2 = 2, M' = 0 (the values of the DEGAS notes).

and DEGAS' search loss, GLO's reconstruction loss (``glo_loss``: L2 + a Laplacian pyramid L1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("hinge", "wgan-gp", "ctgan")
GP_WEIGHT = 10.0
CT_WEIGHT = 2.0
CT_MARGIN = 0.0
CT_FEATURE_WEIGHT = 0.1


def gradient_penalty(D, real, fake):
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates (differentiable for D's step)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def consistency_term(D, real, margin=CT_MARGIN):
    """CT-GAN's consistency term over two dropout passes of D on the same reals."""
    out1, feat1 = D(real, features=True)
    out2, feat2 = D(real, features=True)
    distance = (out1 - out2).flatten(1).norm(dim=1) + CT_FEATURE_WEIGHT * (feat1 - feat2).flatten(1).norm(dim=1)
    return F.relu(distance - margin).mean()


def d_loss(kind, D, real, fake):
    """(loss D minimises, {name: value} for the log)."""
    real_logits, fake_logits = D(real), D(fake)
    if kind == "hinge":
        loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        return loss, {"d_loss": loss.item()}
    wasserstein = fake_logits.mean() - real_logits.mean()
    gp = gradient_penalty(D, real, fake)
    loss = wasserstein + GP_WEIGHT * gp
    stats = {"d_loss": None, "wasserstein": -wasserstein.item(), "gp": gp.item()}
    if kind == "ctgan":
        ct = consistency_term(D, real)
        loss = loss + CT_WEIGHT * ct
        stats["ct"] = ct.item()
    stats["d_loss"] = loss.item()
    return loss, stats


def g_loss(D, fake):
    """-E[D(G(z))]: G's loss under all three (hinge, WGAN-GP, CT-GAN)."""
    return -D(fake).mean()


# ---------------------------------------------------------------------------- GLO loss

def _gaussian_kernel(channels, device, dtype):
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype) / 16
    return (k1[:, None] * k1[None, :]).expand(channels, 1, 5, 5).contiguous()


def _blur(x):
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), _gaussian_kernel(x.shape[1], x.device, x.dtype),
                    groups=x.shape[1])


def laplacian_pyramid(x, levels=3):
    """[L^0 (finest), ..., L^(levels-1) (the low-pass rest)]: G^(j+1) = blur(G^j)[::2, ::2],
    L^j = G^j - blur(upsample_zeros(G^(j+1))) * 4, with a 5-tap binomial kernel, reflect padding."""
    bands, current = [], x
    for _ in range(levels - 1):
        down = _blur(current)[:, :, ::2, ::2]
        up = torch.zeros_like(current)
        up[:, :, ::2, ::2] = down
        bands.append(current - 4 * _blur(up))
        current = down
    bands.append(current)
    return bands


def glo_loss(x, target, levels=3):
    """DEGAS' reconstruction loss ``||x - x'||_2^2 + sum_j 2^(2j) |L^j(x) - L^j(x')|_1`` (section 3.2;
    j = 0 the finest level, so 2^(2j) makes every level weigh alike), per image, averaged over the
    batch, both terms divided by the number of values of an image."""
    n, values = x.shape[0], x[0].numel()
    l2 = (x - target).pow(2).sum() / (n * values)
    lap = sum(4 ** j * (a - b).abs().sum() for j, (a, b) in enumerate(
        zip(laplacian_pyramid(x, levels), laplacian_pyramid(target, levels)))) / (n * values)
    return l2 + lap
