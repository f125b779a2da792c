"""The StyleGAN2 architecture search run behind ``scripts/search_stylegan2.py``: data split,
supernet and fixed residual discriminator, the alphaGAN loop, logs, pictures, checkpoints
and exact resume, and the genotype at the end.

Output folder: ``genotype.json`` (the derived architecture, rewritten at every checkpoint),
``log.jsonl`` (one line per iteration: losses, duality gap, entropy of every alpha/beta),
``alphas.png`` (softmax weights of every layer over the search), ``samples/*.png`` and
``search-state.pt`` (everything ``--resume`` needs).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import torch
import torchvision

from ..nn.layers import NORMAL_OPS, UP_OPS
from ..nn.networks import TORGB_W, Discriminator, check_resolution
from ..devices import resolve_device
from ..io import atomic_path
from ..plots import save_image_atomic, save_line_panels
from .alphagan import PRESETS, AlphaGANSearcher, softmax_entropy
from .genotype import space_size
from .supernet import SPACES, SuperGenerator

STATE_FILE = "search-state.pt"
# Network sizes before channel_mult: StyleGAN2 config-f, and a tiny one for CPU tests/demo.
NETWORKS = {
    "stylegan2": {"z_dim": 512, "w_dim": 512, "channel_base": 32768, "channel_max": 512},
    "tiny": {"z_dim": 32, "w_dim": 32, "channel_base": 1024, "channel_max": 32},
}


def network_settings(preset_name, channel_mult):
    """(z/w sizes, channel settings) of the networks searched with a preset."""
    network = NETWORKS["tiny" if preset_name == "tiny" else "stylegan2"]
    channels = {"channel_base": network["channel_base"], "channel_max": network["channel_max"],
                "channel_mult": channel_mult}
    return network, channels


class SearchError(RuntimeError):
    """A search that cannot start: bad data, incompatible checkpoint, bad option."""


@dataclass
class SearchConfig:
    data: str
    outdir: str
    space: str = "micro"
    dynamic_w: bool = True
    torgb_w: str = "tied"  # tied: the paper's space (toRGB shares the next up conv's latent); free: own beta
    resolution: int | None = None
    preset: str = "stylegan2"
    iters: int | None = None
    batch: int | None = None
    channel_mult: float | None = None
    loss: str | None = None  # hinge (eq. 5, every preset's) or logistic (StyleGAN2's)
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    sample_every: int = 50
    checkpoint_every: int = 10

    # fields that must agree between a run and its --resume
    STRUCTURAL = ("space", "dynamic_w", "torgb_w", "resolution", "preset", "batch", "channel_mult", "loss", "seed", "data",
                  "images")


class BatchStream:
    """Real batches of one half of the data. Batch k draws its indices from a generator seeded
    by (seed, stream, k), so any position can be regenerated: resuming is exact."""

    def __init__(self, dataset, indices, batch, seed, stream, device, step=0):
        self.dataset, self.indices, self.batch = dataset, indices, batch
        self.seed, self.stream, self.device, self.step = seed, stream, device, step

    def __iter__(self):
        return self

    def __next__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stream * 7_919 + self.step)
        picks = self.indices[torch.randint(len(self.indices), (self.batch,), generator=gen)]
        images = torch.stack([self.dataset[int(i)] for i in picks])
        self.step += 1
        return images.to(self.device).float() / 127.5 - 1


def split_halves(length, seed):
    """The paper's equal split into a training half (weights) and a validation half (alphas)."""
    perm = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
    half = length // 2
    return perm[:half], perm[half:2 * half]


def open_images(path, resolution):
    from ..datasets import LMDBImages

    return LMDBImages(path, resolution=resolution)


def arch_snapshot(generator):
    """{arch key: softmax weights} of the supernet, as plain lists."""
    return {key: torch.softmax(value.detach().float().cpu(), dim=0).tolist()
            for key, value in generator.synthesis.arch.items()}


def plot_alphas(history, path):
    panels = []
    for key in history[0]:
        if key.startswith("alpha_"):
            labels = UP_OPS if key.endswith("up") or key.endswith("conv0") else NORMAL_OPS
            title = "all up layers" if key == "alpha_up" else (
                "all normal layers" if key == "alpha_normal" else key[len("alpha_"):].replace("_", ".") + " op")
        else:
            labels = [f"W{i + 1}" for i in range(len(history[0][key]))]
            title = key[len("beta_"):].replace("_", ".") + " latent"
        panels.append((title, {label: [step[key][i] for step in history] for i, label in enumerate(labels)}))
    save_line_panels(panels, path)


def run_search(config: SearchConfig, dataset=None, log=lambda line: click.echo(line, err=True)):
    """Run (or resume) a search; returns the derived Genotype. `dataset` (items uint8
    [3, R, R]) replaces the LMDB named by ``config.data``."""
    if config.preset not in PRESETS:
        raise SearchError(f"--preset must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    if config.space not in SPACES:
        raise SearchError(f"--space must be one of {', '.join(SPACES)}, got {config.space!r}")
    if config.torgb_w not in TORGB_W:
        raise SearchError(f"--torgb-w must be one of {', '.join(TORGB_W)}, got {config.torgb_w!r}")
    preset = PRESETS[config.preset]
    batch = config.batch or preset.batch
    iters = config.iters if config.iters is not None else preset.iterations
    channel_mult = config.channel_mult if config.channel_mult is not None else preset.channel_mult
    loss = config.loss or preset.loss
    network, channels = network_settings(config.preset, channel_mult)
    try:
        device = resolve_device(config.device)
    except ValueError as error:
        raise SearchError(str(error)) from None
    outdir = Path(config.outdir)
    state_path = outdir / STATE_FILE

    if config.resolution is not None:
        try:
            check_resolution(config.resolution)
        except ValueError as error:
            raise SearchError(f"--resolution: {error}") from None
    if dataset is None:
        dataset = open_images(config.data, config.resolution)
    resolution = config.resolution or int(dataset[0].shape[-1])
    check_resolution(resolution)
    train_idx, val_idx = split_halves(len(dataset), config.seed)
    if len(train_idx) < batch:
        raise SearchError(f"{config.data}: {len(dataset)} images are too few to split into training and "
                          f"validation halves of at least {batch} images (the batch size) each")

    torch.manual_seed(config.seed)
    G = SuperGenerator(resolution, z_dim=network["z_dim"], w_dim=network["w_dim"], space=config.space,
                       dynamic_w=config.dynamic_w, torgb_w=config.torgb_w, **channels).to(device)
    D = Discriminator(resolution, **channels).to(device)
    z_dim = network["z_dim"]
    searcher = AlphaGANSearcher(G, D, lambda n: torch.randn(n, z_dim, device=device),
                                replace(preset, batch=batch, loss=loss))
    sample_z = torch.randn(16, z_dim, generator=torch.Generator().manual_seed(config.seed + 1)).to(device)
    settings = {**asdict(config), "resolution": resolution, "batch": batch, "channel_mult": channel_mult,
                "loss": loss, "images": len(dataset)}  # a changed dataset would change the split
    train = BatchStream(dataset, train_idx, batch, config.seed, 0, device)
    val = BatchStream(dataset, val_idx, batch, config.seed, 1, device)
    history = []

    if config.resume:
        if not state_path.is_file():
            raise SearchError(f"--resume: no {STATE_FILE} in {outdir} to resume from")
        state = torch.load(state_path, map_location=device, weights_only=True)
        saved = {"torgb_w": "free", **state["settings"]}  # states from before the option were untied
        mismatched = [k for k in SearchConfig.STRUCTURAL if saved.get(k) != settings.get(k)]
        if mismatched:
            raise SearchError(f"--resume: {state_path} was written with different settings: " + ", ".join(
                f"{k}={saved.get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
        searcher.load_state_dict(state["searcher"])
        train.step, val.step = state["train_step"], state["val_step"]
        history = state["history"]
        torch.set_rng_state(state["rng_cpu"].cpu())
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
        _truncate_log(outdir / "log.jsonl", searcher.iterations_done)
        log(f"resumed {outdir} at iteration {searcher.iterations_done}")
    elif state_path.exists():
        raise SearchError(f"{outdir} already holds a search ({STATE_FILE}); use --resume or another --outdir")

    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "samples").mkdir(exist_ok=True)
    source = {"data": str(config.data), "outdir": str(outdir), "preset": config.preset, "settings": settings}

    def checkpoint():
        with atomic_path(state_path) as tmp:
            torch.save({
                "settings": settings, "searcher": searcher.state_dict(), "train_step": train.step,
                "val_step": val.step, "history": history, "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }, tmp)
        G.genotype(channels, source={**source, "iterations": searcher.iterations_done}).save(
            outdir / "genotype.json")
        if history:
            plot_alphas(history, outdir / "alphas.png")

    paradigm = config.space + ("+dynamic_w" if config.dynamic_w else "")
    size = space_size(resolution, paradigm, config.torgb_w)
    log(f"search space {paradigm}{f' (toRGB latents {config.torgb_w})' if config.dynamic_w else ''} at "
        f"{resolution}px: {size} architectures (~{size:.2g})")
    log(f"searching {config.space}{' + dynamic W' if config.dynamic_w else ''} at {resolution}px on {device}: "
        f"{iters} iterations of T={preset.T}, R={preset.R}, S={preset.S}, batch {batch}, {loss} loss, "
        f"{len(train_idx)} training / {len(val_idx)} validation images")
    start = searcher.iterations_done
    with open(outdir / "log.jsonl", "a") as log_file, click.progressbar(
            length=max(iters - start, 0), label="alphaGAN search", file=sys.stderr,
            item_show_func=lambda item: item) as bar:
        for _ in range(start, iters):
            tic = time.perf_counter()
            G.train(), D.train()
            stats = searcher.iteration(train, val)
            stats["seconds"] = time.perf_counter() - tic
            stats["entropy"] = {k: softmax_entropy(v) for k, v in G.synthesis.arch.items()}
            history.append(arch_snapshot(G))
            log_file.write(json.dumps(stats) + "\n")
            log_file.flush()
            k = searcher.iterations_done
            if config.sample_every and (k % config.sample_every == 0 or k == iters):
                save_samples(G, sample_z, outdir / "samples" / f"iter{k:06d}.png")
            if k % config.checkpoint_every == 0 or k == iters:
                checkpoint()
            bar.update(1, current_item=f"gap {stats['duality_gap']:+.4f}")
    if searcher.iterations_done == start:  # nothing ran (e.g. resumed at the end)
        checkpoint()
    genotype = G.genotype(channels, source={**source, "iterations": searcher.iterations_done})
    log(f"genotype ({genotype.paradigm}) written to {outdir / 'genotype.json'}:\n{genotype.summary()}")
    return genotype


@torch.no_grad()
def save_samples(generator, z, path):
    generator.eval()
    images = generator(z, noise_mode="const").clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    grid = torchvision.utils.make_grid(images, nrow=4, padding=1)
    save_image_atomic(torchvision.transforms.functional.to_pil_image(grid), path)
    generator.train()


def _truncate_log(path, iterations):
    """Drop log lines written after the checkpoint we resume from."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip()
            and json.loads(line).get("iteration", 0) <= iterations]
    path.write_text("".join(line + "\n" for line in kept))
