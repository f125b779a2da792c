"""AGAN (Wang and Huan, 2019): reinforcement-learning search of the generator's up-sampling module
and the discriminator's down-sampling and normal modules, every child GAN trained from scratch.

Operations (section 3.2): 16 normal ops (identity, conv 1x1 / 3x3, dilated conv 3x3, depthwise-
separable conv 3/5/7, 1xn-then-nx1 conv n = 3/5/7, avg and max pooling 3/5/7); up-sampling ops:
transposed conv 3/5/7 (stride 2) or nearest-neighbour x2 followed by any normal op; down-sampling
ops: a normal op followed by stride-2 average pooling, or the pooling first. Convolutions are
BN-ReLU-Conv in G and ReLU-Conv in D (nothing between the 1xn and nx1 convs).

Module construction (section 3.2, Fig. 2): a controller segment o_0, a_0, o_1, ..., a_{k-2},
o_{k-1} builds a module of inputs h_{i-1}, h_i: N = {x_0 = h_i, x_1 = o_0(h_{i-1})}; op o_j
(j >= 1) takes the sum of the tensors a_{j-1} selects (x_0 when none) and adds its output to N;
the tensors never used as an input are concatenated and a 1x1 conv restores the channel count.
Heuristics: o_0 up- (down-) samples when the previous module did; in an up-sampling module the ops
applied to x_0, x_1 up-sample; in a down-sampling module the ops producing the concatenated tensors
down-sample. Where the paper leaves a case open we: up-sample (nearest) a low-resolution input that
is summed with high-resolution ones (then the op does not up-sample), and resize a concatenated
x_0 or x_1 of the wrong size (nearest x2 in G, average pooling in D).

Meta-architectures (Fig. 3): G = linear -> 3 up-sampling modules -> BN, ReLU, conv 3x3, tanh;
D = conv 3x3 -> 2 down-sampling modules -> 2 normal modules -> ReLU, global sum pooling, linear,
spectral norm on D's layers (section 4.3). A module's h_{i-1} is the output of the module before
the previous one (the linear / stem output for the first module, which then has h_{i-1} = h_i).

Search (sections 3.3, 4.2): the controller (``controller.AGANController``) samples architectures;
each child is trained ``child_steps`` G steps (5000; hinge loss, n_critic 5, Adam 2e-4 (0, 0.9),
G batch 128, D batch 64, 128 channels) and scored R = (IS - IS_min) / (IS_max - IS) with IS on
``reward_num`` samples (50,000 in 10 splits; IS_min 1, IS_max 11.24); REINFORCE with an EMA
baseline, learning rate 6e-4, entropy 1e-4, one update per ``update_every`` (10) rewards. The
paper trained 20,000 children on 200 GPUs: under ``torchrun`` the children of an update are trained
on all ranks (``spread.spread_jobs``) while rank 0 runs the controller; results do not depend on
the number of processes. The best child so far is the genotype (G and D modules).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from ..io import atomic_path
from ..metrics import to_uint8
from ..search.genotype import GenotypeError
from ..train.distributed import init_distributed
from ..train.runlog import Progress, RunLog, plot_series, save_image_grid
from . import rewards as R
from .controller import AGAN_ENTROPY, AGAN_LR, BASELINE_DECAY, HIDDEN, AGANController, EMABaseline, reinforce_loss
from .genotypes import ConventionalGenotype
from .losses import d_loss, g_loss
from .spread import job_seed, spread_jobs
from .train import batch_indices, latents, open_images

NORMAL_OPS = ("identity", "conv_1x1", "conv_3x3", "dil_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
              "conv_1x3_3x1", "conv_1x5_5x1", "conv_1x7_7x1", "avg_pool_3x3", "max_pool_3x3", "avg_pool_5x5",
              "max_pool_5x5", "avg_pool_7x7", "max_pool_7x7")
UP_OPS = ("deconv_3x3", "deconv_5x5", "deconv_7x7") + tuple(f"nearest_{op}" for op in NORMAL_OPS)
DOWN_OPS = tuple(f"{op}_then_pool" for op in NORMAL_OPS) + tuple(f"pool_then_{op}" for op in NORMAL_OPS)
SEGMENTS = {"up": UP_OPS, "down": DOWN_OPS, "normal": NORMAL_OPS}  # controller order: G up, D down, D normal
OPS_PER_MODULE = 6  # section 4.2: 6 operations and 5 adjacency vectors per segment
STATE_FILE = "search-state.pt"


class SearchError(RuntimeError):
    """A search that cannot start: bad option, data or state file."""


# ---------------------------------------------------------------------------- operations

def _sn(module, enabled):
    return spectral_norm(module) if enabled else module


class Op(nn.Module):
    """A normal op at fixed size: pre-activation (BN-ReLU in G, ReLU in D) before convolutions."""

    def __init__(self, name, channels, generator, sn=False):
        super().__init__()
        if name not in NORMAL_OPS + ("conv_5x5", "conv_7x7"):  # the last two: transposed convs kept at size
            raise ValueError(f"unknown AGAN normal operation {name!r}")
        self.name = name
        parts = name.split("_")
        kind = "identity" if name == "identity" else "conv_1xn" if len(parts) == 3 and parts[0] == "conv" \
            else "_".join(parts[:-1])
        k = int(parts[-1].split("x")[0]) if kind != "identity" else 0
        C = channels
        pre = [nn.BatchNorm2d(C), nn.ReLU()] if generator else [nn.ReLU()]
        if name == "identity":
            self.body = nn.Identity()
        elif kind in ("avg_pool", "max_pool"):
            self.body = (nn.AvgPool2d(k, 1, k // 2, count_include_pad=False) if kind == "avg_pool"
                         else nn.MaxPool2d(k, 1, k // 2))
        elif kind == "conv":
            self.body = nn.Sequential(*pre, _sn(nn.Conv2d(C, C, k, padding=k // 2), sn))
        elif kind == "dil_conv":
            self.body = nn.Sequential(*pre, _sn(nn.Conv2d(C, C, k, padding=k - 1, dilation=2), sn))
        elif kind == "sep_conv":
            self.body = nn.Sequential(*pre, _sn(nn.Conv2d(C, C, k, padding=k // 2, groups=C), sn),
                                      _sn(nn.Conv2d(C, C, 1), sn))
        else:  # 1xn then nx1, nothing between them
            n = int(parts[1][2:])
            self.body = nn.Sequential(*pre, _sn(nn.Conv2d(C, C, (1, n), padding=(0, n // 2)), sn),
                                      _sn(nn.Conv2d(C, C, (n, 1), padding=(n // 2, 0)), sn))

    def forward(self, x):
        return self.body(x)


class ResampleOp(nn.Module):
    """An up-sampling op (``UP_OPS``), a down-sampling op (``DOWN_OPS``) or a normal op, applied
    with ``resample`` "up", "down" or None. Without resampling an up/down op is its normal part
    (transposed conv k: conv k); a normal op asked to down-sample pools after itself."""

    def __init__(self, name, channels, generator, resample=None, sn=False):
        super().__init__()
        self.resample, self.pool_first, self.deconv = resample, False, None
        if name.startswith("deconv_"):
            k = int(name.split("_")[1][0])
            if resample == "up":
                pre = [nn.BatchNorm2d(channels), nn.ReLU()] if generator else [nn.ReLU()]
                self.deconv = nn.Sequential(*pre, nn.ConvTranspose2d(channels, channels, k, stride=2,
                                                                     padding=(k - 1) // 2, output_padding=1))
                return
            name = f"conv_{k}x{k}"
        elif name.startswith("nearest_"):
            name = name[len("nearest_"):]
        elif name.endswith("_then_pool"):
            name = name[:-len("_then_pool")]
        elif name.startswith("pool_then_"):
            name, self.pool_first = name[len("pool_then_"):], resample == "down"
        self.op = Op(name, channels, generator, sn)

    def forward(self, x):
        if self.deconv is not None:
            return self.deconv(x)
        if self.resample == "up":
            return self.op(F.interpolate(x, scale_factor=2, mode="nearest"))
        if self.resample == "down":
            return self.op(F.avg_pool2d(x, 2)) if self.pool_first else F.avg_pool2d(self.op(x), 2)
        return self.op(x)


# ---------------------------------------------------------------------------- modules

def module_plan(kind, ops, vectors, prev_resamples):
    """The graph of a module (section 3.2, steps 1-5 and the heuristics) as plain data:
    ``inputs[j]`` the nodes op j sums (op 0 reads h_{i-1}: None), ``resample[j]`` of op j,
    ``low`` the nodes at the input resolution of an up-sampling module, ``leaves`` the nodes
    concatenated. ``kind``: up | down | normal; ``prev_resamples``: the previous module resampled."""
    k = len(ops)
    if len(vectors) != k - 1:
        raise ValueError(f"a module of {k} operations takes {k - 1} adjacency vectors, got {len(vectors)}")
    inputs, resample, used = [None], ["up" if kind == "up" and prev_resamples else
                                      "down" if kind != "up" and prev_resamples else None], set()
    low = {0, 1} if kind == "up" else set()
    for j in range(1, k):
        vector = [int(b) for b in vectors[j - 1]]
        available = j + 1  # x_0 .. x_j exist before op j makes x_{j+1}
        if any(b not in (0, 1) for b in vector) or any(vector[available:]):
            raise ValueError(f"adjacency vector {j - 1} {vector}: only bits 0..{available - 1} may be set (0/1)")
        chosen = [i for i, b in enumerate(vector[:available]) if b] or [0]
        inputs.append(chosen)
        used.update(chosen)
        # in an up-sampling module an op applied to x_0 / x_1 (only) up-samples
        resample.append("up" if kind == "up" and all(i in low for i in chosen) else None)
    leaves = [i for i in range(k + 1) if i not in used]
    if kind == "down":  # the ops right before the concatenation (o_1.., making leaves) down-sample
        resample = resample[:1] + [("down" if j + 1 in leaves else r) for j, r in enumerate(resample) if j > 0]
    return {"inputs": inputs, "resample": resample, "low": sorted(low), "leaves": leaves}


class AGANModule(nn.Module):
    """One searched module: ``forward(h, h_prev)`` (see ``module_plan``)."""

    def __init__(self, kind, ops, vectors, channels, generator, prev_resamples, sn=False):
        super().__init__()
        self.kind = kind
        self.plan = module_plan(kind, ops, vectors, prev_resamples)
        resample = self.plan["resample"]
        self.ops = nn.ModuleList(ResampleOp(op, channels, generator, r, sn) for op, r in zip(ops, resample))
        pre = [nn.BatchNorm2d(channels * len(self.plan["leaves"])), nn.ReLU()] if generator else [nn.ReLU()]
        self.final = nn.Sequential(*pre, _sn(nn.Conv2d(channels * len(self.plan["leaves"]), channels, 1), sn))

    def forward(self, h, h_prev):
        plan, low = self.plan, set(self.plan["low"])
        nodes = [h, self.ops[0](h_prev)]
        for j in range(1, len(self.ops)):
            chosen = plan["inputs"][j]
            if self.kind == "up" and plan["resample"][j] is None:
                parts = [F.interpolate(nodes[i], scale_factor=2, mode="nearest") if i in low else nodes[i]
                         for i in chosen]
            else:
                parts = [nodes[i] for i in chosen]
            nodes.append(self.ops[j](sum(parts[1:], parts[0])))
        leaves = []
        for i in plan["leaves"]:
            x = nodes[i]
            if self.kind == "up" and i in low:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            elif self.kind == "down" and i in (0, 1):
                x = F.avg_pool2d(x, 2)
            leaves.append(x)
        return self.final(torch.cat(leaves, 1))


def _segment(body, key):
    return body[key]["ops"], body[key]["inputs"]


class AGANGenerator(nn.Module):
    """linear -> 3 up-sampling modules (one searched topology) -> BN, ReLU, conv 3x3, tanh."""

    def __init__(self, body, resolution, channels, latent_dim):
        super().__init__()
        if resolution % 8:
            raise ValueError(f"AGAN's generator doubles 3 times: resolution must be a multiple of 8, got {resolution}")
        self.width, self.channels, self.latent_dim = resolution // 8, channels, latent_dim
        self.l1 = nn.Linear(latent_dim, self.width ** 2 * channels)
        ops, vectors = _segment(body["generator"], "up")
        self.cells = nn.ModuleList(AGANModule("up", ops, vectors, channels, True, prev_resamples=i > 0)
                                   for i in range(3))
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 3, 3, padding=1),
                                    nn.Tanh())

    def forward(self, z):
        h = h_prev = self.l1(z).view(-1, self.channels, self.width, self.width)
        for module in self.cells:
            h_prev, h = h, module(h, h_prev)
        return self.to_rgb(h)


class AGANDiscriminator(nn.Module):
    """conv 3x3 -> 2 down-sampling modules -> 2 normal modules -> ReLU, global sum pooling, linear."""

    def __init__(self, body, channels, sn=True):
        super().__init__()
        self.stem = _sn(nn.Conv2d(3, channels, 3, padding=1), sn)
        down, normal = _segment(body["discriminator"], "down"), _segment(body["discriminator"], "normal")
        self.cells = nn.ModuleList([AGANModule("down", *down, channels, False, False, sn),
                                    AGANModule("down", *down, channels, False, True, sn),
                                    AGANModule("normal", *normal, channels, False, True, sn),
                                    AGANModule("normal", *normal, channels, False, False, sn)])
        self.linear = _sn(nn.Linear(channels, 1), sn)

    def forward(self, x):
        h = h_prev = self.stem(x)
        for module in self.cells:
            h_prev, h = h, module(h, h_prev)
        return self.linear(F.relu(h).sum(dim=(2, 3)))


# ---------------------------------------------------------------------------- genotype

def validate_body(body, where):
    """The ``agan`` genotype body: {"generator": {"up": S}, "discriminator": {"down": S, "normal": S}}
    with S = {"ops": [names], "inputs": [k - 1 bit lists]}."""
    for part, keys in (("generator", ("up",)), ("discriminator", ("down", "normal"))):
        if not isinstance(body.get(part), dict):
            raise GenotypeError(f"{where}: \"{part}\" must be an object with {', '.join(keys)}")
        for key in keys:
            segment = body[part].get(key)
            if not isinstance(segment, dict) or not isinstance(segment.get("ops"), list) or len(segment["ops"]) < 2:
                raise GenotypeError(f"{where}: {part}.{key} must be {{\"ops\": [2+ operations], \"inputs\": [...]}}")
            bad = [op for op in segment["ops"] if op not in SEGMENTS[key]]
            if bad:
                raise GenotypeError(f"{where}: {part}.{key}: {bad[0]!r} is not an AGAN {key} operation")
            try:
                module_plan(key, segment["ops"], segment.get("inputs"), False)
            except (ValueError, TypeError) as error:
                raise GenotypeError(f"{where}: {part}.{key}: {error}") from None


def genotype_of(arch, resolution, source=None):
    """A controller sample (per segment (op indices, vectors)) as a ConventionalGenotype."""
    segments = {}
    for (name, vocabulary), (ops, vectors) in zip(SEGMENTS.items(), arch):
        segments[name] = {"ops": [vocabulary[i] for i in ops], "inputs": [list(v) for v in vectors]}
    body = {"generator": {"up": segments["up"]},
            "discriminator": {"down": segments["down"], "normal": segments["normal"]}}
    return ConventionalGenotype("agan", resolution, body, source=source).validate()


def build_agan(genotype, resolution, gf_dim, df_dim, latent_dim, d_spectral_norm=True):
    return (AGANGenerator(genotype.body, resolution, gf_dim, latent_dim),
            AGANDiscriminator(genotype.body, df_dim, d_spectral_norm))


def new_controller(hidden=HIDDEN):
    return AGANController([(len(ops), OPS_PER_MODULE) for ops in SEGMENTS.values()], hidden)


# ---------------------------------------------------------------------------- search

@dataclass(frozen=True)
class AGANPreset:
    updates: int = 2000  # 20,000 children / 10 per update (section 4.2)
    update_every: int = 10
    child_steps: int = 5000
    channels: int = 128
    latent_dim: int = 128
    g_batch: int = 128
    d_batch: int = 64
    n_critic: int = 5
    lr: float = 2e-4
    betas: tuple = (0.0, 0.9)
    ctrl_lr: float = AGAN_LR
    entropy: float = AGAN_ENTROPY
    baseline_decay: float = BASELINE_DECAY
    hidden: int = HIDDEN
    reward_num: int = 50000
    is_splits: int = 10
    is_min: float = R.AGAN_IS_MIN
    is_max: float = R.AGAN_IS_MAX
    eval_batch: int = 100


PRESETS = {
    "paper": AGANPreset(),
    "tiny": AGANPreset(updates=2, update_every=2, child_steps=2, channels=4, latent_dim=8, g_batch=4, d_batch=4,
                       n_critic=2, reward_num=8, is_splits=2, eval_batch=8),
}


@dataclass
class AGANConfig:
    data: str
    outdir: str
    preset: str = "paper"
    iters: int | None = None  # controller updates
    reward: str = "is"
    proxy: bool = False
    inception: str | None = None
    resolution: int | None = None
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    overrides: dict | None = None


def real_batch(dataset, batch, seed, step, device):
    """Section 4.1's preprocessing: pixels scaled to [-1, 127/128] plus uniform noise U(0, 1/128)."""
    index = batch_indices(len(dataset), batch, seed, step)
    images = torch.stack([dataset[i] for i in index]).float() / 128 - 1
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed * 31 + step)) / 128
    return (images + noise).to(device)


def train_child(genotype, dataset, preset, seed, device, resolution, log=None):
    """Train one child GAN from scratch (hinge, n_critic, Adam); returns (G in eval mode, last losses).
    Children of 100+ G steps report progress to ``log`` every tenth."""
    seed = int(seed) % (1 << 31)  # the data streams of conventional.train take 31-bit seeds
    torch.manual_seed(seed)
    G, D = build_agan(genotype, resolution, preset.channels, preset.channels, preset.latent_dim)
    G, D = G.to(device), D.to(device)
    G_opt = torch.optim.Adam(G.parameters(), lr=preset.lr, betas=preset.betas)
    D_opt = torch.optim.Adam(D.parameters(), lr=preset.lr, betas=preset.betas)
    stats, loss_g = {}, None
    every = preset.child_steps // 10 if log is not None and preset.child_steps >= 100 else 0
    progress = Progress(preset.child_steps, unit="G step")
    for d_step in range(preset.child_steps * preset.n_critic):
        real = real_batch(dataset, preset.d_batch, seed, d_step, device)
        with torch.no_grad():
            fake = G(latents(seed, d_step, 1, preset.d_batch, preset.latent_dim, device))
        loss, stats = d_loss("hinge", D, real, fake)
        D_opt.zero_grad(set_to_none=True)
        loss.backward()
        D_opt.step()
        if (d_step + 1) % preset.n_critic:
            continue
        D.requires_grad_(False)
        loss_g = g_loss(D, G(latents(seed, d_step, 2, preset.g_batch, preset.latent_dim, device)))
        G_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        D.requires_grad_(True)
        G_opt.step()
        g_step = (d_step + 1) // preset.n_critic
        if every and g_step % every == 0:
            log("  child " + progress.line(g_step, d_loss=stats["d_loss"], g_loss=loss_g.item()))
    return G.eval(), {**stats, "g_loss": loss_g.item() if loss_g is not None else None}


def run_agan(config: AGANConfig, dataset=None, log=lambda line: click.echo(line, err=True), stop_at=None, net=None):
    """Search (or resume) into ``config.outdir``; returns the best genotype (rank 0; None
    elsewhere). ``dataset`` replaces the LMDB, ``net`` the reward network; ``stop_at`` ends the
    run after that many controller updates as if killed after the checkpoint."""
    if config.preset not in PRESETS:
        raise SearchError(f"--preset for agan must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    if config.reward != "is":
        raise SearchError(f"AGAN's reward is the shaped Inception Score (section 3.3); --reward {config.reward} is "
                          f"for autogan")
    preset = replace(PRESETS[config.preset], **(config.overrides or {}))
    if config.iters is not None:
        preset = replace(preset, updates=config.iters)
    try:
        dist = init_distributed(config.device)
    except ValueError as error:
        raise SearchError(str(error)) from None
    device, outdir = dist.device, Path(config.outdir)
    if dataset is None:
        dataset = open_images(config.data, config.resolution, SearchError)
    resolution = int(dataset[0].shape[-1])
    if resolution % 8:
        raise SearchError(f"{config.data}: {resolution}px images; AGAN's generator needs a multiple of 8")
    if net is None:
        try:
            net = R.reward_network("proxy" if config.proxy else "inception", config.inception, device, config.seed)
        except FileNotFoundError as error:
            raise SearchError(f"{error} (or search with --proxy for a labelled proxy reward)") from None
    score_name = R.score_names(net)[0]
    settings = {**asdict(preset), "preset": config.preset, "proxy": R.is_proxy(net), "resolution": resolution,
                "seed": config.seed, "images": len(dataset)}
    with torch.random.fork_rng():
        torch.manual_seed(job_seed(config.seed, 2_000_000))
        controller = new_controller(preset.hidden)
    ctrl_opt = torch.optim.Adam(controller.parameters(), lr=preset.ctrl_lr)
    baseline = EMABaseline(preset.baseline_decay)
    done, best = 0, []  # best: [{"arch", score_name, "reward"}] best first
    state_path = outdir / STATE_FILE
    if config.resume:
        if not state_path.is_file():
            raise SearchError(f"--resume: no {STATE_FILE} in {outdir} to resume from")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line error
            raise SearchError(f"{state_path}: not a readable search state ({type(error).__name__}: {error})") from None
        # every setting must match except the run's length, which a resume may extend
        mismatched = [k for k in settings if k != "updates" and state["settings"].get(k) != settings[k]]
        if mismatched:
            raise SearchError(f"--resume: {state_path} was written with other settings: " + ", ".join(
                f"{k}={state['settings'].get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
        controller.load_state_dict(state["controller"]), ctrl_opt.load_state_dict(state["ctrl_opt"])
        baseline.load_state_dict(state["baseline"])
        done, best = state["done"], state["best"]
        if dist.is_main:
            log(f"resumed {outdir} after {done} controller updates")
    elif state_path.exists():
        raise SearchError(f"{outdir} already holds a search ({STATE_FILE}); use --resume or another --outdir")

    runlog = None
    if dist.is_main:
        (outdir / "samples").mkdir(parents=True, exist_ok=True)
        runlog = RunLog(outdir / "log.jsonl", resume_at=done if config.resume else None, key="update")
        label = "PROXY reward (random-weight Inception; not an IS)" if R.is_proxy(net) else "reward"
        log(f"AGAN search at {resolution}px on {device} x{dist.world_size}: {preset.updates} controller updates of "
            f"{preset.update_every} children, {preset.child_steps} G steps each, {preset.channels} channels; {label}: "
            f"shaped {score_name} of {preset.reward_num} samples")
    progress = Progress(preset.updates, unit="update", start=done)

    def genotype(entry):
        return genotype_of(entry["arch"], resolution, source={
            "method": "agan", score_name: entry[score_name], "reward": entry["reward"], "settings": settings,
            "children": done * preset.update_every})

    def evaluate(job, index):
        arch, child_seed = job
        G, losses = train_child(genotype_of(arch, resolution), dataset, preset, child_seed, device, resolution,
                                log if preset.child_steps >= 100 else None)
        score = R.inception_score_of(G, net, preset.reward_num, preset.latent_dim, config.seed, preset.is_splits,
                                     preset.eval_batch)
        with torch.no_grad():
            samples = to_uint8(G(latents(config.seed, 0, 8, 16, preset.latent_dim, device))).cpu()
        return {"score": score, "losses": losses, "samples": samples}

    while done < preset.updates:
        tic = time.perf_counter()
        archs, rollout = None, None
        if dist.is_main:
            controller.train()
            rollout = controller(batch=preset.update_every,
                                 generator=torch.Generator().manual_seed(job_seed(config.seed, done)))
            archs = rollout.actions
        if dist.world_size > 1:
            archs = dist.broadcast_object(archs)
        jobs = [(arch, job_seed(config.seed, 10_000_000 + done * preset.update_every + i)) for i, arch in
                enumerate(archs)]
        results = spread_jobs(jobs, evaluate, job_seed(config.seed, 20_000_000 + done), dist,
                              log=log if preset.child_steps >= 100 else None)
        scores = [r["score"] for r in results]
        try:
            shaped = [R.shaped_is_reward(s, preset.is_min, preset.is_max) for s in scores]
        except ValueError as error:
            raise SearchError(str(error)) from None
        done += 1
        if dist.is_main:
            value = baseline.update(shaped)
            loss, advantages = reinforce_loss(rollout, shaped, value, preset.entropy)
            ctrl_opt.zero_grad(set_to_none=True)
            loss.backward()
            ctrl_opt.step()
            for arch, score, reward in zip(archs, scores, shaped):
                best.append({"arch": arch, score_name: score, "reward": reward})
            best = sorted(best, key=lambda e: -e["reward"])[:5]
            top = int(np.argmax(shaped))
            runlog.write({"update": done, "archs": [genotype_of(a, resolution).body for a in archs],
                          score_name: scores, "rewards": shaped, "reward_mean": float(np.mean(shaped)),
                          "baseline": value, "loss": loss.item(), "entropy": rollout.entropies.mean().item(),
                          "advantages": advantages.tolist(), "seconds": time.perf_counter() - tic,
                          "child_losses": [r["losses"] for r in results]})
            save_image_grid(results[top]["samples"], outdir / "samples" / f"update{done:05d}.png", nrow=4)
            plot_series(runlog.records(), ["reward_mean", "baseline", "entropy"], outdir / "rewards.png",
                        x_key="update", title=f"shaped {score_name}")
            log(progress.line(done, reward=float(np.mean(shaped)), best=best[0]["reward"]))
            with atomic_path(state_path) as tmp:
                torch.save({"settings": settings, "controller": controller.state_dict(),
                            "ctrl_opt": ctrl_opt.state_dict(), "baseline": baseline.state_dict(), "done": done,
                            "best": best}, tmp)
            genotype(best[0]).save(outdir / "genotype.json")
        dist.barrier()
        if done == stop_at:
            dist.close()
            return None
    result = genotype(best[0]) if dist.is_main and best else None
    if result is not None:
        log(f"best child ({score_name} {best[0][score_name]:.4g}) written to {outdir / 'genotype.json'}")
        runlog.close()
    dist.close()
    return result
