"""The StyleGAN2 architecture search run behind ``scripts/search_stylegan2.py``: data split,
supernet and fixed residual discriminator, the alphaGAN loop, logs, pictures, checkpoints
and exact resume, and the genotype at the end.

Output folder: ``genotype.json`` (the derived architecture, rewritten at every checkpoint),
``config.json`` (every setting as resolved, with its source: ``search/sources.py``),
``log.jsonl`` (one line per iteration: losses, duality gap, skipped non-finite steps, the
softmax weights and entropy of every alpha/beta), ``alphas.png`` (softmax weights of every
layer over the search), ``losses.png`` (G and D losses and the duality gap per iteration, raw and
smoothed), ``samples/*.png`` and ``search-state.pt`` (everything ``--resume``
needs). Real batches come through ``stylenas.datasets.TrainingLoader`` (worker processes,
pinned memory, prefetch) from a sampler whose batch k is a function of (seed, half, k), so a
resumed run reads the same batches. ``--resume`` recognises the data by content (count,
resolution, a hash of a few decoded records), so a moved LMDB resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import torch
import torchvision

from ..config_sources import write_config
from ..nn.layers import NORMAL_OPS, UP_OPS
from ..nn.networks import TORGB_W, Discriminator, check_resolution
from ..devices import resolve_device
from ..io import save_torch
from ..runs import ProgressLine, RunFolder, StopSignals, resuming
from ..plots import plot_series, save_image_atomic, save_line_panels
from .alphagan import PRESETS, AlphaGANSearcher, NonFiniteError
from .genotype import space_size
from .sources import search_record
from .supernet import SPACES, SuperGenerator

STATE_FILE = "search-state.pt"
PREVIOUS_STATE = "search-state-previous.pt"  # the state before the last checkpoint: a fallback if that one is damaged
STATE_KEYS = {"settings", "searcher", "train_step", "val_step", "history", "rng_cpu"}
LOSSES_PLOTTED = ("g_loss", "d_loss", "duality_gap")  # log.jsonl keys drawn in losses.png
STYLEGAN2_PRESETS = ("stylegan2", "tiny")  # PRESETS' s and l are the CIFAR-10 settings (conventional search)
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
    checkpoint_every: int = 10  # 0: only at the end
    workers: int = 2  # data loader processes per half
    max_nonfinite: int = 25  # skipped non-finite steps in a row before the search stops

    # fields that must agree between a run and its --resume ("dataset": its content fingerprint)
    STRUCTURAL = ("space", "dynamic_w", "torgb_w", "resolution", "preset", "batch", "channel_mult", "loss", "seed",
                  "dataset")


class HalfSampler(torch.utils.data.Sampler):
    """Endless indices of one half of the data, batch after batch: batch k draws `batch`
    indices from a generator seeded by (seed, stream, k), starting at batch `start`, so any
    position can be regenerated and a resumed run reads the same batches."""

    def __init__(self, indices, batch, seed, stream, start=0):
        self.indices, self.batch, self.seed, self.stream, self.start = indices, batch, seed, stream, start

    def __iter__(self):
        k = self.start
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stream * 7_919 + k)
            yield from self.indices[torch.randint(len(self.indices), (self.batch,), generator=gen)].tolist()
            k += 1


class BatchStream:
    """Real batches of one half, float [B, 3, R, R] in [-1, 1] on `device`, through a
    TrainingLoader (no flips: the search sees the images as stored); ``step`` counts the
    batches taken, the position a resume restarts from."""

    def __init__(self, dataset, indices, batch, seed, stream, device, step=0, workers=0):
        from ..datasets import TrainingLoader

        self.step, self.started = step, False
        self.loader = TrainingLoader(dataset, batch, device, num_workers=workers, flip=False,
                                     sampler=HalfSampler(indices, batch, seed, stream, start=step))

    def __iter__(self):
        return self

    def __next__(self):
        if not self.started:
            # Starting a DataLoader draws its workers' seed from the global RNG: keep that
            # draw out of the search's random stream, or a resumed run would diverge.
            with torch.random.fork_rng(devices=[]):
                images = next(self.loader)
            self.started = True
        else:
            images = next(self.loader)
        self.step += 1
        return images


def dataset_fingerprint(dataset, records=8):
    """What --resume compares: image count, resolution and a hash of a few decoded records
    spread over the data (not the path, so a moved or copied LMDB still resumes)."""
    n = len(dataset)
    picks = sorted({round(i * (n - 1) / (records - 1)) for i in range(records)})
    digest = hashlib.sha256()
    for index in picks:
        image = dataset[index]
        digest.update(str(tuple(image.shape)).encode() + image.contiguous().numpy().tobytes())
    return {"images": n, "resolution": int(dataset[0].shape[-1]), "sha256": digest.hexdigest()[:16]}


def split_halves(length, seed):
    """The paper's equal split into a training half (weights) and a validation half (alphas)."""
    perm = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
    half = length // 2
    return perm[:half], perm[half:2 * half]


def open_images(path, resolution):
    from ..datasets import LMDBImages

    return LMDBImages(path, resolution=resolution)


def arch_snapshot(generator):
    """{arch key: softmax weights} and {arch key: entropy} of the supernet, in one read."""
    arch = generator.synthesis.arch
    weights = torch.cat([torch.softmax(v.detach().float(), dim=0) for v in arch.values()]).cpu()
    softmax, entropy, offset = {}, {}, 0
    for key, value in arch.items():
        p = weights[offset:offset + value.numel()]
        offset += value.numel()
        softmax[key] = [round(v, 6) for v in p.tolist()]
        entropy[key] = float(-(p * p.clamp_min(1e-12).log()).sum())
    return softmax, entropy


def check_finite(searcher, what):
    """Refuse to write a checkpoint or genotype from non-finite parameters."""
    for name, params in (("architecture parameters", searcher.G.arch_parameters()),
                         ("generator weights", searcher.G.weight_parameters()),
                         ("discriminator weights", list(searcher.D.parameters()))):
        if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise NonFiniteError(f"the {name} are not finite after iteration {searcher.iterations_done}; "
                                 f"{what} not written (the last one on disk is kept)")


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
    return save_line_panels(panels, path)


def load_state(state_path, device):
    """The dict of a ``search-state.pt``, or one SearchError naming the file, what is wrong with it,
    and the earlier state to fall back to (``search-state-previous.pt``) when there is one."""
    previous = state_path.with_name(PREVIOUS_STATE)
    hint = (f"; the previous state {previous} can be used instead (copy it to {state_path}, then --resume)"
            if previous.is_file() else "; no earlier state is kept: start again without --resume")
    if not state_path.is_file():
        raise SearchError(f"--resume: no {STATE_FILE} in {state_path.parent} to resume from{hint}")
    try:
        state = torch.load(state_path, map_location=device, weights_only=True)
    except OSError:
        raise  # unreadable file: the command names it
    except Exception as error:  # truncated zip, not a torch file, pickled objects refused by weights_only
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise SearchError(f"--resume: {state_path}: damaged or not a search state ({reason}){hint}") from None
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        kind = f"a dict with {sorted(state)[:6]}" if isinstance(state, dict) else type(state).__name__
        raise SearchError(f"--resume: {state_path}: not a state written by `stylenas search` ({kind}){hint}")
    return state


def run_search(config: SearchConfig, dataset=None, log=lambda line: click.echo(line, err=True)):
    """Run (or resume) a search; returns the derived Genotype. `dataset` (items uint8
    [3, R, R]) replaces the LMDB named by ``config.data``. The output folder is locked for the
    whole run; SIGINT/SIGTERM checkpoint and raise ``stylenas.runs.Interrupted``."""
    folder = RunFolder(config.outdir, log=log)
    try:
        return _run_search(config, dataset, log, folder)
    finally:
        folder.release()


def _run_search(config, dataset, log, folder):
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:  # each process would run the whole search into the same folder
        raise SearchError(f"the StyleGAN2 search runs in one process (alphaGAN searches on one GPU), but torchrun "
                          f"started {processes}: run it with python, or torchrun --nproc_per_node 1")
    if config.preset not in STYLEGAN2_PRESETS:
        raise SearchError(f"--preset must be one of {', '.join(STYLEGAN2_PRESETS)} for the StyleGAN2 search, got "
                          f"{config.preset!r} (s and l are alphaGAN's CIFAR-10 settings: search_conventional.py)")
    if config.space not in SPACES:
        raise SearchError(f"--space must be one of {', '.join(SPACES)}, got {config.space!r}")
    if config.torgb_w not in TORGB_W:
        raise SearchError(f"--torgb-w must be one of {', '.join(TORGB_W)}, got {config.torgb_w!r}")
    for option, value, low in (("--checkpoint-every", config.checkpoint_every, 0),
                               ("--sample-every", config.sample_every, 0), ("--workers", config.workers, 0),
                               ("--max-nonfinite", config.max_nonfinite, 1), ("--iters", config.iters, 0),
                               ("--batch", config.batch, 1)):
        if value is not None and value < low:
            raise SearchError(f"{option} must be at least {low}, got {value}")
    preset = PRESETS[config.preset]
    batch = config.batch or preset.batch
    iters = config.iters if config.iters is not None else preset.iterations
    channel_mult = config.channel_mult if config.channel_mult is not None else preset.channel_mult
    loss = config.loss or preset.loss
    if not 0 < channel_mult < float("inf"):
        raise SearchError(f"--channel-mult must be a positive number, got {channel_mult}")
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
    if len(dataset) == 0:
        raise SearchError(f"{config.data}: holds no images")
    fingerprint = dataset_fingerprint(dataset)
    resolution = fingerprint["resolution"]
    try:
        check_resolution(resolution)
    except ValueError as error:
        raise SearchError(f"{config.data}: images of {resolution}px: {error}") from None
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
                                replace(preset, batch=batch, loss=loss), max_nonfinite=config.max_nonfinite)
    sample_z = torch.randn(16, z_dim, generator=torch.Generator().manual_seed(config.seed + 1)).to(device)
    settings = {**asdict(config), "resolution": resolution, "batch": batch, "channel_mult": channel_mult,
                "loss": loss, "dataset": fingerprint}
    positions, history = (0, 0), []

    folder.acquire()  # every option is checked: from here on this run owns the folder
    config = replace(config, resume=resuming(config.resume, state_path))
    if config.resume:
        state = load_state(state_path, device)
        saved = {"torgb_w": "free", **state["settings"]}  # states from before the option were untied
        mismatched = [k for k in SearchConfig.STRUCTURAL if saved.get(k) != settings.get(k)]
        if "dataset" in mismatched:
            was, now = saved.get("dataset") or {}, fingerprint
            raise SearchError(f"--resume: {state_path} was searched on other data ({was.get('images')} images of "
                              f"{was.get('resolution')}px, records hash {was.get('sha256')}); {config.data} holds "
                              f"{now['images']} images of {now['resolution']}px, records hash {now['sha256']}")
        if mismatched:
            raise SearchError(f"--resume: {state_path} was written with different settings: " + ", ".join(
                f"{k}={saved.get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
        searcher.load_state_dict(state["searcher"])
        positions, history = (state["train_step"], state["val_step"]), state["history"]
        torch.set_rng_state(state["rng_cpu"].cpu())
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
        _truncate_log(outdir / "log.jsonl", searcher.iterations_done)
        log(f"resumed {outdir} at iteration {searcher.iterations_done}")
    elif state_path.exists():
        raise SearchError(f"{outdir} already holds a search ({STATE_FILE}); use --resume or another --outdir")
    train = BatchStream(dataset, train_idx, batch, config.seed, 0, device, positions[0], config.workers)
    val = BatchStream(dataset, val_idx, batch, config.seed, 1, device, positions[1], config.workers)

    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "samples").mkdir(exist_ok=True)
    write_config(outdir / "config.json", search_record(config, searcher.preset, iters, network, channels, fingerprint))
    source = {"data": str(config.data), "outdir": str(outdir), "preset": config.preset, "settings": settings}

    def checkpoint():
        check_finite(searcher, f"{state_path} and {outdir / 'genotype.json'}")
        # the state being replaced becomes search-state-previous.pt once the new one is complete (a
        # hard link until then, so a failed write, e.g. a full disk, leaves search-state.pt as it was)
        staged = state_path.with_name(f".{PREVIOUS_STATE}.link.tmp")
        staged.unlink(missing_ok=True)
        if state_path.is_file():
            try:
                os.link(state_path, staged)
            except OSError:  # a filesystem without hard links: no previous state is kept
                pass
        save_torch({
            "settings": settings, "searcher": searcher.state_dict(), "train_step": train.step,
            "val_step": val.step, "history": history, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }, state_path)
        if staged.exists():
            os.replace(staged, state_path.with_name(PREVIOUS_STATE))
        G.genotype(channels, source={**source, "iterations": searcher.iterations_done}).save(
            outdir / "genotype.json")
        if history:
            plot_alphas(history, outdir / "alphas.png")
            records = [json.loads(line) for line in (outdir / "log.jsonl").read_text().splitlines() if line.strip()]
            plot_series(records, LOSSES_PLOTTED, outdir / "losses.png", x_key="iteration")

    paradigm = config.space + ("+dynamic_w" if config.dynamic_w else "")
    size = space_size(resolution, paradigm, config.torgb_w)
    log(f"search space {paradigm}{f' (toRGB latents {config.torgb_w})' if config.dynamic_w else ''} at "
        f"{resolution}px: {size} architectures (~{size:.2g})")
    log(f"searching {config.space}{' + dynamic W' if config.dynamic_w else ''} at {resolution}px on {device}: "
        f"{iters} iterations of T={preset.T}, R={preset.R}, S={preset.S}, batch {batch}, {loss} loss, "
        f"{len(train_idx)} training / {len(val_idx)} validation images")
    start = searcher.iterations_done
    # a fresh run starts its own log (one left by a run killed before its first checkpoint is not its)
    with open(outdir / "log.jsonl", "a" if config.resume else "w") as log_file, StopSignals(log) as stop, \
            ProgressLine(iters, "alphaGAN search", unit="iterations", start=start) as bar:
        for _ in range(start, iters):
            tic = time.perf_counter()
            G.train(), D.train()
            stats = searcher.iteration(train, val)
            weights, entropy = arch_snapshot(G)
            stats["seconds"] = time.perf_counter() - tic
            stats["entropy"] = entropy
            stats["arch_weights"] = weights  # softmax of every alpha and beta
            history.append(weights)
            log_file.write(json.dumps(stats) + "\n")
            log_file.flush()
            k = searcher.iterations_done
            if config.sample_every and (k % config.sample_every == 0 or k == iters):
                save_samples(G, sample_z, outdir / "samples" / f"iter{k:06d}.png")
            stopping = stop.requested() and k < iters  # SIGINT/SIGTERM: checkpoint, then exit
            if (config.checkpoint_every and k % config.checkpoint_every == 0) or k == iters or stopping:
                checkpoint()
            gap = stats["duality_gap"]
            bar.update(1, "gap " + (f"{gap:+.4f}" if gap is not None else "skipped"))
            if stopping:
                stop.interrupt(state_path)
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
