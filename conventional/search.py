"""The conventional searches behind ``stylenas search-conventional`` (``scripts/search_conventional.py``).

``alphagan``: alphaGAN (Tian et al., sections 4-5, appendix .1.1.1) on AutoGAN-style cells
(``alphagan_space``) against the fixed SNGAN/AutoGAN discriminator, through the generic
``stylenas.search.AlphaGANSearcher`` (Algorithms 1 and 2). Presets ``s`` (T = R = S = 20) and
``l`` (T = R = one pass over the training half, S = 20), 100 iterations, batch 64, gf 256,
df 128, latent 128; ``tiny`` runs in CPU minutes.

``degas``: DEGAS (Doveh and Giryes, section 3.2; ``degas``): GLO on the whole-generator
supernet, alternating a step on the weights and the latent codes (training half) with a step on
the alphas (validation half), first-order DARTS. DARTS' CIFAR settings: 50 epochs, batch 64,
weights SGD lr 0.025 (cosine to 0.001), momentum 0.9, weight decay 3e-4, gradient clip 5; alphas
Adam betas (0.5, 0.999), weight decay 1e-3, lr 3e-1 (CIFAR) / 3e-2 (STL) as DEGAS.

Both write ``genotype.json`` (retrainable as is by ``train-conventional``), ``log.jsonl``,
``alphas.png``, ``samples/iter*.png`` (of the derived discrete architecture, with the weights
it inherits from the supernet and fresh BatchNorm statistics; ``--metrics is,fid`` scores
the same network) and ``search-state.pt`` (networks, alphas, optimisers, latent
codes, stream positions, RNG: ``--resume`` continues exactly).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import torch

from ..io import atomic_path
from ..plots import save_line_panels
from ..search.alphagan import PRESETS as ALPHAGAN_PRESETS
from ..search.alphagan import AlphaGANSearcher
from ..search.run import split_halves
from ..train.checkpoint import capture_rng, restore_rng
from ..train.runlog import save_image_grid
from .alphagan_space import AlphaGANSuperGenerator, entropy
from .degas import DegasSuperGenerator, glo_loss
from .networks import Discriminator, build_generator, init_weights
from .train import MetricEvaluator, TrainError, open_images
from .ops import ALPHAGAN_NORMAL_OPS, ALPHAGAN_UP_OPS, DEGAS_NORMAL_OPS, DEGAS_UP_OPS

STATE_FILE = "search-state.pt"
METHODS = ("alphagan", "degas")
# network sizes: the papers' (search at gf 256 / df 128, alphaGAN section 5) and tiny ones
NETWORKS = {"paper": {"gf_dim": 256, "df_dim": 128, "latent_dim": 128},
            "tiny": {"gf_dim": 8, "df_dim": 8, "latent_dim": 16}}


@dataclass(frozen=True)
class DegasPreset:
    epochs: int
    batch: int
    arch_lr: float
    lr: float = 0.025  # DARTS CIFAR: SGD, cosine to lr_min
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    latent_lr: float = 0.025  # GLO codes: plain SGD, then back onto the unit sphere
    arch_betas: tuple = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    steps_per_epoch: int | None = None  # None: one pass over the training half
    gf_dim: int = 16  # DARTS searches a narrow network (16 initial channels)
    latent_dim: int = 128
    normal_per_stage: int = 2


DEGAS_PRESETS = {
    "cifar": DegasPreset(epochs=50, batch=64, arch_lr=3e-1),
    "stl": DegasPreset(epochs=50, batch=64, arch_lr=3e-2),
    "tiny": DegasPreset(epochs=6, batch=4, arch_lr=3e-1, steps_per_epoch=2, gf_dim=8, latent_dim=16),
}


class SearchError(RuntimeError):
    """A search that cannot start: bad data, option or state file."""


@dataclass
class SearchConfig:
    method: str
    data: str
    outdir: str
    preset: str | None = None
    iters: int | None = None
    resolution: int | None = None
    seed: int = 0
    device: str = "auto"
    sample_every: int | None = None
    resume: bool = False
    checkpoint_every: int = 1
    metrics: tuple = ()  # "is", "fid" of the derived architecture at every sample grid
    fid_stats: str | None = None
    metric_num: int = 5000
    inception: str | None = None

    STRUCTURAL = ("method", "preset", "resolution", "seed", "images")


class HalfStream:
    """Real batches of one half of the data; batch k depends on (seed, stream, k) only."""

    def __init__(self, dataset, indices, batch, seed, stream, device, step=0, with_index=False):
        self.dataset, self.indices, self.batch = dataset, indices, batch
        self.seed, self.stream, self.device, self.step, self.with_index = seed, stream, device, step, with_index

    def __iter__(self):
        return self

    def __next__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stream * 7_919 + self.step)
        picks = self.indices[torch.randint(len(self.indices), (self.batch,), generator=gen)]
        self.step += 1
        images = torch.stack([self.dataset[int(i)] for i in picks]).to(self.device).float() / 127.5 - 1
        return (picks.to(self.device), images) if self.with_index else images


# ---------------------------------------------------------------------------- the two methods

class AlphaGANMethod:
    """alphaGAN through the generic searcher; one iteration = Algorithm 1's outer loop."""

    labels = {"up": ALPHAGAN_UP_OPS, "normal": ALPHAGAN_NORMAL_OPS, "skip": ALPHAGAN_UP_OPS}

    def __init__(self, preset_name, resolution, halves, dataset, seed, device):
        if preset_name not in ("s", "l", "tiny"):
            raise SearchError(f"--preset for alphagan must be s, l or tiny, got {preset_name!r}")
        preset = ALPHAGAN_PRESETS[preset_name]
        if preset_name == "l":  # one pass over the training half per part (390 on CIFAR-10)
            passes = max(1, len(halves[0]) // preset.batch)
            preset = replace(preset, T=passes, R=passes)
        self.preset, self.device = preset, device
        net = NETWORKS["tiny" if preset_name == "tiny" else "paper"]
        self.latent_dim = net["latent_dim"]
        torch.manual_seed(seed)
        self.G = AlphaGANSuperGenerator(resolution, net["gf_dim"], net["latent_dim"]).to(device)
        self.D = init_weights(Discriminator(net["df_dim"])).to(device)
        self.searcher = AlphaGANSearcher(self.G, self.D, lambda n: torch.randn(n, self.latent_dim, device=device),
                                         preset)
        self.train = HalfStream(dataset, halves[0], preset.batch, seed, 0, device)
        self.val = HalfStream(dataset, halves[1], preset.batch, seed, 1, device)
        self.iterations = preset.iterations
        self.describe = (f"alphaGAN on AutoGAN cells: T={preset.T}, R={preset.R}, S={preset.S}, batch {preset.batch}, "
                         f"gf {net['gf_dim']}, df {net['df_dim']}")

    def step(self):
        stats = self.searcher.iteration(self.train, self.val)
        stats["entropy"] = {k: entropy(v) for k, v in self.G.op_weights().items()}
        return stats

    @property
    def done(self):
        return self.searcher.iterations_done

    def state_dict(self):
        return {"searcher": self.searcher.state_dict(), "train_step": self.train.step, "val_step": self.val.step}

    def load_state_dict(self, state):
        self.searcher.load_state_dict(state["searcher"])
        self.train.step, self.val.step = state["train_step"], state["val_step"]

    def arch_snapshot(self):
        return self.G.op_weights()


class DegasMethod:
    """DEGAS: per step, GLO on the weights and codes of a training batch, then first-order
    DARTS on the alphas (and the codes) of a validation batch; one iteration = one epoch."""

    def __init__(self, preset, resolution, halves, dataset, seed, device):
        """``preset``: a name of DEGAS_PRESETS or a DegasPreset."""
        if not isinstance(preset, DegasPreset):
            if preset not in DEGAS_PRESETS:
                raise SearchError(f"--preset for degas must be one of {', '.join(DEGAS_PRESETS)}, got {preset!r}")
            preset = DEGAS_PRESETS[preset]
        p = self.preset = preset
        self.device = device
        torch.manual_seed(seed)
        self.G = DegasSuperGenerator(resolution, p.gf_dim, p.latent_dim, p.normal_per_stage).to(device)
        # GLO: a code per image on the unit sphere (random start; GLO's PCA start needs the whole set)
        self.codes = torch.nn.functional.normalize(torch.randn(len(dataset), p.latent_dim), dim=1).to(device)
        self.codes.requires_grad_(True)
        self.w_opt = torch.optim.SGD(self.G.weight_parameters(), lr=p.lr, momentum=p.momentum,
                                     weight_decay=p.weight_decay)
        self.code_opt = torch.optim.SGD([self.codes], lr=p.latent_lr)  # no momentum: untouched codes stay put
        self.arch_opt = torch.optim.Adam(self.G.arch_parameters(), lr=p.arch_lr, betas=p.arch_betas,
                                         weight_decay=p.arch_weight_decay)
        self.steps_per_epoch = p.steps_per_epoch or max(1, len(halves[0]) // p.batch)
        self.train = HalfStream(dataset, halves[0], p.batch, seed, 0, device, with_index=True)
        self.val = HalfStream(dataset, halves[1], p.batch, seed, 1, device, with_index=True)
        self.iterations, self.epochs_done = p.epochs, 0
        self.describe = (f"DEGAS (GLO): {self.steps_per_epoch} steps per epoch, batch {p.batch}, gf {p.gf_dim}, "
                         f"arch lr {p.arch_lr}")

    def _lr(self):
        p = self.preset  # DARTS' cosine schedule, per epoch
        return p.lr_min + 0.5 * (p.lr - p.lr_min) * (1 + math.cos(math.pi * self.epochs_done / p.epochs))

    def _fit(self, index, images, optimizers, params):
        loss = glo_loss(self.G(self.codes[index]), images)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if params is not None:
            torch.nn.utils.clip_grad_norm_(params, self.preset.grad_clip)
        for opt in optimizers:
            opt.step()
        with torch.no_grad():  # GLO keeps the codes on the unit sphere
            self.codes[index] = torch.nn.functional.normalize(self.codes[index], dim=1)
        return loss.item()

    def step(self):
        for group in self.w_opt.param_groups:
            group["lr"] = self._lr()
        weight_losses, arch_losses = [], []
        arch, weights = self.G.arch_parameters(), self.G.weight_parameters()
        for _ in range(self.steps_per_epoch):
            for p in arch:
                p.requires_grad_(False)
            weight_losses.append(self._fit(*next(self.train), (self.w_opt, self.code_opt), weights))
            for p in arch:
                p.requires_grad_(True)
            for p in weights:
                p.requires_grad_(False)
            arch_losses.append(self._fit(*next(self.val), (self.arch_opt, self.code_opt), None))
            for p in weights:
                p.requires_grad_(True)
        self.epochs_done += 1
        return {"iteration": self.epochs_done, "train_loss": sum(weight_losses) / len(weight_losses),
                "val_loss": sum(arch_losses) / len(arch_losses), "lr": self._lr(),
                "entropy": {k: entropy(v) for k, v in self.G.op_weights().items()}}

    @property
    def done(self):
        return self.epochs_done

    def state_dict(self):
        return {"G": self.G.state_dict(), "codes": self.codes.detach(), "w_opt": self.w_opt.state_dict(),
                "code_opt": self.code_opt.state_dict(), "arch_opt": self.arch_opt.state_dict(),
                "epochs_done": self.epochs_done, "train_step": self.train.step, "val_step": self.val.step}

    def load_state_dict(self, state):
        self.G.load_state_dict(state["G"])
        with torch.no_grad():
            self.codes.copy_(state["codes"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.code_opt.load_state_dict(state["code_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.epochs_done = int(state["epochs_done"])
        self.train.step, self.val.step = state["train_step"], state["val_step"]

    def arch_snapshot(self):
        return self.G.op_weights()


def plot_alphas(history, path, method):
    """One panel per edge: the softmax weight of every op over the search."""
    panels = []
    for key in history[0]:
        rows = history[0][key]
        rows = rows if isinstance(rows[0], list) else [rows]
        for edge in range(len(rows)):
            def weights(step):
                value = step[key]
                return value[edge] if isinstance(value[0], list) else value
            if method == "alphagan":
                labels = AlphaGANMethod.labels[key.split("_")[0]]
            else:
                labels = DEGAS_UP_OPS if key.startswith("up") else DEGAS_NORMAL_OPS
            title = f"{key} edge {edge}" if len(rows) > 1 else key.replace("__", " <- ")
            panels.append((title, {label: [weights(step)[i] for step in history] for i, label in enumerate(labels)}))
    save_line_panels(panels, path)


def keep_rng(device):
    """A block whose random draws leave the global generators (CPU and ``device``) as they were:
    side work (building a network to sample or score) must not shift the search's stream, or a
    resumed run would differ from an uninterrupted one."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


@torch.no_grad()
def recalibrate_batchnorm(net, latent_dim, device, batches, batch, seed):
    """Fresh BatchNorm statistics of ``net`` (the cumulative average over ``batches`` batches of
    seeded latents), then eval mode: the running averages a derived network inherits were taken
    on the supernet's mixtures, not on its own activations."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches if norms else 0):
        net(torch.randn(batch, latent_dim, generator=gen).to(device))
    return net.eval()


def derived_network(method, genotype, device, tiny, seed):
    """The derived (discrete) architecture with the weights it inherits from the supernet."""
    G = method.G
    net = build_generator(genotype, G.resolution, G.gf_dim, G.latent_dim).to(device)
    net.load_state_dict(G.discrete_state_dict(genotype))
    return recalibrate_batchnorm(net, G.latent_dim, device, 2 if tiny else 8, 16 if tiny else 64, seed)


def run_search(config: SearchConfig, dataset=None, log=lambda line: click.echo(line, err=True)):
    """Run (or resume) a conventional search; returns the derived genotype."""
    if config.method not in METHODS:
        raise SearchError(f"--method must be one of {', '.join(METHODS)} (autogan, agan and dggan arrive with "
                          f"their issues), got {config.method!r}")
    from ..devices import resolve_device

    try:
        device = resolve_device(config.device)
    except ValueError as error:
        raise SearchError(str(error)) from None
    if dataset is None:
        dataset = open_images(config.data, config.resolution, SearchError)
    resolution = int(dataset[0].shape[-1])
    if resolution % 8:
        raise SearchError(f"{config.data}: {resolution}px images; the conventional search spaces need a multiple "
                          f"of 8 (32 for CIFAR-10, 48 for STL-10)")
    preset = config.preset or ("s" if config.method == "alphagan" else ("cifar" if resolution == 32 else "stl"))
    halves = split_halves(len(dataset), config.seed)
    presets = ("s", "l", "tiny") if config.method == "alphagan" else tuple(DEGAS_PRESETS)
    if preset not in presets:
        raise SearchError(f"--preset for {config.method} must be {', '.join(presets[:-1])} or {presets[-1]}, "
                          f"got {preset!r}")
    cls = AlphaGANMethod if config.method == "alphagan" else DegasMethod
    batch = (ALPHAGAN_PRESETS if config.method == "alphagan" else DEGAS_PRESETS)[preset].batch
    if len(halves[0]) < batch:
        raise SearchError(f"{config.data}: {len(dataset)} images are too few for two halves of at least {batch} "
                          f"images (the batch size) each")
    method = cls(preset, resolution, halves, dataset, config.seed, device)
    iters = config.iters if config.iters is not None else method.iterations
    sample_every = 10 if config.sample_every is None else config.sample_every
    settings = {**asdict(config), "preset": preset, "resolution": resolution, "images": len(dataset)}
    outdir, state_path = Path(config.outdir), Path(config.outdir) / STATE_FILE
    history = []
    if config.resume:
        if not state_path.is_file():
            raise SearchError(f"--resume: no {STATE_FILE} in {outdir} to resume from")
        try:
            state = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line error
            raise SearchError(f"{state_path}: not a readable search state ({type(error).__name__}: {error})") from None
        mismatched = [k for k in SearchConfig.STRUCTURAL if state["settings"].get(k) != settings.get(k)]
        if mismatched:
            raise SearchError(f"--resume: {state_path} was written with other settings: " + ", ".join(
                f"{k}={state['settings'].get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
        method.load_state_dict(state["method"])
        history = state["history"]
        restore_rng(state["rng"])
        _truncate_log(outdir / "log.jsonl", method.done)
        log(f"resumed {outdir} at iteration {method.done}")
    elif state_path.exists():
        raise SearchError(f"{outdir} already holds a search ({STATE_FILE}); use --resume or another --outdir")
    evaluator = None
    if config.metrics:
        try:
            with keep_rng(device):
                evaluator = MetricEvaluator(config.metrics, config.metric_num, config.fid_stats, config.inception,
                                            device)
        except TrainError as error:
            raise SearchError(str(error)) from None
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "samples").mkdir(exist_ok=True)
    source = {"method": config.method, "data": str(config.data), "settings": settings}
    sample_z = torch.randn(16, method.G.latent_dim, generator=torch.Generator().manual_seed(config.seed + 1)).to(device)

    def genotype():
        return method.G.genotype(source={**source, "iterations": method.done})

    def checkpoint():
        with atomic_path(state_path) as tmp:
            torch.save({"settings": settings, "method": method.state_dict(), "history": history,
                        "rng": capture_rng()}, tmp)
        genotype().save(outdir / "genotype.json")
        if history:
            plot_alphas(history, outdir / "alphas.png", config.method)

    log(f"searching {config.method} at {resolution}px on {device}: {iters} iterations; {method.describe}; "
        f"{len(halves[0])} training / {len(halves[1])} validation images")
    start = method.done
    with open(outdir / "log.jsonl", "a") as log_file, click.progressbar(
            length=max(iters - start, 0), label=f"{config.method} search", file=sys.stderr) as bar:
        for _ in range(start, iters):
            tic = time.perf_counter()
            method.G.train()
            stats = method.step()
            stats["seconds"] = time.perf_counter() - tic
            history.append(method.arch_snapshot())
            k = method.done
            if sample_every and (k % sample_every == 0 or k == iters):
                with keep_rng(device):  # building it draws initial weights: keep the search's stream
                    net = derived_network(method, genotype(), device, preset == "tiny", config.seed + k)
                with torch.no_grad():
                    save_image_grid(net(sample_z), outdir / "samples" / f"iter{k:06d}.png", nrow=4)
                if evaluator is not None:  # IS/FID of the derived architecture, not of the supernet
                    stats["derived"] = evaluator(net, method.G.latent_dim, config.seed)
                    log(f"iteration {k}, derived architecture: " + ", ".join(
                        f"{name} {value:.4g}" for name, value in stats["derived"].items()))
            log_file.write(json.dumps(stats) + "\n")
            log_file.flush()
            if k % config.checkpoint_every == 0 or k == iters:
                checkpoint()
            bar.update(1)
    if method.done == start:
        checkpoint()
    result = genotype()
    log(f"genotype written to {outdir / 'genotype.json'}: {json.dumps(result.body)}")
    return result


def _truncate_log(path, iterations):
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iteration", 0) <= iterations:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(line + "\n" for line in kept))

