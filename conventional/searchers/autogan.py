"""AutoGAN (Gong et al., ICCV 2019): multi-level architecture search of the generator's cells by
REINFORCE over a weight-sharing GAN (section 3; the authors' search.py and functions.py checked
for the schedule).

Search space (section 3.1): AutoGAN's cells and 14-integer code, ``conventional.spaces.autogan_cells``
(the shared GAN ``SharedGenerator`` holds every option of every cell with its own weights).

Algorithm (one search iteration, section 3.3):
 1. at iterations ``grow_at`` (15 and 35 of 65) the stage grows: ``num_candidates`` (10)
    architectures of the current controller are scored, the top ``topk`` (5) prefixes and the
    LSTM states their sampling reached are kept, and a new controller for the next cell starts
    each sample from one of them (chosen uniformly);
 2. the shared GAN is trained (``shared_epochs`` 15 epochs, hinge loss, n_critic 5, Adam 2e-4
    (0, 0.9)) on architectures sampled per D step; G stops at cell ``stage`` + 1 (output 8, 16, 32
    px at CIFAR-10) and the discriminator grows with it (SNGAN blocks 1..stage+1, then block 4);
 3. dynamic reset: once the window of the last 500 G losses is full, a variance of the G or the D
    window below 1e-3 ends the shared training; after this iteration's controller phase G, D and
    their optimisers are re-initialised (the controller is kept);
 4. the controller takes ``ctrl_steps`` (30) REINFORCE steps (Adam 3.5e-4, betas (0, 0.9)) on the
    rewards of ``ctrl_batch`` sampled architectures: the Inception Score of ``reward_num`` (5000)
    samples, or minus the FID against the training statistics at the stage's resolution (the
    paper's FID variant; all candidates of a step against one reference through
    ``frechet_distance_batched``), plus the entropy bonus 1e-3 before the baseline, an EMA (0.9)
    restarted at every controller phase, as the authors' ``train_controller``
    (``controller.entropy_bonus``; ``baseline="persistent"`` keeps one EMA over the whole search).
After the last iteration ``num_candidates`` full architectures are scored and the best one is the
genotype. Departures from the public code, on purpose: BatchNorm statistics are recomputed for each
candidate before its reward (shared running statistics would score every architecture with the
others' statistics); per-sample policy-gradient weighting; adds are out of place. ``SOURCES`` says
where every setting comes from (``DIR/config.json``, docs/sources.md).

Processes: under ``torchrun`` rank 0 trains the shared GAN and the controller; the candidate
rewards of each controller step (and of the growth/final rankings) are spread over all ranks
(``spread.spread_jobs``), after the shared G is broadcast once per iteration. All randomness comes
from (seed, counter) streams, so the search is the same for any number of processes and a
``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F

from ...io import atomic_path
from ...train.runlog import Progress, RunLog, plot_series, save_image_grid
from .. import rewards as R
from ..controller import AUTOGAN_BETAS, AUTOGAN_ENTROPY, AUTOGAN_LR, BASELINE_DECAY, HIDDEN, AutoGANController, \
    EMABaseline, entropy_bonus, reinforce_loss
from ..networks import init_weights
from ..spaces.autogan_cells import STAGE_CHOICES, SharedGenerator, autogan_from_code, decode, space_size
from ..spaces.discriminators import GrowingDiscriminator
from ..spread import job_seed, seeded, spread_jobs
from ..train import batch_indices, latents
from .autogan_shared import LossWindows, recalibrate_batchnorm
from ..sources import write_run_config
from .autogan_sources import OPTIONS, SOURCES
from .common import STATE_FILE, ScoredSearchConfig, SearchError, open_state, resume_after_restart, \
    start_scored_search


@dataclass(frozen=True)
class AutoGANPreset:
    # the schedule: section 3.3 and the authors' search.py / functions.py
    iterations: int = 65
    grow_at: tuple = (15, 35)
    shared_epochs: int = 15
    shared_steps: int | None = None  # D steps per iteration; None: shared_epochs passes over the data
    ctrl_steps: int = 30
    ctrl_batch: int = 1
    num_candidates: int = 10
    topk: int = 5
    # the shared GAN: the authors' autogan_search.sh
    gf_dim: int = 128
    df_dim: int = 64
    latent_dim: int = 128
    g_batch: int = 128
    d_batch: int = 64
    n_critic: int = 5
    lr: float = 2e-4
    betas: tuple = (0.0, 0.9)
    # the controller: conventional.controller (the authors' controller.py and flags)
    ctrl_lr: float = AUTOGAN_LR
    ctrl_betas: tuple = AUTOGAN_BETAS
    hidden: int = HIDDEN
    entropy: float = AUTOGAN_ENTROPY
    baseline_decay: float = BASELINE_DECAY
    baseline: str = "phase"  # phase: restarted every controller phase (authors' code) | persistent
    # the reward: IS of 5000 samples in 10 splits (section 3.3)
    reward_num: int = 5000
    is_splits: int = 10
    bn_samples: int = 1000  # StyleNAS: latents that recompute a candidate's BatchNorm statistics
    fid_reference_num: int = 10000  # real images of the FID reward's training statistics
    eval_batch: int = 100  # StyleNAS: samples per forward pass (no effect on the scores)
    # dynamic reset (section 3.3): loss windows of 500, variance threshold 1e-3
    reset_window: int = 500
    reset_threshold: float = 1e-3


PRESETS = {
    "paper": AutoGANPreset(),
    "tiny": AutoGANPreset(iterations=3, grow_at=(1, 2), shared_steps=4, ctrl_steps=2, ctrl_batch=2, num_candidates=3,
                          topk=2, gf_dim=8, df_dim=8, latent_dim=16, g_batch=8, d_batch=4, n_critic=2, reward_num=8,
                          is_splits=2, bn_samples=8, fid_reference_num=16, eval_batch=8),
}


# ---------------------------------------------------------------------------- the search

AutoGANConfig = ScoredSearchConfig  # the options of run_autogan (``iters``: search iterations)


class AutoGANSearch:
    """The search state and its steps; ``run_autogan`` drives it."""

    def __init__(self, preset, resolution, dataset, seed, device, reward, net, dist):
        self.p, self.resolution, self.dataset, self.seed, self.device = preset, resolution, dataset, seed, device
        self.reward_kind, self.net, self.dist = reward, net, dist
        self.names = R.score_names(net)
        self.score_name = self.names[0] if reward == "is" else self.names[1]
        self.counters = {"iteration": 0, "d_step": 0, "ctrl_step": 0, "resets": 0}
        self.stage, self.prefixes = 0, []  # kept prefixes: (code, (h, c))
        self.windows = LossWindows(preset.reset_window, preset.reset_threshold)
        self.baseline = EMABaseline(preset.baseline_decay)
        self.references = {}
        self._new_gan()
        self._new_controller()
        self.shared_steps = preset.shared_steps or max(1, preset.shared_epochs * len(dataset) // preset.d_batch)

    def metric(self, reward):
        """The score a reward stands for: the IS itself, or the FID (the reward is -FID)."""
        return reward if self.reward_kind == "is" else -reward

    def _new_gan(self):
        p = self.p
        with seeded(job_seed(self.seed, 1_000_000 + self.counters["resets"])):
            self.G = init_weights(SharedGenerator(self.resolution, p.gf_dim, p.latent_dim)).to(self.device)
            self.D = init_weights(GrowingDiscriminator(p.df_dim)).to(self.device)
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=p.lr, betas=p.betas)
        self.D_opt = torch.optim.Adam(self.D.parameters(), lr=p.lr, betas=p.betas)

    def _new_controller(self):
        with seeded(job_seed(self.seed, 2_000_000 + self.stage)):
            self.controller = AutoGANController(STAGE_CHOICES[self.stage], self.p.hidden)
        self.ctrl_opt = torch.optim.Adam(self.controller.parameters(), lr=self.p.ctrl_lr, betas=self.p.ctrl_betas)

    def start_controller_phase(self):
        """The authors' train_controller starts every phase with ``baseline = None``."""
        if self.p.baseline == "phase":
            self.baseline.reset()

    # -- sampling and rewards
    def sample(self, n, generator, grad=False):
        """(n codes, rollout) from the controller, each continuing a kept prefix drawn uniformly."""
        state, prefix_codes = None, [[]] * n
        if self.prefixes:
            picks = torch.randint(len(self.prefixes), (n,), generator=generator).tolist()
            prefix_codes = [self.prefixes[i][0] for i in picks]
            state = (torch.stack([self.prefixes[i][1][0] for i in picks]),
                     torch.stack([self.prefixes[i][1][1] for i in picks]))
        with torch.set_grad_enabled(grad):
            rollout = self.controller(batch=n, state=state, generator=generator)
        return [list(prefix) + a for prefix, a in zip(prefix_codes, rollout.actions.tolist())], rollout

    def stage_resolution(self, stage=None):
        return self.G.width * 2 ** ((self.stage if stage is None else stage) + 1)

    def real_batch(self, step):
        index = batch_indices(len(self.dataset), self.p.d_batch, self.seed, step)
        real = torch.stack([self.dataset[i] for i in index]).to(self.device).float() / 127.5 - 1
        factor = self.resolution // self.stage_resolution()
        return F.avg_pool2d(real, factor) if factor > 1 else real

    def reference(self):
        """Training statistics of the reward network at the stage's resolution (FID reward)."""
        size = self.stage_resolution()
        if size not in self.references:
            stats = None
            if self.dist is None or self.dist.is_main:
                order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed))
                count = min(self.p.fid_reference_num, len(self.dataset))
                factor = self.resolution // size

                def images():
                    for i in order[:count].tolist():
                        image = self.dataset[int(i)].float()
                        yield (F.avg_pool2d(image[None], factor)[0] if factor > 1 else image).round().to(torch.uint8)

                stats = R.reference_statistics(images(), self.net, self.p.eval_batch)
            if self.dist is not None and self.dist.world_size > 1:
                stats = self.dist.broadcast_object(stats)
            self.references[size] = stats
        return self.references[size]

    def score(self, codes, seed):
        """Rewards of ``codes`` (higher is better: IS, or -FID), spread over the processes."""
        p = self.p

        def evaluate(code, index):
            G = recalibrate_batchnorm(copy.deepcopy(self.G), decode(code), p.bn_samples, p.eval_batch, self.seed)
            G.arch = decode(code)
            if self.reward_kind == "is":
                return R.inception_score_of(G, self.net, p.reward_num, p.latent_dim, self.seed, p.is_splits,
                                            p.eval_batch)
            _, stats = R.sample_outputs(G, self.net, p.reward_num, p.latent_dim, self.seed, p.eval_batch)
            return stats.mu(), stats.sigma()

        results = spread_jobs(codes, evaluate, seed, self.dist)
        if self.reward_kind == "is":
            return [float(r) for r in results]
        fids = R.fid_from_statistics([r[0] for r in results], [r[1] for r in results], self.reference())
        return [-float(f) for f in fids]

    def rank(self, n, stream):
        """Score ``n`` sampled architectures; (codes, rewards, LSTM states) best first."""
        codes, rollout = (None, None)
        if self.is_main:
            codes, rollout = self.sample(n, torch.Generator().manual_seed(job_seed(self.seed, stream)))
        codes = self._share(codes)
        scores = self.score(codes, job_seed(self.seed, stream + 1))
        order = sorted(range(n), key=lambda i: -scores[i])
        states = [(rollout.state[0][i].detach(), rollout.state[1][i].detach()) for i in order] if rollout else None
        return [codes[i] for i in order], [scores[i] for i in order], states

    @property
    def is_main(self):
        return self.dist is None or self.dist.is_main

    def _share(self, obj):
        if self.dist is not None and self.dist.world_size > 1:
            return self.dist.broadcast_object(obj)
        return obj

    # -- one search iteration
    def grow(self, log):
        codes, scores, states = self.rank(self.p.num_candidates, 3_000_000 + self.counters["iteration"])
        kept = min(self.p.topk, len(codes))
        self.prefixes = [(codes[i], states[i]) for i in range(kept)] if self.is_main else []
        self.stage += 1
        self._new_controller()
        log(f"stage {self.stage + 1}: searching cell {self.stage + 1}; kept prefixes "
            + ", ".join(f"{c} ({self.score_name} {self.metric(s):.4g})"
                        for c, s in zip(codes[:kept], scores[:kept])))
        return {"grow": self.stage, "candidates": codes, self.score_name: [self.metric(s) for s in scores]}

    def train_shared(self, log=None):
        """Train the shared GAN for the iteration's D steps; returns stats (reset: collapse seen).
        Long phases (100+ D steps) report progress to ``log`` every tenth."""
        p, G, D = self.p, self.G, self.D
        every = self.shared_steps // 10 if log is not None and self.shared_steps >= 100 else 0
        progress = Progress(self.shared_steps, unit="D step")
        G.train(), D.train()
        d_losses, g_losses, collapsed = [], [], False
        for _ in range(self.shared_steps):
            step = self.counters["d_step"]
            arch_gen = torch.Generator().manual_seed(job_seed(self.seed, 4_000_000_000 + step))
            arch = decode(self.sample(1, arch_gen)[0][0])
            real = self.real_batch(step)
            z = latents(self.seed, step, 1, p.d_batch, p.latent_dim, self.device)
            with torch.no_grad():
                fake = G(z, arch)
            d_loss = F.relu(1 - D(real, self.stage)).mean() + F.relu(1 + D(fake, self.stage)).mean()
            self.D_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.D_opt.step()
            d_losses.append(d_loss.item())
            g_loss = None
            if step % p.n_critic == 0:
                z = latents(self.seed, step, 2, p.g_batch, p.latent_dim, self.device)
                D.requires_grad_(False)
                loss = -D(G(z, arch), self.stage).mean()
                self.G_opt.zero_grad(set_to_none=True)
                loss.backward()
                D.requires_grad_(True)
                self.G_opt.step()
                g_loss = loss.item()
                g_losses.append(g_loss)
            self.windows.push(d_loss.item(), g_loss)
            self.counters["d_step"] += 1
            if every and len(d_losses) % every == 0:
                log("  shared GAN " + progress.line(len(d_losses), d_loss=d_loss.item()))
            if self.windows.collapsed():
                collapsed = True
                break
        return {"d_loss": float(np.mean(d_losses)), "g_loss": float(np.mean(g_losses)) if g_losses else None,
                "d_steps": len(d_losses), "collapsed": collapsed}

    def controller_step(self):
        n = self.counters["ctrl_step"]
        codes, rollout = None, None
        if self.is_main:
            self.controller.train()
            codes, rollout = self.sample(self.p.ctrl_batch, torch.Generator().manual_seed(
                job_seed(self.seed, 5_000_000_000 + n)), grad=True)
        codes = self._share(codes)
        scores = self.score(codes, job_seed(self.seed, 6_000_000_000 + n))
        record = {"ctrl_step": n + 1, "archs": codes, "rewards": scores}
        if self.is_main:
            shaped = entropy_bonus(scores, rollout, self.p.entropy, len(self.controller.choices))
            baseline = self.baseline.update(shaped)
            loss, advantages = reinforce_loss(rollout, shaped, baseline, 0.0)  # the bonus is in the reward
            self.ctrl_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.ctrl_opt.step()
            record.update(reward_mean=float(np.mean(scores)), shaped_rewards=shaped.tolist(), baseline=baseline,
                          loss=loss.item(), entropy=rollout.entropies.mean().item(), advantages=advantages.tolist())
        self.counters["ctrl_step"] += 1
        return record, codes[int(np.argmax(scores))]

    def broadcast_gan(self):
        if self.dist is not None and self.dist.world_size > 1:
            state = self.dist.broadcast_object({k: v.cpu() for k, v in self.G.state_dict().items()})
            self.G.load_state_dict(state)

    def state_dict(self):
        return {"counters": dict(self.counters), "stage": self.stage,
                "prefixes": [(list(c), [s[0].cpu(), s[1].cpu()]) for c, s in self.prefixes],
                "G": self.G.state_dict(), "D": self.D.state_dict(), "G_opt": self.G_opt.state_dict(),
                "D_opt": self.D_opt.state_dict(), "controller": self.controller.state_dict(),
                "ctrl_opt": self.ctrl_opt.state_dict(), "baseline": self.baseline.state_dict(),
                "windows": self.windows.state_dict()}

    def load_state_dict(self, state):
        self.counters = dict(state["counters"])
        self.stage = state["stage"]
        self.prefixes = [(list(c), (s[0], s[1])) for c, s in state["prefixes"]]
        self._new_gan()
        self._new_controller()
        self.G.load_state_dict(state["G"]), self.D.load_state_dict(state["D"])
        self.G_opt.load_state_dict(state["G_opt"]), self.D_opt.load_state_dict(state["D_opt"])
        self.controller.load_state_dict(state["controller"]), self.ctrl_opt.load_state_dict(state["ctrl_opt"])
        self.baseline.load_state_dict(state["baseline"])
        self.windows.load_state_dict(state["windows"])


def run_autogan(config: AutoGANConfig, dataset=None, log=lambda line: click.echo(line, err=True), stop_at=None,
                net=None, stop=None):
    """Search (or resume) into ``config.outdir``; returns the genotype (rank 0; None elsewhere).
    ``dataset`` (uint8 [3, R, R] items) replaces the LMDB, ``net`` the reward network, and
    ``stop_at`` ends the run after that many iterations as if killed after the checkpoint; ``stop``
    (a ``stylenas.runs.StopSignals``): after SIGINT/SIGTERM the run ends after the checkpoint of the iteration."""
    if config.preset not in PRESETS:
        raise SearchError(f"--preset for autogan must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    if config.reward not in ("is", "fid"):
        raise SearchError(f"--reward must be is or fid, got {config.reward!r}")
    preset = replace(PRESETS[config.preset], **(config.overrides or {}))
    if preset.baseline not in ("phase", "persistent"):
        raise SearchError(f"--baseline must be phase or persistent, got {preset.baseline!r}")
    if config.iters is not None:
        preset = replace(preset, iterations=config.iters)
    if preset.iterations <= preset.grow_at[1]:
        raise SearchError(f"AutoGAN needs more than {preset.grow_at[1]} iterations to reach cell 3 (stages grow at "
                          f"iterations {preset.grow_at[0]} and {preset.grow_at[1]}), got {preset.iterations}")
    config = resume_after_restart(config)  # torchrun restarted the group after a failure
    dist, dataset, resolution, net = start_scored_search(config, dataset, net, "AutoGAN's three cells need a "
                                                                             "multiple of 8")
    device, outdir = dist.device, Path(config.outdir)
    settings = {**asdict(preset), "preset": config.preset, "reward": config.reward, "proxy": R.is_proxy(net),
                "resolution": resolution, "seed": config.seed, "images": len(dataset)}
    search = AutoGANSearch(preset, resolution, dataset, config.seed, device, config.reward, net, dist)
    state_path = outdir / STATE_FILE
    # every setting must match except the run's length, which a resume may extend
    state = open_state(outdir, config.resume, settings, [k for k in settings if k != "iterations"])
    if state is not None:
        search.load_state_dict(state["search"])  # optimiser states follow their parameters' device
        if dist.is_main:
            log(f"resumed {outdir} at iteration {search.counters['iteration']}")

    runlog = None
    if dist.is_main:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "samples").mkdir(exist_ok=True)
        given = {**(config.overrides or {}), **({"iterations": config.iters} if config.iters is not None else {})}
        write_run_config(outdir, {**settings, "data": str(config.data), "outdir": str(outdir), "device": config.device,
                                  "resume": config.resume, "processes": dist.world_size},
                         SOURCES, preset=config.preset,
                         from_command_line={k: OPTIONS.get(k, f"overrides[{k!r}]") for k in given})
        runlog = RunLog(outdir / "log.jsonl", resume_at=search.counters["iteration"] if config.resume else None,
                        key="iteration")
        label = "PROXY reward (random-weight Inception; not an IS or FID)" if R.is_proxy(net) else "reward"
        log(f"AutoGAN search at {resolution}px on {device} x{dist.world_size}: {preset.iterations} iterations, "
            f"stages grow at {preset.grow_at}, {search.shared_steps} shared D steps and {preset.ctrl_steps} "
            f"controller steps per iteration; {label}: {search.score_name} of {preset.reward_num} samples; "
            f"space of {space_size():,} architectures")
    sample_z = latents(config.seed, 0, 8, 16, preset.latent_dim, device)
    progress = Progress(preset.iterations, unit="iteration", start=search.counters["iteration"])

    def checkpoint():
        if dist.is_main:
            with atomic_path(state_path) as tmp:
                torch.save({"settings": settings, "search": search.state_dict()}, tmp)
        dist.barrier()

    while search.counters["iteration"] < preset.iterations:
        tic = time.perf_counter()
        iteration = search.counters["iteration"]
        record = {"iteration": iteration + 1, "stage": search.stage + 1}
        if iteration in preset.grow_at:
            grown = search.grow(log if dist.is_main else (lambda line: None))
            if dist.is_main:
                runlog.write({"iteration": iteration + 1, **grown})
            record["stage"] = search.stage + 1
        shared = search.train_shared(log) if dist.is_main else {}
        collapsed = search._share(shared.get("collapsed", False))
        search.broadcast_gan()
        record.update(shared)
        best_code, steps = None, []
        search.start_controller_phase()
        for _ in range(preset.ctrl_steps):
            step_record, best_code = search.controller_step()
            steps.append(step_record)
            if dist.is_main:
                runlog.write({"iteration": iteration + 1, "stage": search.stage + 1, **step_record,
                              "score": search.score_name})
        if collapsed:
            search.counters["resets"] += 1
            search.windows.clear()
            search._new_gan()
            if dist.is_main:
                log(f"iteration {iteration + 1}: dynamic reset (loss variance below {preset.reset_threshold} over "
                    f"{preset.reset_window} losses): shared G and D re-initialised")
        search.counters["iteration"] += 1
        if dist.is_main:
            record.update(reset=collapsed, seconds=time.perf_counter() - tic,
                          reward_mean=float(np.mean([s["reward_mean"] for s in steps])) if steps else None,
                          baseline=search.baseline.value)
            runlog.write(record)
            log(progress.line(iteration + 1, stage=search.stage + 1, reward=record["reward_mean"] or float("nan")))
            if best_code is not None:
                G = recalibrate_batchnorm(copy.deepcopy(search.G), decode(best_code), preset.bn_samples,
                                          preset.eval_batch, config.seed)
                with torch.no_grad():
                    save_image_grid(G(sample_z, decode(best_code)), outdir / "samples" / f"iter{iteration + 1:04d}.png",
                                    nrow=4)
            plot_series([r for r in runlog.records() if "ctrl_step" in r], ["reward_mean", "baseline", "entropy"],
                        outdir / "rewards.png", x_key="ctrl_step", title=search.score_name)
        checkpoint()
        if stop is not None and stop.requested(dist) and search.counters["iteration"] < preset.iterations:
            stop.interrupt(state_path)  # SIGINT/SIGTERM: the checkpoint above holds this iteration
        if search.counters["iteration"] == stop_at:
            dist.close()
            return None

    codes, scores, _ = search.rank(preset.num_candidates, 7_000_000)
    genotype = autogan_from_code(codes[0], resolution, source={
        "method": "autogan", "code": codes[0], search.score_name: search.metric(scores[0]), "settings": settings,
        "candidates": [{"code": c, search.score_name: search.metric(s)} for c, s in zip(codes, scores)]})
    if dist.is_main:
        genotype.save(outdir / "genotype.json")
        log(f"genotype {codes[0]} ({search.score_name} {search.metric(scores[0]):.4g}) written to "
            f"{outdir / 'genotype.json'}")
        runlog.close()
    dist.close()
    return genotype if dist.is_main else None

