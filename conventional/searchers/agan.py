"""AGAN (Wang and Huan, 2019): reinforcement-learning search of the generator's up-sampling module
and the discriminator's down-sampling and normal modules, every child GAN trained from scratch.

Search space (sections 3.2, 4.3): the operations, the module construction and the meta-architectures
of G and D are in ``conventional.spaces.agan_modules``.

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

from ...io import atomic_path
from ...metrics import to_uint8
from ...train.runlog import Progress, RunLog, plot_series, save_image_grid
from .. import rewards as R
from ..controller import AGAN_ENTROPY, AGAN_LR, BASELINE_DECAY, HIDDEN, AGANController, EMABaseline, reinforce_loss
from ..losses import d_loss, g_loss
from ..spaces.agan_modules import OPS_PER_MODULE, SEGMENTS, build_agan, genotype_of
from ..spread import job_seed, spread_jobs
from ..train import batch_indices, latents
from ...config_sources import Entry, choice, paper
from ..sources import OPERATIONAL, TINY, with_changes, write_run_config
from ..train import RETRAIN_SOURCES as TRAIN_SOURCES
from .common import SEARCH_RUN_SOURCES, STATE_FILE, ScoredSearchConfig, SearchError, open_state, \
    resume_after_restart, start_scored_search


def new_controller(hidden=HIDDEN):
    return AGANController([(len(ops), OPS_PER_MODULE) for ops in SEGMENTS.values()], hidden)


@dataclass(frozen=True)
class AGANPreset:
    # the search (section 4.2): 20,000 children, one controller update per 10 rewards
    updates: int = 2000
    update_every: int = 10
    # a child (sections 4.1, 4.3): 5000 G steps, 128 channels, hinge, n_critic 5, Adam 2e-4 (0, 0.9)
    child_steps: int = 5000
    channels: int = 128
    latent_dim: int = 128
    g_batch: int = 128
    d_batch: int = 64
    n_critic: int = 5
    lr: float = 2e-4
    betas: tuple = (0.0, 0.9)
    # the controller (sections 3.1, 4.2: lr 6e-4, entropy 1e-4; the EMA decay is StyleNAS's, the paper gives none)
    ctrl_lr: float = AGAN_LR
    entropy: float = AGAN_ENTROPY
    baseline_decay: float = BASELINE_DECAY
    hidden: int = HIDDEN
    # the reward (sections 3.3, 4.2): shaped IS of 50,000 samples in 10 splits
    reward_num: int = 50000
    is_splits: int = 10
    is_min: float = R.AGAN_IS_MIN
    is_max: float = R.AGAN_IS_MAX
    eval_batch: int = 100  # StyleNAS: samples per forward pass (no effect on the scores)


PRESETS = {
    "paper": AGANPreset(),
    "tiny": AGANPreset(updates=2, update_every=2, child_steps=2, channels=4, latent_dim=8, g_batch=4, d_batch=4,
                       n_critic=2, reward_num=8, is_splits=2, eval_batch=8),
}


# where every search setting comes from (DIR/config.json; docs/sources.md is rendered from it). There is
# no public AGAN code: the paper (Wang and Huan 2019) is the only source.
SOURCES = {
    "updates": Entry(paper("section 4.2: a sample complexity of 20,000 children, one update per 10 rewards"),
                     {"tiny": TINY}),
    "update_every": Entry(paper("section 4.2: the controller is updated whenever 10 rewards are collected"),
                          {"tiny": TINY}),
    "child_steps": Entry(paper("section 4.2: each child is trained for 5,000 steps"), {"tiny": TINY}),
    "channels": Entry(paper("section 4.2: 128 channels in G and D"), {"tiny": TINY}),
    "latent_dim": Entry(choice("128, as AutoGAN and SNGAN's CIFAR-10 models (the paper gives no latent size)"),
                        {"tiny": TINY}),
    "g_batch": Entry(paper("section 4.2: 128 samples per G update"), {"tiny": TINY}),
    "d_batch": Entry(paper("section 4.2: 64 samples per D update, 64 real samples"), {"tiny": TINY}),
    "n_critic": Entry(paper("section 4.2: D updated 5 steps per G step"), {"tiny": TINY}),
    "lr": Entry(paper("section 4.2: Adam, eta 0.0002")),
    "betas": Entry(paper("section 4.2: beta1 0, beta2 0.9")),
    "ctrl_lr": Entry(paper("section 4.2: policy gradient with learning rate 0.0006 (Adam: StyleNAS's optimiser, the "
                           "paper names none)")),
    "entropy": Entry(paper("section 4.2: entropy temperature 0.0001 compensating the loss")),
    "baseline_decay": Entry(choice("EMA decay 0.9 of the baseline b of section 3.3 (the paper gives no decay; "
                                   "AutoGAN's and ENAS's value)")),
    "hidden": Entry(paper("section 4.2: a two-layer LSTM with 100 units")),
    "reward_num": Entry(paper("section 4.2: IS of 50,000 samples"), {"tiny": TINY}),
    "is_splits": Entry(paper("section 4.2: divided into 10 groups"), {"tiny": TINY}),
    "is_min": Entry(paper("section 4.2: IS_min = 1")),
    "is_max": Entry(paper("section 4.2: IS_max = 11.24, the IS of the real data; an IS within 0.01 of it or above "
                          "counts as IS_max - 0.01 (StyleNAS: the shaped reward has a pole at IS_max)")),
    "eval_batch": Entry(OPERATIONAL, {"tiny": TINY}),
    "preset": Entry(choice("--preset paper: section 4.2"), {"tiny": TINY}),
    "proxy": Entry(choice("--proxy scores with a random-weight Inception (CPU tests, demo), labelled proxy")),
    **SEARCH_RUN_SOURCES,
    "processes": Entry(choice("torchrun processes train the children of an update (same result as one)")),
}
OPTIONS = {"reward_num": "--reward-num", "child_steps": "--child-steps", "is_min": "--is-range",
           "is_max": "--is-range", "updates": "--iters"}

# retraining an AGAN genotype (section 4.3; no public code)
RETRAIN_SOURCES = with_changes(
    TRAIN_SOURCES,
    steps=Entry(paper("section 4.3: top candidates trained for 50,000 steps"), {"tiny": TINY}),
    gf_dim=Entry(paper("section 4.3: the channels doubled in G (128 -> 256)"), {"tiny": TINY}),
    df_dim=Entry(paper("section 4.3: the channels doubled in D (128 -> 256)"), {"tiny": TINY}),
    g_batch=Entry(paper("section 4.2: 128 samples per G update"), {"tiny": TINY}),
    d_batch=Entry(paper("section 4.2: 64 samples per D update"), {"tiny": TINY}),
    n_critic=Entry(paper("section 4.2: 5 D steps per G step"), {"tiny": TINY}),
    lr=Entry(paper("section 4.2: Adam, eta 0.0002")),
    betas=Entry(paper("section 4.2: beta1 0, beta2 0.9")),
    lr_schedule=Entry(paper("section 4.2 names Adam's eta and betas and no schedule: a constant rate "
                            "(--lr-schedule linear: a decay to 0)")),
    loss=Entry(paper("section 3.2: the hinge loss")),
    latent_dim=Entry(choice("128, as AutoGAN's (the paper gives no latent size)"), {"tiny": TINY}),
    ema_decay=Entry(choice("an EMA of G (0.999 per G step) as AutoGAN's retraining; the paper names none")),
    metric_num=Entry(paper("section 4.2: IS on 50,000 samples"), {"tiny": TINY}),
)

AGANConfig = ScoredSearchConfig  # the options of run_agan (``iters``: controller updates)


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


def run_agan(config: AGANConfig, dataset=None, log=lambda line: click.echo(line, err=True), stop_at=None, net=None,
             stop=None):
    """Search (or resume) into ``config.outdir``; returns the best genotype (rank 0; None
    elsewhere). ``dataset`` replaces the LMDB, ``net`` the reward network; ``stop_at`` ends the
    run after that many controller updates as if killed after the checkpoint; ``stop`` (a
    ``stylenas.runs.StopSignals``): after SIGINT/SIGTERM the run ends after the checkpoint of the update."""
    if config.preset not in PRESETS:
        raise SearchError(f"--preset for agan must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    if config.reward != "is":
        raise SearchError(f"AGAN's reward is the shaped Inception Score (section 3.3); --reward {config.reward} is "
                          f"for autogan")
    preset = replace(PRESETS[config.preset], **(config.overrides or {}))
    if config.iters is not None:
        preset = replace(preset, updates=config.iters)
    if preset.is_max - R.AGAN_IS_MARGIN <= preset.is_min:
        raise SearchError(f"--is-range {preset.is_min:g},{preset.is_max:g}: IS_max must exceed IS_min by more than "
                          f"{R.AGAN_IS_MARGIN:g}")
    config = resume_after_restart(config)  # torchrun restarted the group after a failure
    dist, dataset, resolution, net = start_scored_search(config, dataset, net, "AGAN's generator needs a multiple "
                                                                             "of 8")
    device, outdir = dist.device, Path(config.outdir)
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
    # every setting must match except the run's length, which a resume may extend
    state = open_state(outdir, config.resume, settings, [k for k in settings if k != "updates"])
    if state is not None:
        controller.load_state_dict(state["controller"]), ctrl_opt.load_state_dict(state["ctrl_opt"])
        baseline.load_state_dict(state["baseline"])
        done, best = state["done"], state["best"]
        if dist.is_main:
            log(f"resumed {outdir} after {done} controller updates")

    runlog = None
    if dist.is_main:
        (outdir / "samples").mkdir(parents=True, exist_ok=True)
        given = {**(config.overrides or {}), **({"updates": config.iters} if config.iters is not None else {})}
        write_run_config(outdir, {**settings, "data": str(config.data), "outdir": str(outdir), "device": config.device,
                                  "resume": config.resume, "processes": dist.world_size},
                         SOURCES, preset=config.preset,
                         from_command_line={k: OPTIONS.get(k, f"overrides[{k!r}]") for k in given})
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
        shaped = [R.shaped_is_reward(s, preset.is_min, preset.is_max) for s in scores]
        clamped = [R.is_clamped(s, preset.is_max) for s in scores]
        done += 1
        if dist.is_main and any(clamped):
            log(f"update {done}: {score_name} " + ", ".join(f"{s:.4g}" for s, c in zip(scores, clamped) if c)
                + f" at or above IS_max - {R.AGAN_IS_MARGIN:g} = {preset.is_max - R.AGAN_IS_MARGIN:.4g}: reward "
                  f"clamped to {max(shaped):.4g}")
        if dist.is_main:
            value = baseline.update(shaped)
            loss, advantages = reinforce_loss(rollout, shaped, value, preset.entropy)
            ctrl_opt.zero_grad(set_to_none=True)
            loss.backward()
            ctrl_opt.step()
            for arch, score, reward in zip(archs, scores, shaped):
                best.append({"arch": arch, score_name: score, "reward": reward})
            best = sorted(best, key=lambda e: (-e["reward"], -e[score_name]))[:5]  # clamped rewards tie: by IS
            top = int(np.argmax(shaped))
            runlog.write({"update": done, "archs": [genotype_of(a, resolution).body for a in archs],
                          score_name: scores, "rewards": shaped, "clamped": clamped,
                          "reward_mean": float(np.mean(shaped)),
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
        if stop is not None and stop.requested(dist) and done < preset.updates:
            stop.interrupt(state_path)  # SIGINT/SIGTERM: the checkpoint above holds this update
        if done == stop_at:
            dist.close()
            return None
    result = genotype(best[0]) if dist.is_main and best else None
    if result is not None:
        log(f"best child ({score_name} {best[0][score_name]:.4g}) written to {outdir / 'genotype.json'}")
        runlog.close()
    dist.close()
    return result
