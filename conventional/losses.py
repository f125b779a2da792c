"""Adversarial losses of the conventional-GAN recipes.

- ``hinge`` (SNGAN, AutoGAN, alphaGAN eq. 5): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))],
  G minimises -E[D(G(z))].
- ``wgan-gp`` (Gulrajani et al. 2017): D minimises E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x_hat)|| - 1)^2]
  with x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample, lambda = 10; G minimises -E[D(G(z))].
- ``ctgan`` (Wei et al. 2018, DEGAS' retraining): WGAN-GP plus CT-GAN's consistency term
  (``consistency_term``) on two passes of the same real batch through the CT-GAN critic with its
  dropout (``conventional.spaces.ctgan``); the first pass is also the real term of the Wasserstein
  loss, as in the authors' code.

and DEGAS' search loss, GLO's reconstruction loss (``glo_loss``: L2 + a Laplacian pyramid L1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("hinge", "wgan-gp", "ctgan")
GP_WEIGHT = 10.0
# CT-GAN's CIFAR-10 code (biuyq/CT-GAN, CT-GANs/tensorflow_generative_model/CT_gan_cifar_resnet.py)
CT_WEIGHT = 2.0  # LAMBDA_2, line 37
CT_MARGIN = 0.0  # Factor_M, line 39
CT_FEATURE_WEIGHT = 0.1  # line 289


def gradient_penalty(D, real, fake):
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates (differentiable for D's step)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def consistency_term(out1, feat1, out2, feat2, weight=CT_WEIGHT, margin=CT_MARGIN):
    """CT-GAN's consistency term as its authors compute it (CT_gan_cifar_resnet.py lines 288-291):
    per real image ``weight * ((D(x') - D(x''))^2 + 0.1 * mean_k (D_(x')_k - D_(x'')_k)^2)``, minus
    the margin M, clipped at 0, averaged over the batch. ``out`` are D's outputs and ``feat`` its
    mean-pooled features D_ of two dropout passes of the same reals. The paper writes a
    distance d and lambda2 outside the max; the code squares, averages over the features and
    subtracts M after the weight: the same for its M = 0."""
    per_image = (out1 - out2).flatten(1).pow(2).sum(dim=1) + CT_FEATURE_WEIGHT * (
        (feat1 - feat2).flatten(1).pow(2).mean(dim=1))
    return F.relu(weight * per_image - margin).mean()


def d_loss(kind, D, real, fake):
    """(loss D minimises, {name: value} for the log)."""
    if kind == "ctgan":  # two dropout passes of the reals; the first is the Wasserstein term's
        real_logits, real_features = D(real, features=True)
        again_logits, again_features = D(real, features=True)
    else:
        real_logits = D(real)
    fake_logits = D(fake)
    if kind == "hinge":
        loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        return loss, {"d_loss": loss.item()}
    wasserstein = fake_logits.mean() - real_logits.mean()
    gp = gradient_penalty(D, real, fake)
    loss = wasserstein + GP_WEIGHT * gp
    stats = {"d_loss": None, "wasserstein": -wasserstein.item(), "gp": gp.item()}
    if kind == "ctgan":
        ct = consistency_term(real_logits, real_features, again_logits, again_features)
        loss = loss + ct
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
