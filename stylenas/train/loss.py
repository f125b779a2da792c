"""StyleGAN2's losses and regularisers (Karras et al. 2020, sections 2.2-3.2 and appendix B), as
pure functions of tensors and modules, each checked against a hand computation in the tests.

- non-saturating logistic loss: G minimises softplus(-D(G(z))), D minimises softplus(D(G(z))) +
  softplus(-D(x)) (Goodfellow et al. 2014).
- R1 (Mescheder et al. 2018): gamma / 2 * ||grad_x D(x)||^2 on reals, evaluated lazily every
  k = 16 D steps and scaled by k (section 3.1, "lazy regularization").
- path length (section 3.2): for y ~ N(0, I) / sqrt(H W), a = ||J_w^T y|| (J the Jacobian of the
  image with respect to the latents), penalty (a - mean a)^2 with the mean an exponential moving
  average (decay 0.01), weight 2, on half the batch, every 4 G steps.
- lazy regularisation changes Adam: lr * c and betas ** c with c = k / (k + 1) (appendix B);
  NVlabs applies it whenever the interval is set, also when the regulariser's weight is 0.
- EMA generator: beta = 0.5 ** (batch / ema_nimg), ema_nimg optionally ramped up to
  ``cur_nimg * rampup`` (stylegan2-ada-pytorch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def g_nonsaturating_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(fake_logits, real_logits):
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(D, reals):
    """(||grad_x D(x)||^2 per sample [N], logits [N, 1]); differentiable for D's update. ``D`` is any
    callable from images to logits (the trainer passes its ``run_D``)."""
    reals = reals.detach().requires_grad_(True)
    logits = D(reals)
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    return grad.square().sum([1, 2, 3]), logits


def path_lengths(images, latents, noise):
    """||J^T y|| per sample: ``latents`` [N, slots, ...] (any trailing shape) fed the generator that
    made ``images``; ``noise`` is y of the images' shape (already divided by sqrt(H W)). The squared
    gradient is summed over each slot's entries and averaged over slots, as stylegan2-ada-pytorch
    averages over its w slots."""
    (grad,) = torch.autograd.grad((images * noise).sum(), latents, create_graph=True)
    return grad.square().flatten(2).sum(2).mean(1).sqrt()


def path_length_noise(images_shape, generator, device):
    n, c, h, w = images_shape
    return torch.randn(images_shape, generator=generator, device=device) / (h * w) ** 0.5


def lazy_regularisation(lr, betas, interval):
    """Adam's (lr, betas) when a regulariser runs every ``interval`` steps as its own update (NVlabs
    corrects for any interval, 1 included; None: no lazy regularisation, no correction)."""
    if interval is None:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, tuple(b ** c for b in betas)


def ema_beta(batch, ema_kimg, ema_rampup, cur_nimg):
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema, model, beta):
    """ema = beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def sanitise_gradients(params):
    """NVlabs' clean-up before each Adam step (``training_loop.py``): NaN gradient entries become 0,
    +-Inf become +-1e5. Returns how many entries were not finite, as a tensor on the gradients'
    device (no host synchronisation per parameter)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros([], dtype=torch.int64)
    count = sum((~torch.isfinite(g)).sum() for g in grads)
    for g in grads:
        torch.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5, out=g)
    return count
