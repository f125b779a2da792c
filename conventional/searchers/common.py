"""What the searchers share: their one-line error, the state file a ``--resume`` reads back, the
start of the searches that score architectures by samples, and seeded streams of real batches."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ...config_sources import Entry, choice
from ...runs import resuming
from ...train.distributed import init_distributed
from .. import rewards as R
from ..sources import OPERATIONAL
from ..train import open_images

# The run settings every search of search-conventional but DGGAN records in its config.json, and where
# they come from: the same rows in each method's table.
SEARCH_RUN_SOURCES = {
    "resolution": Entry(choice("the largest size stored in --data, or --resolution")),
    "seed": Entry(choice("--seed, default 0")),
    "images": Entry(choice("the number of images in --data")),
    "data": Entry(choice("--data")),
    "outdir": Entry(OPERATIONAL),
    "device": Entry(OPERATIONAL),
    "resume": Entry(OPERATIONAL),
}
# ... and those of the differentiable searches (alphaGAN, DEGAS)
DIFFERENTIABLE_RUN_SOURCES = {
    **SEARCH_RUN_SOURCES,
    "metrics": Entry(choice("--metrics: IS / FID of the derived architecture at every sample grid")),
    "metric_num": Entry(choice("--metric-num samples per metric (5000 by default, a search-time estimate)")),
    "fid_stats": Entry(choice("--fid-stats: the training set's statistics for --metrics fid")),
    "inception": Entry(choice("--inception: the FID Inception weights file")),
    "sample_every": Entry(OPERATIONAL),
    "checkpoint_every": Entry(OPERATIONAL),
}

STATE_FILE = "search-state.pt"


class SearchError(RuntimeError):
    """A search that cannot start: bad option, data or state file."""


def open_state(outdir, resume, settings, keys, map_location="cpu"):
    """With ``resume``, the search state saved in ``outdir``, whose settings must equal ``settings``
    on ``keys``; without, None, after checking that ``outdir`` holds no search to overwrite."""
    outdir = Path(outdir)
    state_path = outdir / STATE_FILE
    if not resume:
        if state_path.exists():
            raise SearchError(f"{outdir} already holds a search ({STATE_FILE}); use --resume or another --outdir")
        return None
    if not state_path.is_file():
        raise SearchError(f"--resume: no {STATE_FILE} in {outdir} to resume from")
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise SearchError(f"{state_path}: not a readable search state ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
        raise SearchError(f"--resume: {state_path}: not a state written by `stylenas search-conventional` "
                          f"(start again without --resume, or in another --outdir)")
    mismatched = [k for k in keys if state["settings"].get(k) != settings.get(k)]
    if mismatched:
        raise SearchError(f"--resume: {state_path} was written with other settings: " + ", ".join(
            f"{k}={state['settings'].get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
    return state


@dataclass
class ScoredSearchConfig:
    """The options of a search that scores architectures by their samples (autogan, agan)."""
    data: str
    outdir: str
    preset: str = "paper"
    iters: int | None = None  # the search's length in its own unit (the preset's by default)
    reward: str = "is"  # is | fid (autogan)
    proxy: bool = False  # score with ProxyInception (CPU tests, demo): logged as proxy_is / proxy_fid
    inception: str | None = None
    resolution: int | None = None
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    overrides: dict | None = None  # preset fields replaced (tests, bench)


def resume_after_restart(config):
    """``config`` with ``resume`` set when torchrun restarted the group after a process failed
    (``--max-restarts``) and the search had written its state: the new workers, started with the
    first command line, continue from the last state as if ``--resume`` had been given."""
    return replace(config, resume=resuming(config.resume, Path(config.outdir) / STATE_FILE))


def search_images(config, dataset, why_multiple_of_8):
    """``(dataset, resolution)``: ``dataset`` (uint8 [3, R, R] items), else the LMDB ``config.data``
    at ``config.resolution``; R must be a multiple of 8 (``why_multiple_of_8`` ends the error)."""
    if dataset is None:
        dataset = open_images(config.data, config.resolution, SearchError)
    resolution = int(dataset[0].shape[-1])
    if resolution % 8:
        raise SearchError(f"{config.data}: {resolution}px images; {why_multiple_of_8}")
    return dataset, resolution


def start_scored_search(config, dataset, net, why_multiple_of_8):
    """The processes, images and reward network of a search that scores architectures by their
    samples (autogan, agan): ``(dist, dataset, resolution, net)``. ``dataset`` (uint8 [3, R, R]
    items) replaces the LMDB of ``config.data``, ``net`` the reward network of ``config.proxy``."""
    try:
        dist = init_distributed(config.device)
    except ValueError as error:
        raise SearchError(str(error)) from None
    dataset, resolution = search_images(config, dataset, why_multiple_of_8)
    if net is None:
        try:
            net = R.reward_network("proxy" if config.proxy else "inception", config.inception, dist.device,
                                   config.seed)
        except FileNotFoundError as error:
            raise SearchError(f"{error} (or search with --proxy for a labelled proxy reward)") from None
    return dist, dataset, resolution, net


def entropy(weights):
    """Mean entropy (nats) of the rows of softmax weights; log(number of ops) when uniform (the
    alphas' log of the differentiable searches)."""
    p = torch.as_tensor(weights)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


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
