"""The alphaGAN searcher (Tian et al., "alphaGAN: Fully Differentiable Architecture Search
for Generative Adversarial Networks", sections 4.1-4.2, Algorithms 1 and 2).

Generic over (supernet generator, fixed-architecture discriminator, adversarial loss, two
streams of real batches): the StyleGAN2 search and the conventional search both use it.
The generator must expose ``weight_parameters()`` and ``arch_parameters()``.

One search iteration k (Algorithm 1):

1. weight part: T Adam steps on D's then G's weights with batches of the training half;
2. test-weight part (Algorithm 2): from copies of G and D, R steps of D-bar against the
   current G, then R steps of G-bar against the current D, on the validation half (weights
   only: the paper's Table 3 finds updating the copies' architecture does not help);
3. architecture part: S Adam steps on alpha minimising the duality gap (eq. 3, 6)
   ``V(G, D-bar) - V(G-bar, D)`` on the validation half, where V is the value the
   discriminator maximises (for the hinge loss of eq. 5, V = -E[relu(1 - D(x))] -
   E[relu(1 + D(G(z)))]). G-bar is a snapshot, so the architecture gradient flows through
   G in the first term only, as in the authors' code.

Robustness and speed: a step whose loss (or gap) is not finite is skipped on the device (the
parameters and optimiser state keep their values; no host synchronisation), counted, and after
``max_nonfinite`` such steps in a row the search stops with ``NonFiniteError``. Losses and the
gap are summed on the device and read once per iteration.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preset:
    """Step counts and optimiser settings of one search configuration."""

    T: int  # weight-part steps per iteration
    R: int  # test-weight-part steps (each of D-bar and G-bar)
    S: int  # architecture steps
    iterations: int
    batch: int
    channel_mult: float = 1.0
    lr: float = 2e-4  # weights (appendix .1.1.1: Adam, betas (0, 0.999), no weight decay)
    betas: tuple = (0.0, 0.999)
    arch_lr: float = 3e-4  # alphas: Adam, betas (0.5, 0.999), weight decay 1e-3
    arch_betas: tuple = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    loss: str = "hinge"  # eq. 5


PRESETS = {
    # alphaGAN_(s) and alphaGAN_(l) on CIFAR-10 (section 5.1, appendix .1.1.1)
    "s": Preset(T=20, R=20, S=20, iterations=100, batch=64),
    "l": Preset(T=390, R=390, S=20, iterations=100, batch=64),
    # StyleGAN2 (appendix .1.2): alphaGAN_(s) with R = 5, 500 iterations, batch 2, 1/8 channels
    "stylegan2": Preset(T=20, R=5, S=20, iterations=500, batch=2, channel_mult=1 / 8),
    # CPU tests and the demo: every part runs, in seconds; a larger architecture learning
    # rate so that the alphas visibly move in a few iterations
    "tiny": Preset(T=2, R=1, S=2, iterations=30, batch=4, arch_lr=1e-2),
}


class AdversarialLoss:
    """``d_loss`` (minimised by D), ``g_loss`` (minimised by G) and the game value
    ``value = -d_loss`` (maximised by D) of which the duality gap is taken."""

    def __init__(self, kind="hinge"):
        if kind not in ("hinge", "logistic"):
            raise ValueError(f"loss must be 'hinge' (alphaGAN, eq. 5) or 'logistic' (StyleGAN2), got {kind!r}")
        self.kind = kind

    def d_loss(self, real_logits, fake_logits):
        if self.kind == "hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits):
        if self.kind == "hinge":
            return -fake_logits.mean()
        return F.softplus(-fake_logits).mean()  # non-saturating

    def value(self, real_logits, fake_logits):
        return -self.d_loss(real_logits, fake_logits)


@contextmanager
def frozen(*params_or_modules):
    """Temporarily stop gradients into the given parameters (cheaper backward passes)."""
    params = []
    for item in params_or_modules:
        params.extend(item.parameters() if isinstance(item, torch.nn.Module) else item)
    states = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, state in zip(params, states):
            p.requires_grad_(state)


class NonFiniteError(RuntimeError):
    """Too many optimiser steps in a row had a non-finite loss or duality gap."""


def adam(params, lr, betas, weight_decay=0.0):
    """Adam, fused where this torch and device have the fused kernel (one launch per step, and
    it can skip a step on the device: see ``guarded_step``)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=bool(params))
    except RuntimeError:  # no fused kernel for these parameters (device, dtype) in this torch
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)


def guarded_step(optimizer, loss):
    """Back-propagate `loss` and step `optimizer`, unless the loss is not finite: then the
    parameters and the optimiser state keep their values. Decided on the device, without a
    host synchronisation; returns the flag (0-dim bool)."""
    finite = torch.isfinite(loss.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if optimizer.defaults.get("fused"):
        # torch.amp.GradScaler's protocol: the fused kernels skip the whole update, step
        # counters included, where found_inf is non-zero
        optimizer.found_inf = (~finite).float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        return finite
    # any other optimiser: step, then put back what a skipped step changed (a state the step
    # created goes back to zeros, Adam's initial state)
    saved = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                state = {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
                saved.append((p, p.detach().clone(), state))
    optimizer.step()
    with torch.no_grad():
        for p, before, state in saved:
            p.copy_(torch.where(finite, p, before))
            for key, value in optimizer.state[p].items():
                if torch.is_tensor(value):
                    value.copy_(torch.where(finite.to(value.device), value, state.get(key, torch.zeros_like(value))))
    return finite


class Meter:
    """Means of the finite values of some quantities and skipped-step counts, summed on the
    device; ``read()`` is the one host synchronisation."""

    def __init__(self):
        self.sums, self.counts, self.steps = {}, {}, {}

    def add(self, finite, **values):
        for name, value in values.items():
            value = value.detach().float()
            self.sums[name] = self.sums.get(name, 0) + torch.where(finite, value, torch.zeros_like(value))
            self.counts[name] = self.counts.get(name, 0) + finite.long()
            self.steps[name] = self.steps.get(name, 0) + 1

    def read(self):
        """{name: mean of the finite values or None}, {name: skipped steps}."""
        names = list(self.sums)
        if not names:
            return {}, {}
        flat = torch.stack([torch.stack([self.sums[n], self.counts[n].float()]) for n in names]).cpu().tolist()
        means = {n: (total / count if count else None) for n, (total, count) in zip(names, flat)}
        skipped = {n: self.steps[n] - int(count) for n, (_, count) in zip(names, flat)}
        return means, skipped


def softmax_entropy(logits):
    p = torch.softmax(logits.detach(), dim=0)
    return float(-(p * p.clamp_min(1e-12).log()).sum())


class AlphaGANSearcher:
    """Algorithms 1 and 2 over (generator, discriminator, latent sampler, preset).

    ``sample_z(n)`` returns generator inputs on the right device. ``iteration(train, val)``
    runs one outer iteration; ``train`` and ``val`` are iterators of real batches. Steps with a
    non-finite loss or gap are skipped; ``max_nonfinite`` of them in a row raise NonFiniteError.
    """

    def __init__(self, generator, discriminator, sample_z, preset: Preset, max_nonfinite=25):
        if max_nonfinite < 1:
            raise ValueError(f"max_nonfinite must be at least 1, got {max_nonfinite}")
        self.G, self.D, self.sample_z, self.preset = generator, discriminator, sample_z, preset
        self.max_nonfinite = max_nonfinite
        self.adv = AdversarialLoss(preset.loss)
        self.g_opt = self._weight_optimizer(generator.weight_parameters())
        self.d_opt = self._weight_optimizer(discriminator.parameters())
        self.arch_opt = adam(generator.arch_parameters(), preset.arch_lr, preset.arch_betas, preset.arch_weight_decay)
        self.iterations_done = 0
        self.nonfinite_streak = 0  # skipped steps in a row, carried across iterations
        self._meter = self._streak = self._longest = None

    def _weight_optimizer(self, params):
        return adam(params, self.preset.lr, self.preset.betas)

    def _step(self, optimizer, loss, **logged):
        """A guarded step; `logged` values are averaged over the finite steps."""
        finite = guarded_step(optimizer, loss)
        self._meter.add(finite, **logged)
        self._streak = torch.where(finite, torch.zeros_like(self._streak), self._streak + 1)
        self._longest = torch.maximum(self._longest, self._streak)
        return finite

    @contextmanager
    def _metered(self):
        """Device-side statistics of the steps inside; the outermost block reads them once on
        exit into the dict it yields: means over the finite steps (None where every step was
        skipped), ``skipped_steps`` per quantity and ``nonfinite_streak``."""
        if self._meter is not None:  # nested in an iteration: that one reads
            yield {}
            return
        device = next(iter(self.G.parameters())).device
        self._meter = Meter()
        self._streak = torch.tensor(self.nonfinite_streak, device=device)
        self._longest = self._streak.clone()
        stats = {}
        try:
            yield stats
            means, skipped = self._meter.read()
            streak, longest = torch.stack([self._streak, self._longest]).tolist()
        finally:
            self._meter = None
        self.nonfinite_streak = int(streak)
        stats.update(means, skipped_steps=skipped, nonfinite_streak=self.nonfinite_streak,
                     longest_nonfinite_streak=int(longest))

    # --------------------------------------------------------------- Algorithm 1, lines 3-8
    def weight_part(self, train):
        G, D, adv, n = self.G, self.D, self.adv, self.preset.batch
        with self._metered() as stats, frozen(G.arch_parameters()):
            for _ in range(self.preset.T):
                real = next(train)
                with torch.no_grad():
                    fake = G(self.sample_z(n))
                d_loss = adv.d_loss(D(real), D(fake))
                self._step(self.d_opt, d_loss, d_loss=d_loss)
                if self.g_step_due():
                    with frozen(D):
                        g_loss = adv.g_loss(D(G(self.sample_z(n))))
                        self._step(self.g_opt, g_loss, g_loss=g_loss)
        return stats

    def g_step_due(self):
        """Whether a G step follows the D step just taken: always, in Algorithm 1."""
        return True

    # --------------------------------------------------------------- Algorithm 2
    def test_weight_part(self, val):
        """D-bar ~ argmax_D V(G, D) and G-bar ~ argmin_G V(G, D), from copies, R steps each."""
        G, D, adv, n = self.G, self.D, self.adv, self.preset.batch
        D_bar, G_bar = copy.deepcopy(D), copy.deepcopy(G)
        for p in G_bar.arch_parameters():
            p.requires_grad_(False)
        d_bar_opt = self._weight_optimizer(D_bar.parameters())
        g_bar_opt = self._weight_optimizer(G_bar.weight_parameters())
        with self._metered():
            for _ in range(self.preset.R):
                real = next(val)
                with torch.no_grad():
                    fake = G(self.sample_z(n))
                d_bar_loss = adv.d_loss(D_bar(real), D_bar(fake))
                self._step(d_bar_opt, d_bar_loss, d_bar_loss=d_bar_loss)
            with frozen(D):
                for _ in range(self.preset.R):
                    g_bar_loss = adv.g_loss(D(G_bar(self.sample_z(n))))
                    self._step(g_bar_opt, g_bar_loss, g_bar_loss=g_bar_loss)
        return G_bar, D_bar

    # --------------------------------------------------------------- Algorithm 1, lines 10-13
    def arch_part(self, val, G_bar, D_bar):
        G, D, adv, n = self.G, self.D, self.adv, self.preset.batch
        with self._metered() as stats, frozen(G.weight_parameters(), D_bar):
            for _ in range(self.preset.S):
                real = next(val)
                z = self.sample_z(n)
                minmax = adv.value(D_bar(real), D_bar(G(z)))  # V(G, D-bar): the architecture path
                with torch.no_grad():
                    maxmin = adv.value(D(real), D(G_bar(z)))  # V(G-bar, D): a constant here
                gap = minmax - maxmin
                self._step(self.arch_opt, gap, duality_gap=gap, minmax=minmax, maxmin=maxmin)
        return stats

    def iteration(self, train, val):
        """One outer iteration; returns its statistics (see ``_metered``). Raises NonFiniteError,
        before counting the iteration, once max_nonfinite steps in a row were skipped."""
        with self._metered() as stats:
            self.weight_part(train)
            G_bar, D_bar = self.test_weight_part(val)
            self.arch_part(val, G_bar, D_bar)
        longest = stats.pop("longest_nonfinite_streak")
        if longest >= self.max_nonfinite:
            raise NonFiniteError(
                f"search iteration {self.iterations_done + 1}: {longest} optimiser steps in a row had a non-finite "
                f"loss or duality gap (limit {self.max_nonfinite}); the networks diverged, so the search stops "
                f"without saving this iteration (skipped steps: {stats['skipped_steps']})")
        self.iterations_done += 1
        stats["iteration"] = self.iterations_done
        return stats

    # --------------------------------------------------------------- resume
    def state_dict(self):
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "g_opt": self.g_opt.state_dict(),
                "d_opt": self.d_opt.state_dict(), "arch_opt": self.arch_opt.state_dict(),
                "iterations_done": self.iterations_done, "nonfinite_streak": self.nonfinite_streak}

    def load_state_dict(self, state):
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.iterations_done = int(state["iterations_done"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
