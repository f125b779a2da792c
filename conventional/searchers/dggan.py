"""DGGAN: dynamically grown GANs (Liu, Zhang, Deng and Soatto, AAAI 2021), the top-K greedy search.

G and D start as ProgGAN networks at d0 = 8 px (latent 128 for CIFAR-10, 512 otherwise; WGAN-GP)
and grow by actions (grow G or D by one convolution, or double the resolution of both), a child
inheriting its parent's weights: ``conventional.spaces.dggan_grown``.

Algorithm 1 (section "Search Algorithm"), one step (``DGGANSearch.run_step``): each (parent,
action) pair becomes a child with probability p (draw), children are trained for ``child_iters``
iterations (train), scored by FID against the training statistics at their resolution (score; one
reference, many candidates: ``frechet_distance_batched``) and the top K become the parents
(select). The search stops at the final resolution and the maximum number of grown layers, and the
best candidate at the final resolution trains ``final_iters`` more. Paper defaults: K = 20, p = 0.4,
100k iterations a child.

Children of a step are spread over the processes of a ``torchrun`` launch
(``conventional.spread``: job i seeded from (step seed, i)), so a search gives the same result on
any number of processes. Fig. 3 normalises FID by the ProgGAN baseline at each resolution: the
network that only ever doubled (no grown layers), trained along the same route; the search
trains it as one extra candidate per resolution (``baseline`` in the log), outside the top-K.
Training and scoring a candidate: ``dggan_candidates``; the state on disk, resume and baselines:
``dggan_run``; the CSV, Fig. 3 and the replays: ``dggan_reports``.

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

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ...config_sources import Entry, choice, code, paper
from ...io import atomic_path
from ...runs import resuming
from ...train.runlog import save_image_grid
from ..sources import OPERATIONAL, TINY, with_changes, write_run_config
from ..train import RETRAIN_SOURCES as TRAIN_SOURCES
from ..spaces.dggan_grown import (BASE_NETS, D0, DEFAULT_BASE_NET, FILTERS, KERNELS, action_space, allowed,
                                  build_grown, proggan_channels)
from ..spread import job_seed, seeded
from .dggan_candidates import FIDScorer, train_candidate
from .dggan_run import STATE_FILE, DGGANRun

# the paper's K and p ("Discussion on Efficiency": K = 20, p = 0.4) and iterations a candidate trains
# ("Implementation Details": 100k)
TOP_K = 20
SAMPLE_P = 0.4
CHILD_ITERS = 100_000


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
    batch: int = 16  # "the same training schedule as ProgGAN": batch 16, Adam 1e-3, betas (0, 0.99)
    lr: float = 1e-3
    betas: tuple = (0.0, 0.99)
    seed: int = 0
    rank_by: str = "fid_norm"  # RANKINGS: how children of different resolutions compete for the top K
    base_net: str = DEFAULT_BASE_NET  # BASE_NETS: whose ProgGAN the layers follow (dggan_grown.GAINS)

    # settings a --resume must agree with
    STRUCTURAL = ("final_resolution", "latent_dim", "channels", "top_k", "p", "kernels", "filters", "max_grown",
                  "child_iters", "fade_iters", "batch", "lr", "betas", "seed", "rank_by", "base_net")

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


SCORE_SAMPLES = {"paper": 10_000, "small": 5_000, "tiny": 16}  # samples a candidate's FID is measured on
REFERENCE_IMAGES = {"paper": None, "small": 10_000, "tiny": 64}  # training images of the statistics

SMALL = choice("small preset: a single GPU; the paper's own simulation (Fig. 3 right) reaches its FID at K = 8, "
               "p = 0.2")
PROGGAN = "tkarras/progressive_growing_of_gans"
# where every search setting comes from (DIR/config.json; docs/sources.md is rendered from it)
SOURCES = {
    "preset": Entry(paper("the CIFAR-10 search (section 'CIFAR-10', 'Implementation Details')"),
                    {"small": SMALL, "tiny": TINY}),
    "final_resolution": Entry(paper("'We gradually increase the resolution from d0 = 8 to 32' (CIFAR-10); the "
                                    "data's size")),
    "latent_dim": Entry(paper("'CIFAR-10 takes random vectors with size 128 and others ... 512'"), {"tiny": TINY}),
    "channels": Entry(choice("ProgGAN's nf() with fmap_base 16384, fmap_max 512 (512 up to 32 px, halving "
                             "above): the paper builds on ProgGAN and gives no widths"), {"small": SMALL, "tiny": TINY}),
    "top_k": Entry(paper("'Discussion on Efficiency': K = 20"), {"small": SMALL, "tiny": TINY}),
    "p": Entry(paper("'Discussion on Efficiency': p = 0.4"), {"small": SMALL, "tiny": TINY}),
    "kernels": Entry(paper("'Action Search Space': filter sizes {3, 7}"), {"tiny": TINY}),
    "filters": Entry(paper("'Action Search Space': {32, 64, 128, 256, 512, 1024} filters"),
                     {"small": SMALL, "tiny": TINY}),
    "max_grown": Entry(choice("3 grown convolutions per network and resolution: the paper's 'maximum number of "
                              "layers' has no value"), {"small": SMALL, "tiny": TINY}),
    "max_steps": Entry(choice("no limit: Algorithm 1 runs until nothing can grow (--max-steps cuts it)")),
    "child_iters": Entry(paper("'Implementation Details': 100k iterations a candidate after weight inheritance"),
                         {"small": SMALL, "tiny": TINY}),
    "fade_iters": Entry(choice("the first half of a doubled child's iterations (ProgGAN fades over a phase of "
                               "its own; the paper gives no length)")),
    "final_iters": Entry(paper("'we further train the fixed architecture longer': 100k more here (no value "
                               "given)"), {"small": SMALL, "tiny": TINY}),
    "batch": Entry(code(f"{PROGGAN}: minibatch 16 at the low resolutions ('We follow the same training schedule "
                        "as ProgGAN')"), {"tiny": TINY}),
    "lr": Entry(code(f"{PROGGAN} config.py: G and D Adam learning rate 0.001")),
    "betas": Entry(code(f"{PROGGAN} config.py: Adam beta1 0.0, beta2 0.99")),
    "seed": Entry(choice("--seed, default 0: draws, initial weights and batches")),
    "base_net": Entry(paper("'Experimental Results' and footnote 1: the paper's ProgGAN is 'the most popular "
                            "PyTorch implementation (Git 2019)', facebookresearch/pytorch_GAN_zoo (custom_layers.py "
                            "getLayerNormalizationFactor: He's sqrt(2 / fan_in) in every layer; "
                            "mini_batch_stddev_module.py); --base-net proggan: tkarras' gains and minibatch stddev")),
    "rank_by": Entry(paper("FID normalised by the per-scale ProgGAN baseline (section 'Analysis', Fig. 3): FID "
                           "'at each resolution is not comparable'"),
                     deviation="Algorithm 1 says only 'keep top-K candidates'; ranking raw FIDs keeps every "
                               "doubled child out while lower-resolution children remain",
                     restore="--rank-by fid"),
    "scorer": Entry(paper("FID 'as the feedback criterion' (section 'Datasets and Evaluation Metrics'); "
                          "proxy_fid under --proxy, never called FID")),
    "scorer_samples": Entry(choice("10k samples a candidate (the paper does not say; --fid-num)"),
                            {"small": SMALL, "tiny": TINY}),
    "scorer_reference_images": Entry(choice("every training image, average-pooled to the candidate's resolution"),
                                     {"small": SMALL, "tiny": TINY}),
    "inception_sha256": Entry(choice("the digest of the scorer's weights; a --resume refuses other weights")),
    "images": Entry(choice("the number of images in --data")),
    "data": Entry(choice("--data")),
    "outdir": Entry(OPERATIONAL),
    "device": Entry(OPERATIONAL),
    "resume": Entry(OPERATIONAL),
}
# retraining a grown genotype: the common recipe under ProgGAN's WGAN-GP loss
RETRAIN_SOURCES = with_changes(
    TRAIN_SOURCES,
    loss=Entry(paper("'Dynamic Growing Overview': the Wasserstein loss with gradient penalty")),
    latent_dim=Entry(paper("the genotype's own latent size (128 for CIFAR-10, 512 otherwise)")),
    gf_dim=Entry(choice("unused: a grown G has the genotype's widths")),
    df_dim=Entry(choice("unused: a grown D has the genotype's widths")),
)


# How the top K are chosen among children of different resolutions. FID is not comparable across
# resolutions (the paper: "FID at each resolution is not comparable"; a child at 8 px has a far lower
# FID than one at 16 px), so ranking raw FIDs would keep every doubled child out of the top K while
# lower-resolution children remain, and every route would fill each resolution before doubling;
# the paper lets the search decide when to double ("Ours automatically searches how and what to
# grow"). Its own cross-resolution measure is the "FID normalized by the per-scale ProgGAN baseline"
# (section "Analysis", Fig. 3), which the search computes for every child: ranking by it is the
# default. "fid" ranks the raw FID (the former behaviour).
RANKINGS = ("fid_norm", "fid")


def rank_score(record, rank_by):
    """The value the top K minimises: the normalised FID (infinite without a baseline score) or the FID."""
    value = record.get(rank_by)
    return math.inf if value is None else value


class DGGANSearch(DGGANRun):
    """Algorithm 1 over the run state of ``DGGANRun`` (same arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.actions = action_space(self.config.kernels, self.config.filters)

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

    def run_step(self, step):
        """One step of Algorithm 1: draw the children (step 0: the ProgGAN base at d0), train and
        score them, keep the top K as the next parents."""
        if step == 0:
            jobs = [self.new_candidate(0, None, None, baseline=True)]
            self.state["baselines"]["8"] = 0
        else:
            jobs = [self.new_candidate(step, pid, action) for pid, action in self.sample_children(step)]
            self.add_baselines(step, jobs)
        self.log(f"step {step}: training {len(jobs)} candidates "
                 f"({', '.join(sorted({str(j['resolution']) + 'px' for j in jobs}))})")
        self.record_scores(jobs, self.evaluate_jobs(jobs, step))
        # top-K of the sampled children (a ProgGAN baseline added beside them is not one of them)
        ranked = sorted((j for j in jobs if j["sampled"]),
                        key=lambda j: (rank_score(j, self.config.rank_by), j["id"]))
        self.state["parents"] = [j["id"] for j in ranked[:self.config.top_k]]
        self.close_step(step, jobs)

    def stop_reason(self):
        c = self.config
        if c.max_steps is not None and self.state["step"] >= c.max_steps:
            return f"the budget of {c.max_steps} growing steps"
        if not any(allowed(self.candidate(pid)["genotype"], a, c.final_resolution, c.max_grown)
                   for pid in self.state["parents"] for a in self.actions):
            return f"the final resolution {c.final_resolution}px and {c.max_grown} grown layers per network"
        return None

    def run(self, stop_after=None, stop=None):
        """Run (or continue) the search and the final training; returns the final record. ``stop``
        (a ``stylenas.runs.StopSignals``): after SIGINT/SIGTERM the search ends after the current
        child (``DGGANRun.check_stop``)."""
        self._stop_after, self.stop = stop_after, stop
        while True:
            self.check_stop()  # a signal during the scoring of the last child stops before the next step
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


def run_dggan(config: DGGANConfig, outdir, dataset, scorer, device="cpu", dist=None, log=print, resume=False,
              stop_after=None, source=None, stop=None):
    """Search (or resume) and train the best longer; returns the search object (its ``state``).
    ``stop``: a ``stylenas.runs.StopSignals`` (see ``DGGANSearch.run``)."""
    resolution = int(dataset[0].shape[-1])
    if config.final_resolution < D0 or config.final_resolution & (config.final_resolution - 1):
        raise ValueError(f"the final resolution must be a power of two from {D0} px, got {config.final_resolution}")
    if resolution < config.final_resolution or resolution % config.final_resolution:
        raise ValueError(f"the data is {resolution}px; DGGAN at {config.final_resolution}px needs images of that "
                         f"size (or a multiple)")
    if not 0 < config.p <= 1 or config.top_k < 1:
        raise ValueError(f"p must be in (0, 1] and K >= 1, got p={config.p}, K={config.top_k}")
    if config.rank_by not in RANKINGS:
        raise ValueError(f"rank_by must be one of {', '.join(RANKINGS)}, got {config.rank_by!r}")
    if config.base_net not in BASE_NETS:
        raise ValueError(f"base_net must be one of {', '.join(BASE_NETS)}, got {config.base_net!r}")
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
    search.run(stop_after=stop_after, stop=stop)
    return search


# ---------------------------------------------------------------------------- command line

def search_from_options(data, outdir, preset="paper", resolution=None, seed=0, device="auto", resume=False,
                        proxy=False, inception=None, overrides=None, fid_num=None, log=print, stop=None):
    """``search-conventional --method dggan``: the LMDB's images (``resolution``: which stored size)
    are the final resolution; ``overrides`` replace DGGANConfig fields of the preset (e.g.
    ``top_k``, ``p``, ``child_iters``, ``max_steps``, ``final_iters``, ``base_net``)."""
    from ...datasets import DatasetError, LMDBImages
    from ...train.distributed import init_distributed
    from ..rewards import reward_network

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
    try:
        config = DGGANConfig(final_resolution=size, seed=seed, **settings)
    except TypeError as error:
        raise ValueError(f"unknown DGGAN setting: {error}") from None
    # a rank that finished its children waits in the gather for the slowest: paper children train for hours
    dist = init_distributed(device, timeout_minutes=7 * 24 * 60)
    resume = resuming(resume, Path(outdir) / STATE_FILE)  # also after a torchrun restart
    net = reward_network("proxy" if proxy else "inception", weights=inception, device=dist.device)
    scorer = FIDScorer(net, num=fid_num or SCORE_SAMPLES[preset], ref_num=REFERENCE_IMAGES[preset])
    if dist.is_main:  # DIR/config.json: every resolved setting with its source
        given = {"top_k": "--top-k", "p": "--p", "child_iters": "--iters", "max_steps": "--max-steps",
                 "final_iters": "--final-iters", "max_grown": "--max-grown", "rank_by": "--rank-by",
                 "base_net": "--base-net"}
        values = {"preset": preset, **{k: (list(v) if isinstance(v, tuple) else v)
                                      for k, v in asdict(config.resolved()).items()},
                  "scorer": scorer.label, "scorer_samples": scorer.num, "scorer_reference_images": scorer.ref_num,
                  "inception_sha256": scorer.weights_sha256, "images": len(dataset), "data": str(data),
                  "outdir": str(outdir), "device": device, "resume": resume}
        from_command_line = {k: option for k, option in given.items() if k in (overrides or {})}
        if fid_num:
            from_command_line["scorer_samples"] = "--fid-num"
        write_run_config(outdir, values, SOURCES, preset=preset, from_command_line=from_command_line)
    try:
        return run_dggan(config, outdir, dataset, scorer, device=dist.device, dist=dist,
                         log=log if dist.is_main else (lambda line: None), resume=resume,
                         source={"data": str(data), "preset": preset}, stop=stop)
    finally:
        dist.close()
