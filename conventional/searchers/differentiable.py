"""The two differentiable searches behind ``stylenas search-conventional --method alphagan|degas``
(``scripts/search_conventional.py``): ``alphagan`` (``searchers.alphagan``) and ``degas``
(``searchers.degas``), driven by one loop: a method's step, its alphas logged, sample grids and
metrics of the derived architecture, checkpoints.

Both write ``genotype.json`` (retrainable as is by ``train-conventional``), ``log.jsonl``,
``alphas.png``, ``samples/iter*.png`` (of the derived discrete architecture, with the weights
it inherits from the supernet and fresh BatchNorm statistics; ``--metrics is,fid`` scores
the same network) and ``search-state.pt`` (networks, alphas, optimisers, latent
codes, stream positions, RNG: ``--resume`` continues exactly).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import torch

from ...io import atomic_path
from ...plots import save_line_panels
from ...search.alphagan import PRESETS as ALPHAGAN_PRESETS
from ...search.run import split_halves
from ...train.checkpoint import capture_rng, restore_rng
from ...runs import ProgressLine, StopSignals
from ...train.runlog import save_image_grid
from ..networks import build_generator
from ..ops import DEGAS_NORMAL_OPS, DEGAS_UP_OPS
from ..train import MetricEvaluator, TrainError
from .alphagan import PRESET_NAMES as ALPHAGAN_PRESET_NAMES
from .alphagan import AlphaGANMethod
from ..sources import write_run_config
from .common import STATE_FILE, SearchError, open_state, search_images
from .degas import DEGAS_PRESETS, DegasMethod

METHODS = ("alphagan", "degas")
PLOT_SECONDS = 30  # alphas.png is redrawn at most this often during a search


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
    options: dict | None = None  # the method's own options (alphagan: n_critic, betas, batches)

    STRUCTURAL = ("method", "preset", "resolution", "seed", "images", "options")


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
        raise SearchError(f"--method must be one of {', '.join(METHODS)} (autogan, agan and dggan have searchers "
                          f"of their own), got {config.method!r}")
    from ...devices import resolve_device

    try:
        device = resolve_device(config.device)
    except ValueError as error:
        raise SearchError(str(error)) from None
    dataset, resolution = search_images(config, dataset, "the conventional search spaces need a multiple of 8 "
                                                         "(32 for CIFAR-10, 48 for STL-10)")
    preset = config.preset or ("s" if config.method == "alphagan" else ("cifar" if resolution == 32 else "stl"))
    halves = split_halves(len(dataset), config.seed)
    presets = ALPHAGAN_PRESET_NAMES if config.method == "alphagan" else tuple(DEGAS_PRESETS)
    if preset not in presets:
        raise SearchError(f"--preset for {config.method} must be {', '.join(presets[:-1])} or {presets[-1]}, "
                          f"got {preset!r}")
    cls = AlphaGANMethod if config.method == "alphagan" else DegasMethod
    batch = (ALPHAGAN_PRESETS if config.method == "alphagan" else DEGAS_PRESETS)[preset].batch
    if len(halves[0]) < batch:
        raise SearchError(f"{config.data}: {len(dataset)} images are too few for two halves of at least {batch} "
                          f"images (the batch size) each")
    method = cls(preset, resolution, halves, dataset, config.seed, device,
                 **({"options": config.options} if config.options else {}))
    iters = config.iters if config.iters is not None else method.iterations
    sample_every = 10 if config.sample_every is None else config.sample_every
    settings = {**asdict(config), "preset": preset, "resolution": resolution, "images": len(dataset),
                "options": getattr(method, "options", config.options)}
    outdir, state_path = Path(config.outdir), Path(config.outdir) / STATE_FILE
    history = []
    state = open_state(outdir, config.resume, settings, SearchConfig.STRUCTURAL, map_location=device)
    if state is not None:
        method.load_state_dict(state["method"])
        history = state["history"]
        restore_rng(state["rng"])
        _truncate_log(outdir / "log.jsonl", method.done)
        log(f"resumed {outdir} at iteration {method.done}")
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
    if hasattr(method, "config_values"):  # DIR/config.json: every resolved setting with its source
        values = {**method.config_values(), "iterations": iters, "resolution": resolution, "images": len(dataset),
                  "seed": config.seed, "metrics": list(config.metrics), "metric_num": config.metric_num,
                  "fid_stats": config.fid_stats, "inception": config.inception, "data": str(config.data),
                  "outdir": str(outdir), "device": config.device, "resume": config.resume,
                  "sample_every": sample_every, "checkpoint_every": config.checkpoint_every}
        given = {"iterations": "--iters"} if config.iters is not None else {}
        given.update({k: f"--{k.replace('_', '-')}" for k, v in (config.options or {}).items() if v is not None})
        write_run_config(outdir, values, method.sources, preset=preset, from_command_line=given)
    source = {"method": config.method, "data": str(config.data), "settings": settings}
    sample_z = torch.randn(16, method.G.latent_dim, generator=torch.Generator().manual_seed(config.seed + 1)).to(device)

    def genotype():
        return method.G.genotype(source={**source, "iterations": method.done})

    plotted = [-math.inf]  # when alphas.png was last drawn

    def checkpoint(final=False):
        with atomic_path(state_path) as tmp:
            torch.save({"settings": settings, "method": method.state_dict(), "history": history,
                        "rng": capture_rng()}, tmp)
        genotype().save(outdir / "genotype.json")
        # drawing takes seconds: on a fast search (tiny presets, DEGAS's epochs) at most every
        # PLOT_SECONDS, always at the end and when stopped
        if history and (final or time.monotonic() - plotted[0] >= PLOT_SECONDS):
            plot_alphas(history, outdir / "alphas.png", config.method)
            plotted[0] = time.monotonic()

    log(f"searching {config.method} at {resolution}px on {device}: {iters} iterations; {method.describe}; "
        f"{len(halves[0])} training / {len(halves[1])} validation images")
    start = method.done
    # a fresh run starts its own log (one left by a run killed before its first checkpoint is not its)
    with open(outdir / "log.jsonl", "a" if config.resume else "w") as log_file, StopSignals(log) as stop, \
            ProgressLine(iters, f"{config.method} search", unit="iterations", start=start) as bar:
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
            stopping = stop.requested() and k < iters  # SIGINT/SIGTERM: checkpoint, then exit
            if k % config.checkpoint_every == 0 or k == iters or stopping:
                checkpoint(final=k == iters or stopping)
            bar.update(1)
            if stopping:
                stop.interrupt(state_path)
    if method.done == start:
        checkpoint(final=True)
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
