"""DGGAN: dynamically grown GANs (Liu, Zhang, Deng and Soatto, AAAI 2021), the top-K greedy search.

Section "Dynamically Grown GAN": G and D start as ProgGAN networks at d0 = 8 px (latent 128 for
CIFAR-10, 512 otherwise; WGAN-GP). A growing step applies an action to a parent:

- grow G by one convolution (kernel {3, 7}, filters {32, 64, 128, 256, 512, 1024}, resolution
  kept), inserted before the last convolution of G's newest resolution stage (G's growing head);
- grow D likewise, inserted after the first convolution of D's newest stage (D's growing head);
- double the resolution of both with ProgGAN's fade-in block: during the child's training the
  weight alpha of the new high-resolution path rises from 0 to 1 and the old path (up-sampled
  toRGB of the parent's output in G, down-sampled image into the parent's fromRGB in D) fades out.

A child inherits every parent tensor of the same name (the toRGB/fromRGB of a doubled parent are
renamed to the fading ``*_prev`` layers); a tensor whose shape changed because the layer before
it grew (the input width of G's last or D's next convolution) inherits the overlapping block;
new layers are random. Algorithm 1 (section "Search Algorithm"): each (parent, action) pair
becomes a child with probability p, children are trained for ``child_iters`` iterations, scored
by FID against the training statistics at their resolution (one reference, many candidates:
``frechet_distance_batched``) and the top K become the parents; the search stops at the final
resolution and the maximum number of grown layers, and the best candidate at the final
resolution trains ``final_iters`` more. Paper defaults: K = 20, p = 0.4, 100k iterations a child.

Children of a step are spread over the processes of a ``torchrun`` launch
(``conventional.spread``: job i seeded from (step seed, i)), so a search gives the same result on
any number of processes. Fig. 3 normalises FID by the ProgGAN baseline at each resolution: the
network that only ever doubled (no grown layers), trained along the same route; the search
trains it as one extra candidate per resolution (``baseline`` in the log), outside the top-K.

Output folder: ``genotype.json`` (search space ``dggan``, retrainable by ``train-conventional``),
``log.jsonl`` (every candidate: parent, action, FID, normalised FID, G and D parameters and their
ratio), ``candidates.csv``, ``fig3.png`` (normalised FID against the G/D parameter ratio with the
best route; per-action improvement over the parent; replays with smaller K or p, also in
``simulation.json``), ``final.pt`` (G and D of the best after
the final training), ``samples/``, ``fid-ref-<R>.npz`` and ``dggan-state.json`` with the weights
of the live candidates in ``candidates/`` (``--resume`` continues without retraining finished
candidates; under several machines ``candidates/`` must be on a shared file system).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import atomic_path
from ..search.genotype import GenotypeError
from ..train.runlog import save_image_grid
from .losses import GP_WEIGHT, gradient_penalty
from .spread import job_seed, seeded, spread_jobs

D0 = 8  # base resolution
KERNELS = (3, 7)
FILTERS = (32, 64, 128, 256, 512, 1024)
TOP_K = 20
SAMPLE_P = 0.4
CHILD_ITERS = 100_000
DRIFT = 1e-3  # ProgGAN's epsilon_drift on D(x)^2 beside WGAN-GP
STATE_FILE = "dggan-state.json"
FID_BATCH = 16  # candidates per frechet_distance_batched call


def proggan_channels(resolution, fmap_base=16384, fmap_max=512):
    """ProgGAN's feature maps at a resolution (512 up to 32 px, then halving)."""
    return min(fmap_max, fmap_base // resolution)


# ---------------------------------------------------------------------------- genotype

def stage_resolutions(body):
    return [D0 * 2 ** s for s in range(len(body["stages"]))]


def base_body(latent_dim, channels):
    """The ProgGAN base networks at d0 = 8 px; ``channels`` lists the feature maps of every stage
    the search may reach (8, 16, 32 px, ...)."""
    return {"latent_dim": int(latent_dim), "channels": [int(c) for c in channels], "stages": [{"g": [], "d": []}]}


def validate_body(body, where):
    """The ``dggan`` genotype body (``build_networks`` checks its resolution against the data)."""
    def check(condition, message):
        if not condition:
            raise GenotypeError(f"{where}: {message}")

    check(isinstance(body.get("latent_dim"), int) and body["latent_dim"] > 0, "latent_dim must be a positive integer")
    stages, channels = body.get("stages"), body.get("channels")
    check(isinstance(stages, list) and stages, "\"stages\" must list the resolution stages (8 px first)")
    check(isinstance(channels, list) and len(channels) >= len(stages)
          and all(isinstance(c, int) and c > 0 for c in channels),
          "\"channels\" must give a positive width for every stage")
    for s, stage in enumerate(stages):
        check(isinstance(stage, dict), f"stage {s} must be an object with \"g\" and \"d\"")
        for net in ("g", "d"):
            layers = stage.get(net)
            check(isinstance(layers, list) and all(
                isinstance(layer, list) and len(layer) == 2 and layer[0] in (1, 3, 5, 7) and isinstance(layer[1], int)
                and layer[1] > 0 for layer in layers),
                f"stage {s}: \"{net}\" must list grown convolutions as [kernel (odd, <= 7), filters]")


# ---------------------------------------------------------------------------- ProgGAN layers

class EqualConv2d(nn.Module):
    """Convolution with ProgGAN's equalised learning rate (weights N(0, 1) scaled at run time)."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale, self.padding = (in_channels * kernel_size ** 2) ** -0.5, kernel_size // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = in_features ** -0.5

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x):
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class GConv(nn.Module):
    """G's conv: conv, leaky ReLU 0.2, pixel norm."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size)

    def forward(self, x):
        return pixel_norm(F.leaky_relu(self.conv(x), 0.2))


class DConv(GConv):
    """D's conv: conv, leaky ReLU 0.2."""

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.2)


class Stage(nn.Module):
    """One resolution: ``first`` conv, the grown convs, ``last`` conv. G applies ``grown`` in
    order (the newest sits before ``last``); D applies it newest first (right after ``first``)."""

    def __init__(self, layer, in_channels, channels, out_channels, grown, newest_first):
        super().__init__()
        self.newest_first = newest_first
        self.first = layer(in_channels, channels, 3)
        widths = [channels]
        order = list(reversed(grown)) if newest_first else list(grown)
        built = []
        for kernel, filters in order:  # forward order
            built.append(layer(widths[-1], filters, kernel))
            widths.append(filters)
        self.grown = nn.ModuleList(reversed(built) if newest_first else built)  # creation order
        self.last = layer(widths[-1], out_channels, 3)

    def forward(self, x):
        x = self.first(x)
        for layer in (reversed(self.grown) if self.newest_first else self.grown):
            x = layer(x)
        return self.last(x)


class GrownGenerator(nn.Module):
    """ProgGAN generator of a ``dggan`` genotype body: pixel-normed z -> 4x4 block (dense, conv)
    -> one Stage per resolution (nearest up-sampling first) -> 1x1 toRGB (linear output, as
    ProgGAN). ``fading``: the newest stage is a fade-in block, output
    alpha * toRGB(new) + (1 - alpha) * up(toRGB_prev(previous stage))."""

    def __init__(self, body, fading=False):
        super().__init__()
        ch = body["channels"]
        self.latent_dim, self.fading, self.alpha = body["latent_dim"], fading and len(body["stages"]) > 1, 1.0
        self.resolution = stage_resolutions(body)[-1]
        self.input = EqualLinear(self.latent_dim, ch[0] * 16)
        self.conv4 = GConv(ch[0], ch[0], 3)
        self.stages = nn.ModuleList(Stage(GConv, ch[max(s - 1, 0)], ch[s], ch[s], stage["g"], newest_first=False)
                                    for s, stage in enumerate(body["stages"]))
        self.to_rgb = EqualConv2d(ch[len(body["stages"]) - 1], 3, 1)
        if self.fading:
            self.to_rgb_prev = EqualConv2d(ch[len(body["stages"]) - 2], 3, 1)

    def forward(self, z):
        h = pixel_norm(F.leaky_relu(self.input(pixel_norm(z)), 0.2).view(len(z), -1, 4, 4))
        h = self.conv4(h)
        previous = None
        for stage in self.stages:
            previous = h
            h = stage(F.interpolate(h, scale_factor=2, mode="nearest"))
        out = self.to_rgb(h)
        if self.fading and self.alpha < 1:
            low = F.interpolate(self.to_rgb_prev(previous), scale_factor=2, mode="nearest")
            out = self.alpha * out + (1 - self.alpha) * low
        return out


def minibatch_stddev(x, group=4):
    """ProgGAN's minibatch standard deviation feature map (groups of up to 4 strided samples)."""
    n, _, h, w = x.shape
    group = next(g for g in range(min(group, n), 0, -1) if n % g == 0)
    y = x.view(group, -1, *x.shape[1:])
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n / group]
    return torch.cat([x, y.repeat(group).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


class GrownDiscriminator(nn.Module):
    """ProgGAN discriminator of a ``dggan`` body: 1x1 fromRGB -> one Stage per resolution, newest
    first (average-pooled after it) -> 4x4 block (minibatch stddev, conv, dense, dense -> 1).
    ``fading``: the new stage's output mixes with fromRGB_prev(down(image)) by alpha."""

    def __init__(self, body, fading=False):
        super().__init__()
        ch = body["channels"]
        top = len(body["stages"]) - 1
        self.fading, self.alpha = fading and top > 0, 1.0
        self.resolution = stage_resolutions(body)[-1]
        self.from_rgb = DConv(3, ch[top], 1)
        if self.fading:
            self.from_rgb_prev = DConv(3, ch[top - 1], 1)
        self.stages = nn.ModuleList(Stage(DConv, ch[s], ch[s], ch[max(s - 1, 0)], stage["d"], newest_first=True)
                                    for s, stage in enumerate(body["stages"]))
        self.conv4 = DConv(ch[0] + 1, ch[0], 3)
        self.dense = EqualLinear(ch[0] * 16, ch[0])
        self.out = EqualLinear(ch[0], 1)

    def forward(self, x):
        h = self.from_rgb(x)
        for s in reversed(range(len(self.stages))):
            h = F.avg_pool2d(self.stages[s](h), 2)
            if s == len(self.stages) - 1 and self.fading and self.alpha < 1:
                h = self.alpha * h + (1 - self.alpha) * self.from_rgb_prev(F.avg_pool2d(x, 2))
        h = self.conv4(minibatch_stddev(h))
        return self.out(F.leaky_relu(self.dense(h.flatten(1)), 0.2))


def build_grown(genotype_or_body, fading=False):
    """(G, D) of a ``dggan`` genotype (a ConventionalGenotype or its body)."""
    body = getattr(genotype_or_body, "body", genotype_or_body)
    return GrownGenerator(body, fading), GrownDiscriminator(body, fading)


def count_parameters(module):
    """Parameters of the network as it runs after its fade-in (the fading ``*_prev`` layers left out)."""
    return sum(p.numel() for name, p in module.named_parameters() if "_prev" not in name)


# ---------------------------------------------------------------------------- actions

@dataclass(frozen=True)
class Action:
    kind: str  # "g", "d" or "double"
    kernel: int = 0
    filters: int = 0

    @property
    def name(self):
        if self.kind == "double":
            return "double"
        return f"{self.kind.upper()} conv{self.kernel}x{self.kernel}-{self.filters}"

    @classmethod
    def parse(cls, name):
        if name == "double":
            return cls("double")
        net, conv = name.split(" ")
        kernel, filters = conv[4:].split("-")
        return cls(net.lower(), int(kernel.split("x")[0]), int(filters))


def action_space(kernels=KERNELS, filters=FILTERS):
    """Section "Action Search Space": G convs, D convs (every kernel x filters), double."""
    return ([Action(net, k, f) for net in ("g", "d") for k in kernels for f in filters] + [Action("double")])


def allowed(body, action, final_resolution, max_grown):
    stage = body["stages"][-1]
    if action.kind == "double":
        return stage_resolutions(body)[-1] < final_resolution and len(body["channels"]) > len(body["stages"])
    return len(stage[action.kind]) < max_grown


def apply_action(body, action):
    """The child's genotype body."""
    child = json.loads(json.dumps(body))
    if action.kind == "double":
        child["stages"].append({"g": [], "d": []})
    else:
        child["stages"][-1][action.kind].append([action.kernel, action.filters])
    return child


def inherit(child, parent_state, renames=()):
    """Copy ``parent_state`` into ``child``: equal names and shapes are copied, a tensor whose shape
    changed gets the overlapping block, the rest stays random. ``renames``: (parent prefix, child
    prefix). Returns {"copied": [...], "partial": [...], "new": [...]} (child names)."""
    source = {}
    for name, tensor in parent_state.items():
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        source[name] = tensor
    report = {"copied": [], "partial": [], "new": []}
    with torch.no_grad():
        for name, tensor in child.state_dict().items():
            if name not in source:
                report["new"].append(name)
            elif source[name].shape == tensor.shape:
                tensor.copy_(source[name])
                report["copied"].append(name)
            else:
                block = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, source[name].shape))
                tensor[block].copy_(source[name][block])
                report["partial"].append(name)
    return report


def grow(parent_body, parent_state, action):
    """(child body, G, D) with the parent's weights inherited; a doubled child is built fading
    (alpha = 0: it computes its parent's output, up-sampled in G, of the down-sampled image in D)."""
    body = apply_action(parent_body, action)
    G, D = build_grown(body, fading=action.kind == "double")
    if parent_state is not None:
        inherit(G, parent_state["G"], renames=[("to_rgb.", "to_rgb_prev.")] if action.kind == "double" else ())
        inherit(D, parent_state["D"], renames=[("from_rgb.", "from_rgb_prev.")] if action.kind == "double" else ())
    return body, G, D


# ---------------------------------------------------------------------------- training a candidate

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


# ---------------------------------------------------------------------------- scoring

class FIDScorer:
    """FID of candidates against the training statistics at their resolution, through a reward
    network of ``conventional.rewards`` (the FID Inception, or the labelled ``ProxyInception``
    whose scores are logged as ``proxy_fid``): ``num`` samples a candidate, ``ref_num`` training
    images (all when None) average-pooled to the resolution, one ``frechet_distance_batched``
    call per resolution and process."""

    def __init__(self, net, num=10_000, ref_num=None, batch=50):
        from .rewards import score_names

        self.net, self.num, self.ref_num, self.batch = net, num, ref_num, batch
        self.label = score_names(net)[1]

    def candidate_stats(self, G, seed, device):
        from .rewards import sample_outputs

        _, stats = sample_outputs(G.eval(), self.net, self.num, G.latent_dim, seed, self.batch)
        return torch.as_tensor(stats.mu()), torch.as_tensor(stats.sigma())

    def reference_stats(self, dataset, resolution, device):
        from ..metrics import to_uint8
        from .rewards import reference_statistics

        count = len(dataset) if self.ref_num is None else min(self.ref_num, len(dataset))
        images = (to_uint8(downsample(dataset[i].float()[None] / 127.5 - 1, resolution))[0] for i in range(count))
        mu, sigma = reference_statistics(images, self.net, self.batch)
        return torch.as_tensor(mu), torch.as_tensor(sigma)

    @staticmethod
    def distances(stats, reference):
        from .rewards import fid_from_statistics

        if not stats:
            return []
        return [float(v) for v in fid_from_statistics([s[0] for s in stats], [s[1] for s in stats], reference)]


# ---------------------------------------------------------------------------- Algorithm 1

@dataclass
class DGGANConfig:
    final_resolution: int = 32
    latent_dim: int = 128
    channels: tuple = ()  # per stage; () -> ProgGAN's
    top_k: int = TOP_K
    p: float = SAMPLE_P
    kernels: tuple = KERNELS
    filters: tuple = FILTERS
    max_grown: int = 3  # grown convs per network and resolution: the "maximum number of layers"
    max_steps: int | None = None  # growing steps (None: until nothing can grow)
    child_iters: int = CHILD_ITERS
    fade_iters: int | None = None  # None: the first half of a doubled child's iterations
    final_iters: int = CHILD_ITERS
    batch: int = 16
    lr: float = 1e-3
    betas: tuple = (0.0, 0.99)
    seed: int = 0

    # settings a --resume must agree with
    STRUCTURAL = ("final_resolution", "latent_dim", "channels", "top_k", "p", "kernels", "filters", "max_grown",
                  "child_iters", "fade_iters", "batch", "lr", "betas", "seed")

    def resolved(self):
        stages = int(math.log2(self.final_resolution // D0)) + 1
        channels = tuple(self.channels) or tuple(proggan_channels(D0 * 2 ** s) for s in range(stages))
        fade = self.fade_iters if self.fade_iters is not None else self.child_iters // 2
        return replace(self, channels=tuple(channels), fade_iters=fade, kernels=tuple(self.kernels),
                       filters=tuple(self.filters), betas=tuple(self.betas))


PRESETS = {
    # the paper: ProgGAN widths, 100k iterations a child (CIFAR-10 latent 128; 512 otherwise)
    "paper": {},
    # a single small GPU: narrower networks and filter choices, 5k iterations, K = 8, p = 0.2
    # (the paper's simulation reaches the same FID at K = 8, p = 0.2)
    "small": {"channels": (128, 128, 128, 64, 32, 16), "filters": (32, 64, 128), "top_k": 8, "p": 0.2,
              "child_iters": 5000, "final_iters": 20000, "max_grown": 2},
    # CPU tests and the demo
    "tiny": {"latent_dim": 16, "channels": (8, 8, 8, 8, 8, 8), "filters": (4, 8), "kernels": (3,), "top_k": 2,
             "p": 0.5, "child_iters": 4, "final_iters": 4, "batch": 4, "max_grown": 1},
}


class SearchInterrupted(RuntimeError):
    """Raised by ``stop_after`` (tests): the search stops as if killed after a candidate's weights."""


class DGGANSearch:
    """Algorithm 1 with its state on disk. ``dataset``: items uint8 [3, R, R] at (at least) the final
    resolution; ``scorer``: a FIDScorer; ``dist``: a ``stylenas.train.distributed.Dist`` or None."""

    def __init__(self, config: DGGANConfig, outdir, dataset, scorer, device="cpu", dist=None,
                 log=print, resume=False, source=None):
        self.config, self.outdir = config.resolved(), Path(outdir)
        self.dataset, self.scorer, self.device, self.dist, self.log = dataset, scorer, torch.device(device), dist, log
        self.source = source or {}
        self.actions = action_space(self.config.kernels, self.config.filters)
        self.is_main = dist is None or dist.is_main
        self.state_path, self.weights = self.outdir / STATE_FILE, self.outdir / "candidates"
        self.trained = 0  # candidates trained by this process in this call (resume tests count them)
        self._stop_after = None
        settings = self.settings()
        if resume:
            if not self.state_path.is_file():
                raise ValueError(f"--resume: no {STATE_FILE} in {self.outdir} to resume from")
            try:
                self.state = json.loads(self.state_path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"{self.state_path}: not a readable DGGAN state ({error})") from None
            old = self.state.get("settings", {})
            mismatched = [k for k in DGGANConfig.STRUCTURAL + ("images", "scorer") if old.get(k) != settings.get(k)]
            if mismatched:
                raise ValueError(f"--resume: {self.state_path} was written with other settings: " + ", ".join(
                    f"{k}={old.get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
            self.state["settings"] = settings  # budget settings (max_steps, final_iters) may change
        else:
            if self.state_path.exists():
                raise ValueError(f"{self.outdir} already holds a DGGAN search ({STATE_FILE}); use --resume or "
                                 f"another --outdir")
            if any(self.weights.glob("c*.pt")):
                raise ValueError(f"{self.weights} holds candidate weights of another search; use another --outdir")
            self.state = {"settings": settings, "step": -1, "candidates": [], "parents": [], "baselines": {},
                          "best": None, "final": None}
        self._barrier()  # every process has checked the folder before rank 0 writes into it
        if self.is_main:
            self.weights.mkdir(parents=True, exist_ok=True)
            (self.outdir / "samples").mkdir(exist_ok=True)
            if not resume:  # from now on a kill leaves a state to --resume from, even inside step 0
                with atomic_path(self.state_path) as tmp:
                    tmp.write_text(json.dumps(self.state))
        self._barrier()
        self.references = {}

    def settings(self):
        out = asdict(self.config)
        return json.loads(json.dumps({**out, "images": len(self.dataset), "scorer": self.scorer.label}))

    def _barrier(self):
        if self.dist is not None:
            self.dist.barrier()

    # -- candidates ------------------------------------------------------------------------
    def candidate(self, cid):
        return self.state["candidates"][cid]

    def weights_path(self, cid):
        return self.weights / f"c{cid:05d}.pt"

    def load_weights(self, cid):
        path = self.weights_path(cid)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as error:
            raise ValueError(f"{path}: weights of candidate {cid} unreadable ({error})") from None

    def reference(self, resolution):
        """Training statistics at ``resolution``: computed once by rank 0 into fid-ref-<R>.npz."""
        if resolution not in self.references:
            path = self.outdir / f"fid-ref-{resolution}.npz"
            if self.is_main and not path.is_file():
                mu, sigma = self.scorer.reference_stats(self.dataset, resolution, self.device)
                with atomic_path(path, suffix=".npz") as tmp:
                    with open(tmp, "wb") as handle:
                        np.savez(handle, mu=mu.numpy(), sigma=sigma.numpy())
            self._barrier()
            with np.load(path) as data:
                self.references[resolution] = (torch.from_numpy(data["mu"]), torch.from_numpy(data["sigma"]))
        return self.references[resolution]

    def evaluate_jobs(self, jobs, step):
        """Train (or, when its weights exist, load) every job's child on all processes; FID in
        batches of up to FID_BATCH candidates of one resolution on each process (a 2048-d
        covariance is 32 MB: they are not all kept); results (in job order) on every rank."""
        c = self.config
        pending, fids = {}, {}  # resolution -> [(index, (mu, sigma))]; index -> FID

        def flush(resolution):
            batch = pending.pop(resolution, [])
            distances = self.scorer.distances([stats for _, stats in batch], self.reference(resolution))
            fids.update(zip([index for index, _ in batch], distances))

        def evaluate(job, index):
            cid = job["id"]
            path = self.weights_path(cid)
            body = job["genotype"]
            tic = time.perf_counter()
            if path.is_file():  # finished before a kill: not retrained
                G, D = build_grown(body)
                state = self.load_weights(cid)
                G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
                losses = state.get("losses", {})
            else:
                parent = self.load_weights(job["parent"]) if job["parent"] is not None else None
                if job["action"] is None:
                    G, D = build_grown(body)
                else:
                    _, G, D = grow(self.candidate(job["parent"])["genotype"], parent, Action.parse(job["action"]))
                losses = train_candidate(G, D, self.dataset, c.child_iters, c.batch, c.lr, c.betas, c.fade_iters,
                                         self.device)
                state = {**final_state(G, D), "losses": losses}
                with atomic_path(path) as tmp:
                    torch.save(state, tmp)
                self.trained += 1
                if self._stop_after is not None and self.trained >= self._stop_after:
                    raise SearchInterrupted(f"stopped after {self.trained} trained candidates")
                G, D = build_grown(body)
                G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
            G, D = G.to(self.device), D.to(self.device)
            resolution = stage_resolutions(body)[-1]
            pending.setdefault(resolution, []).append(
                (index, self.scorer.candidate_stats(G, job_seed(c.seed, 1_000_000 + cid), self.device)))
            if len(pending[resolution]) >= FID_BATCH:
                flush(resolution)
            return {"g_params": count_parameters(G), "d_params": count_parameters(D), "losses": losses,
                    "seconds": time.perf_counter() - tic}

        for resolution in sorted({stage_resolutions(j["genotype"])[-1] for j in jobs}):
            self.reference(resolution)  # on every rank, before the jobs: its barrier must not depend on them
        results = spread_jobs(jobs, evaluate, seed=job_seed(c.seed, step), dist=self.dist,
                              log=lambda line: self.log(f"step {step}: {line}"))
        for resolution in sorted(pending):
            flush(resolution)
        if self.dist is not None and self.dist.active:
            merged = {}
            for part in self.dist.gather_objects(fids):
                merged.update(part)
            fids = merged
        return [{**r, "fid": fids[i]} for i, r in enumerate(results)]

    # -- Algorithm 1 --------------------------------------------------------------------------
    def sample_children(self, step):
        """Every (parent, action) pair with probability p (parents in rank order, actions in
        ``action_space`` order); redrawn while nothing is drawn. Depends on (seed, step) only."""
        c = self.config
        pairs = [(pid, a) for pid in self.state["parents"] for a in self.actions
                 if allowed(self.candidate(pid)["genotype"], a, c.final_resolution, c.max_grown)]
        if not pairs:
            return []
        gen = torch.Generator().manual_seed(job_seed(c.seed, 10_000 + step))
        while True:
            keep = torch.rand(len(pairs), generator=gen) < c.p
            chosen = [pair for pair, k in zip(pairs, keep.tolist()) if k]
            if chosen:
                return chosen

    def new_candidate(self, step, parent, action, baseline=False, sampled=True):
        body = base_body(self.config.latent_dim, self.config.channels) if parent is None else apply_action(
            self.candidate(parent)["genotype"], action)
        record = {"id": len(self.state["candidates"]), "step": step, "parent": parent,
                  "action": None if action is None else action.name, "resolution": stage_resolutions(body)[-1],
                  "genotype": body, "baseline": baseline, "sampled": sampled}
        self.state["candidates"].append(record)
        return record

    def run_step(self, step):
        """Step 0 trains the initial candidate; step s > 0 grows the parents."""
        if step == 0:
            jobs = [self.new_candidate(0, None, None, baseline=True)]
            self.state["baselines"]["8"] = 0
        else:
            jobs = [self.new_candidate(step, pid, action) for pid, action in self.sample_children(step)]
            for resolution in sorted({j["resolution"] for j in jobs}):
                if str(resolution) in self.state["baselines"]:
                    continue
                low = self.state["baselines"][str(resolution // 2)]
                same = [j for j in jobs if j["parent"] == low and j["action"] == "double"]
                if same:
                    same[0]["baseline"] = True
                    self.state["baselines"][str(resolution)] = same[0]["id"]
                else:
                    extra = self.new_candidate(step, low, Action("double"), baseline=True, sampled=False)
                    jobs.append(extra)
                    self.state["baselines"][str(resolution)] = extra["id"]
        self.log(f"step {step}: training {len(jobs)} candidates "
                 f"({', '.join(sorted({str(j['resolution']) + 'px' for j in jobs}))})")
        results = self.evaluate_jobs(jobs, step)
        for job, result in zip(jobs, results):
            job.update(fid=result["fid"], g_params=result["g_params"], d_params=result["d_params"],
                       g_d_ratio=result["g_params"] / result["d_params"], seconds=result["seconds"],
                       **{k: v for k, v in result["losses"].items()})
        for job in jobs:
            base = self.candidate(self.state["baselines"][str(job["resolution"])])
            job["fid_norm"] = job["fid"] / base["fid"] if base.get("fid") else None
        # top-K of the sampled children (a ProgGAN baseline added beside them is not one of them)
        ranked = sorted((j for j in jobs if j["sampled"]), key=lambda j: (j["fid"], j["id"]))
        self.state["parents"] = [j["id"] for j in ranked[:self.config.top_k]]
        for job in jobs:
            job["kept"] = job["id"] in self.state["parents"]
            if job["resolution"] == self.config.final_resolution and (
                    self.state["best"] is None or job["fid"] < self.candidate(self.state["best"])["fid"]):
                self.state["best"] = job["id"]
        self.state["step"] = step
        if self.is_main:
            self.save(step_jobs=jobs)
        self._barrier()

    def stop_reason(self):
        c = self.config
        if c.max_steps is not None and self.state["step"] >= c.max_steps:
            return f"the budget of {c.max_steps} growing steps"
        if not any(allowed(self.candidate(pid)["genotype"], a, c.final_resolution, c.max_grown)
                   for pid in self.state["parents"] for a in self.actions):
            return f"the final resolution {c.final_resolution}px and {c.max_grown} grown layers per network"
        return None

    def run(self, stop_after=None):
        """Run (or continue) the search and the final training; returns the final record."""
        self._stop_after = stop_after
        while True:
            if self.state["step"] >= 0 and self.stop_reason():
                break
            # the state on disk holds whole steps only: a step cut by a kill is drawn again with
            # the same children and ids, and its finished children load their weights
            self.run_step(self.state["step"] + 1)
        self.log(f"search stopped at step {self.state['step']}: {self.stop_reason()}")
        return self.finish()

    def finish(self):
        """Rank 0 trains the best candidate longer; the other processes are done (no collective
        follows, so they need not wait through a long final training)."""
        c = self.config
        best_id = self.state["best"]
        if best_id is None:
            best_id = min((r for r in self.state["candidates"] if "fid" in r),
                          key=lambda r: (-r["resolution"], r["fid"]))["id"]
            self.log(f"no candidate reached {c.final_resolution}px within the budget; the best at "
                     f"{self.candidate(best_id)['resolution']}px is kept")
        best = self.candidate(best_id)
        self.reference(best["resolution"])  # every rank: its barrier
        if self.is_main and (self.state["final"] is None or self.state["final"].get("id") != best_id
                             or self.state["final"].get("iters") != c.final_iters):
            final = {"id": best_id, "iters": c.final_iters}
            G, D = build_grown(best["genotype"])
            state = self.load_weights(best_id)
            G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
            self.log(f"training the best candidate {best_id} ({best['resolution']}px, {self.scorer.label} "
                     f"{best['fid']:.4g}) {c.final_iters} more iterations")
            with seeded(job_seed(c.seed, 2_000_000 + best_id)):
                train_candidate(G, D, self.dataset, c.final_iters, c.batch, c.lr, c.betas, 0, self.device)
            stats = self.scorer.candidate_stats(G, job_seed(c.seed, 3_000_000 + best_id), self.device)
            final["fid"] = self.scorer.distances([stats], self.reference(best["resolution"]))[0]
            with atomic_path(self.outdir / "final.pt") as tmp:
                torch.save({"G": G.cpu().state_dict(), "D": D.cpu().state_dict(),
                            "genotype": self.genotype(best).to_dict()}, tmp)
            with torch.no_grad():
                z = torch.randn(16, G.latent_dim, generator=torch.Generator().manual_seed(c.seed))
                save_image_grid(G.eval()(z), self.outdir / "samples" / "final.png", nrow=4)
            self.state["final"] = final
            self.save()
            self.log(f"final {self.scorer.label} {final['fid']:.4g}; genotype written to "
                     f"{self.outdir / 'genotype.json'}")
        return self.state["final"]

    # -- outputs ---------------------------------------------------------------------------------
    def genotype(self, record):
        from .genotypes import ConventionalGenotype

        route, cid = [], record["id"]
        while cid is not None:
            r = self.candidate(cid)
            route.append({"id": cid, "action": r["action"], self.scorer.label: r.get("fid")})
            cid = r["parent"]
        return ConventionalGenotype("dggan", record["resolution"], record["genotype"],
                                    arch_parameters={"route": route[::-1], self.scorer.label: record.get("fid")},
                                    source={"method": "dggan", **self.source, "settings": self.state["settings"]})

    def save(self, step_jobs=()):
        """State, log lines of ``step_jobs``, CSV, figure and the best genotype so far; weights of
        candidates that are neither parents, baselines nor the best are deleted."""
        with atomic_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(self.state))
        with open(self.outdir / "log.jsonl", "a") as handle:
            for job in step_jobs:
                handle.write(json.dumps(log_record(job, self.scorer.label)) + "\n")
        write_csv(self.state["candidates"], self.outdir / "candidates.csv", self.scorer.label)
        scored = [r for r in self.state["candidates"] if "fid" in r]
        best = self.candidate(self.state["best"]) if self.state["best"] is not None else min(
            scored, key=lambda r: (-r["resolution"], r["fid"]))
        self.genotype(best).save(self.outdir / "genotype.json")
        c = self.config
        simulation = budget_simulations(scored, c.top_k, c.p, c.final_resolution)
        with atomic_path(self.outdir / "simulation.json") as tmp:
            tmp.write_text(json.dumps(simulation, indent=1) + "\n")
        plot_fig3(scored, best["id"], self.outdir / "fig3.png", simulation)
        if step_jobs:
            self.save_samples(self.candidate(self.state["parents"][0]))
        live = set(self.state["parents"]) | set(self.state["baselines"].values()) | {best["id"]}
        for path in self.weights.glob("c*.pt"):
            if int(path.stem[1:]) not in live and int(path.stem[1:]) < len(self.state["candidates"]):
                path.unlink()

    def save_samples(self, record):
        """samples/step<k>.png: 16 images of a step's best child (the same latents every step)."""
        G, _ = build_grown(record["genotype"])
        G.load_state_dict(self.load_weights(record["id"])["G"])
        z = torch.randn(16, G.latent_dim, generator=torch.Generator().manual_seed(self.config.seed))
        with torch.no_grad():
            save_image_grid(G.eval()(z), self.outdir / "samples" / f"step{record['step']:03d}.png", nrow=4)

    def rewrite_log(self):
        """log.jsonl from the state (a resumed search drops the lines of its unfinished step)."""
        with atomic_path(self.outdir / "log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(log_record(r, self.scorer.label)) + "\n" for r in self.state["candidates"]
                                   if "fid" in r and r["step"] <= self.state["step"]))


LOG_KEYS = ("step", "id", "parent", "action", "resolution", "fid", "fid_norm", "g_params", "d_params", "g_d_ratio",
            "baseline", "kept", "d_loss", "g_loss", "seconds")


def log_keys(label):
    """LOG_KEYS with FID named as the scorer logs it (``fid``, or ``proxy_fid`` for the proxy)."""
    return tuple(k.replace("fid", label) for k in LOG_KEYS)


def log_record(record, label="fid"):
    """One candidate's log line; the state keeps the score under "fid", the log under ``label``."""
    return {name: record.get(k) for k, name in zip(LOG_KEYS, log_keys(label))}


def write_csv(records, path, label="fid"):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(log_keys(label) + ("genotype",))
    for r in records:
        if "fid" in r:
            writer.writerow([r.get(k) for k in LOG_KEYS] + [json.dumps(r["genotype"]["stages"])])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def action_statistics(records):
    """Fig. 3 (middle): per action, the share of children better than their parent and the mean
    and standard deviation of child / parent normalised FID."""
    by_id = {r["id"]: r for r in records}
    groups = {}
    for r in records:
        parent = by_id.get(r["parent"])
        if r["action"] is None or parent is None or not r.get("fid_norm") or not parent.get("fid_norm"):
            continue
        groups.setdefault(r["action"], []).append(r["fid_norm"] / parent["fid_norm"])
    return {a: {"count": len(v), "improved": sum(x < 1 for x in v) / len(v), "mean": float(np.mean(v)),
                "std": float(np.std(v))} for a, v in sorted(groups.items())}


def simulate(records, top_k, p, final_resolution, draws=20):
    """Fig. 3 (right), the paper's ablated simulation: Algorithm 1 replayed on the candidates a
    search trained, with another K and p; a child the search did not train is ignored (so it
    explores less than a real run would). Returns the mean normalised FID of the best candidate
    at the final resolution over ``draws`` seeded replays that reach it, and the share that do."""
    children = {}
    for r in records:
        if r["parent"] is not None and r.get("sampled", True) and r.get("fid_norm") is not None:
            children.setdefault(r["parent"], []).append(r)
    roots = [r for r in records if r["parent"] is None]
    bests = []
    for seed in range(draws):
        rng, parents, best = np.random.default_rng(seed), roots, None
        while parents:
            pool = sorted((c for parent in parents for c in children.get(parent["id"], []) if rng.random() < p),
                          key=lambda r: (r["fid"], r["id"]))
            parents = pool[:top_k]
            for child in pool:
                if child["resolution"] == final_resolution and (best is None or child["fid_norm"] < best):
                    best = child["fid_norm"]
        bests.append(best)
    reached = [b for b in bests if b is not None]
    return {"best_fid_norm": float(np.mean(reached)) if reached else None, "reached": len(reached) / draws}


def budget_simulations(records, top_k, p, final_resolution):
    """``simulate`` over K = 1, 2, 4, ... up to the search's K (at its p) and over p = 0.1 ... its
    p and 1 (at its K)."""
    ks = sorted({min(2 ** i, top_k) for i in range(top_k.bit_length() + 1)})
    ps = sorted({round(x / 10, 1) for x in range(1, 11) if x / 10 <= p + 1e-9} | {p, 1.0})
    return {"K": {str(k): simulate(records, k, p, final_resolution) for k in ks},
            "p": {str(q): simulate(records, top_k, q, final_resolution) for q in ps}}


def plot_fig3(records, best_id, path, simulation=None, size=(420, 300)):
    """Fig. 3 like: left, normalised FID against log2(G/D parameters) for every candidate with the
    best candidate's growing route as red arrows; middle, per action the share of children that
    improved on their parent (bars) and the mean child/parent ratio (dots); right (with
    ``simulation`` of ``budget_simulations``), the best normalised FID of replays with smaller K or p."""
    from PIL import Image, ImageDraw

    from ..plots import save_image_atomic

    width, height = size
    image = Image.new("RGB", (3 * width, height), "white")
    draw = ImageDraw.Draw(image)
    points = [(math.log2(r["g_d_ratio"]), r.get("fid_norm") or 1.0, r) for r in records]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs) - 0.5, max(xs) + 0.5
    y0, y1 = 0.0, max(max(ys) * 1.05, 1.1)
    box = (40, 22, width - 10, height - 30)

    def at(x, y):
        return (box[0] + (box[2] - box[0]) * (x - x0) / (x1 - x0), box[3] - (box[3] - box[1]) * (y - y0) / (y1 - y0))

    draw.rectangle(box, outline=(160, 160, 160))
    draw.text((box[0], 4), "normalised FID vs log2(G/D params); red: best route", fill="black")
    draw.text((box[0], box[3] + 4), f"{x0:.1f}", fill=(90, 90, 90))
    draw.text((box[2] - 24, box[3] + 4), f"{x1:.1f}", fill=(90, 90, 90))
    draw.text((4, box[1]), f"{y1:.2g}", fill=(90, 90, 90))
    draw.text((4, box[3] - 10), "0", fill=(90, 90, 90))
    draw.line([at(x0, 1.0), at(x1, 1.0)], fill=(200, 200, 200))
    for x, y, _ in points:
        px, py = at(x, y)
        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=(31, 119, 180))
    by_id = {r["id"]: (x, y) for x, y, r in points}
    parents = {r["id"]: r["parent"] for _, _, r in points}
    cid = best_id
    while cid in parents and parents[cid] in by_id:
        (ax, ay), (bx, by) = at(*by_id[parents[cid]]), at(*by_id[cid])
        draw.line([(ax, ay), (bx, by)], fill=(214, 39, 40), width=2)
        angle = math.atan2(by - ay, bx - ax)
        for turn in (2.6, -2.6):
            draw.line([(bx, by), (bx + 7 * math.cos(angle + turn), by + 7 * math.sin(angle + turn))],
                      fill=(214, 39, 40), width=2)
        cid = parents[cid]
    stats = action_statistics(records)
    left = width
    draw.text((left + 10, 4), "per action: share improved (bar), mean child/parent (dot, 0..2)", fill="black")
    if stats:
        bar_box = (left + 10, 22, left + width - 10, height - 60)
        draw.rectangle(bar_box, outline=(160, 160, 160))
        step = (bar_box[2] - bar_box[0]) / len(stats)
        for i, (action, s) in enumerate(stats.items()):
            x = bar_box[0] + i * step
            top = bar_box[3] - (bar_box[3] - bar_box[1]) * s["improved"]
            draw.rectangle((x + 2, top, x + max(step - 2, 3), bar_box[3]), fill=(44, 160, 44))
            dot = bar_box[3] - (bar_box[3] - bar_box[1]) * min(s["mean"], 2.0) / 2.0
            draw.ellipse((x + step / 2 - 3, dot - 3, x + step / 2 + 3, dot + 3), fill=(214, 39, 40))
            label = action.replace("conv", "").replace(" ", "")
            draw.text((x + 2, bar_box[3] + 4 + 12 * (i % 3)), label[:10], fill="black")
    if simulation:
        _plot_simulation(draw, simulation, 2 * width, width, height)
    save_image_atomic(image, path)


def _plot_simulation(draw, simulation, left, width, height):
    draw.text((left + 10, 4), "replays: best normalised FID at the final size", fill="black")
    values = [v["best_fid_norm"] for series in simulation.values() for v in series.values()
              if v["best_fid_norm"] is not None]
    if not values:
        draw.text((left + 10, 40), "no replay reached the final resolution", fill="black")
        return
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    half = (height - 40) // 2
    for row, (name, series) in enumerate(simulation.items()):
        box = (left + 40, 22 + row * half, left + width - 10, 22 + row * half + half - 24)
        draw.rectangle(box, outline=(160, 160, 160))
        draw.text((left + 2, box[1]), f"{high:.3g}", fill=(90, 90, 90))
        draw.text((left + 2, box[3] - 10), f"{low:.3g}", fill=(90, 90, 90))
        keys = list(series)
        points = []
        for i, key in enumerate(keys):
            x = box[0] + (box[2] - box[0]) * (i + 0.5) / len(keys)
            draw.text((x - 8, box[3] + 2), key, fill="black")
            value = series[key]["best_fid_norm"]
            if value is not None:
                points.append((x, box[3] - 6 - (box[3] - box[1] - 12) * (value - low) / span))
        draw.text((box[2] - 12, box[3] + 2), name, fill=(214, 39, 40))
        if len(points) > 1:
            draw.line(points, fill=(31, 119, 180), width=2)
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(31, 119, 180))


def run_dggan(config: DGGANConfig, outdir, dataset, scorer, device="cpu", dist=None, log=print, resume=False,
              stop_after=None, source=None):
    """Search (or resume) and train the best longer; returns the search object (its ``state``)."""
    resolution = int(dataset[0].shape[-1])
    if config.final_resolution < D0 or config.final_resolution & (config.final_resolution - 1):
        raise ValueError(f"the final resolution must be a power of two from {D0} px, got {config.final_resolution}")
    if resolution < config.final_resolution or resolution % config.final_resolution:
        raise ValueError(f"the data is {resolution}px; DGGAN at {config.final_resolution}px needs images of that "
                         f"size (or a multiple)")
    if not 0 < config.p <= 1 or config.top_k < 1:
        raise ValueError(f"p must be in (0, 1] and K >= 1, got p={config.p}, K={config.top_k}")
    stages = int(math.log2(config.final_resolution // D0)) + 1
    if len(config.resolved().channels) < stages:
        raise ValueError(f"channels {config.channels}: one width per stage up to {config.final_resolution}px "
                         f"({stages} stages)")
    search = DGGANSearch(config, outdir, dataset, scorer, device, dist, log, resume, source)
    if resume:
        log(f"resumed {outdir} after step {search.state['step']}")
        if search.is_main:
            search.rewrite_log()
    else:
        log(f"DGGAN search to {config.final_resolution}px on {device}: K={search.config.top_k}, "
            f"p={search.config.p}, {len(search.actions)} actions, {search.config.child_iters} iterations a child, "
            f"scored by {scorer.label}")
    search.run(stop_after=stop_after)
    return search


# ---------------------------------------------------------------------------- command line

SCORE_SAMPLES = {"paper": 10_000, "small": 5_000, "tiny": 16}  # samples a candidate's FID is measured on
REFERENCE_IMAGES = {"paper": None, "small": 10_000, "tiny": 64}  # training images of the statistics


def search_from_options(data, outdir, preset="paper", resolution=None, seed=0, device="auto", resume=False,
                        proxy=False, inception=None, overrides=None, fid_num=None, log=print):
    """``search-conventional --method dggan``: the LMDB's images (``resolution``: which stored size)
    are the final resolution; ``overrides`` replace DGGANConfig fields of the preset (e.g.
    ``top_k``, ``p``, ``child_iters``, ``max_steps``, ``final_iters``)."""
    from ..datasets import DatasetError, LMDBImages
    from ..train.distributed import init_distributed
    from .rewards import reward_network

    if preset not in PRESETS:
        raise ValueError(f"--preset for dggan must be one of {', '.join(PRESETS)}, got {preset!r}")
    try:
        dataset = LMDBImages(data, resolution=resolution)
    except DatasetError as error:
        raise ValueError(str(error)) from None
    size = int(dataset[0].shape[-1])
    if size < D0 or size & (size - 1):
        raise ValueError(f"{data}: {size}px images; DGGAN doubles from {D0} px, so the final resolution must be a "
                         f"power of two (32 for CIFAR-10; resize STL-10 to 32 or 64 with prepare-data)")
    settings = {"latent_dim": 128 if size == 32 else 512, **PRESETS[preset], **(overrides or {})}
    config = DGGANConfig(final_resolution=size, seed=seed, **settings)
    # a rank that finished its children waits in the gather for the slowest: paper children train for hours
    dist = init_distributed(device, timeout_minutes=7 * 24 * 60)
    net = reward_network("proxy" if proxy else "inception", weights=inception, device=dist.device)
    scorer = FIDScorer(net, num=fid_num or SCORE_SAMPLES[preset], ref_num=REFERENCE_IMAGES[preset])
    try:
        return run_dggan(config, outdir, dataset, scorer, device=dist.device, dist=dist,
                         log=log if dist.is_main else (lambda line: None), resume=resume,
                         source={"data": str(data), "preset": preset})
    finally:
        dist.close()
